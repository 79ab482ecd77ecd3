import { connectNodeAdapter } from "@connectrpc/connect-node";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { DaemonConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import { Instruments } from "../metrics/instruments.js";
import { versionInfo } from "../version.js";
import { endpointProbe } from "../worker/endpoint-probe.js";
import { Engine } from "../worker/engine.js";
import { httpRoutes } from "./http-routes.js";
import { observeCalls } from "./interceptors.js";
import { listen } from "./listener.js";
import { Readiness } from "./readiness.js";
import { routes } from "./routes.js";
import { twirpCompatible } from "./twirp.js";

/** Largest message the daemon reads: a Push batch's documented limit. */
export const maxRequestBytes = 16 * 1024 * 1024;

export interface RunningDaemon {
  /** Base URL, e.g. http://127.0.0.1:7777. */
  url: string;
  port: number;
  /** Drains and stops everything; in-flight calls get up to the configured shutdown timeout. */
  stop(): Promise<void>;
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const instruments = new Instruments(config.instruments, config.environment, registry);
  const readiness = new Readiness();
  const shutdown = new AbortController();

  const handler = connectNodeAdapter({
    routes: routes({ instruments, readiness, shutdown: shutdown.signal }),
    interceptors: [observeCalls(registry, log)],
    readMaxBytes: maxRequestBytes,
    fallback: httpRoutes(registry, readiness),
  });
  const listener = await listen(twirpCompatible(handler), config.host, config.port, log);

  const engine = new Engine(config.probes.urls.length > 0 ? [endpointProbe(config.probes, registry)] : [], log);
  engine.start();

  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${listener.port}`;
  log.info(
    { url, environment: config.environment, dataDir: config.dataDir, version: versionInfo.ver, instruments: config.instruments.length },
    "daemon listening",
  );

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: listener.port,
    stop() {
      stopping ??= (async () => {
        log.info({ timeoutMs: config.shutdownTimeoutMs }, "daemon stopping");
        readiness.markStopping();
        shutdown.abort();
        await Promise.all([listener.close(config.shutdownTimeoutMs), engine.stop()]);
        log.info("daemon stopped");
      })();
      return stopping;
    },
  };
}
