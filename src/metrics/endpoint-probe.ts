import { Gauge, type Registry } from "prom-client";
import type { ProbeConfig } from "../config/config.js";
import type { Handler } from "../worker/engine.js";

/** Checks each configured URL and sets http_endpoint_health{url} to 1 for a 2xx answer, else 0. */
export function endpointProbe(config: ProbeConfig, registry: Registry): Handler {
  const health = new Gauge({
    name: "http_endpoint_health",
    help: "1 when the endpoint answered its last probe with a 2xx status, else 0.",
    labelNames: ["url"],
    registers: [registry],
  });
  return {
    name: "endpoint-probe",
    coolerMs: config.intervalMs,
    async ensure(signal) {
      await Promise.all(
        config.urls.map(async (url) => {
          health.set({ url }, (await probe(url, config.timeoutMs, signal)) ? 1 : 0);
        }),
      );
    },
  };
}

async function probe(url: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]), redirect: "follow" });
    await res.body?.cancel();
    return res.status >= 200 && res.status < 300;
  } catch {
    return false; // refused, reset, timed out or not resolvable: all unhealthy
  }
}
