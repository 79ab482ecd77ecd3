/**
 * containers (every 60 s): Docker Engine API over its unix socket (node:http `socketPath`; no
 * docker CLI), one GET /containers/json?all=true and one GET
 * /containers/{id}/stats?stream=false&one-shot=true per running container.
 *
 * - `docker_containers{state}` gauge: containers by state (created, running, paused, restarting,
 *   removing, exited, dead; always all seven);
 * - per running container, labels `name` (without the leading "/") and `image`:
 *   `container_cpu_usage_seconds_total` counter, `container_memory_usage_bytes` gauge (as the
 *   kernel counts it, page cache included), `container_memory_working_set_bytes` gauge (usage
 *   minus inactive page cache, what `docker stats` shows), `container_spec_memory_limit_bytes`
 *   gauge (the host's memory when unlimited), and per network `interface`:
 *   `container_network_{receive,transmit}_{bytes,packets,errors,packets_dropped}_total` counters
 *   (names as in cAdvisor).
 *
 * Throws UnsupportedError when the socket does not exist or may not be opened (the agent's user
 * is not in the docker group); a socket nobody answers on (Docker stopped) is an ordinary error.
 * Docker daemons older than API 1.41 ignore one-shot=true and take about a second per stats
 * call; four calls run at a time.
 *
 * podman (every 60 s) is the same collector on Podman's Docker-compatible API
 * (/run/podman/podman.sock, the socket `systemctl enable --now podman.socket` opens): the
 * containers by state as `podman_containers{state}`, and the same per-container series as above
 * with the label `runtime="podman"`, so that a container name used by both engines stays two series.
 */
import { request } from "node:http";
import { stat } from "node:fs/promises";
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { errorCode, isGone, jsonNumber, jsonRecord, jsonString, mapPool } from "./util.js";

export const CONTAINER_STATES = ["created", "running", "paused", "restarting", "removing", "exited", "dead"] as const;

const NETWORK_FIELDS: ReadonlyArray<readonly [string, string]> = [
  ["rx_bytes", "container_network_receive_bytes_total"],
  ["rx_packets", "container_network_receive_packets_total"],
  ["rx_errors", "container_network_receive_errors_total"],
  ["rx_dropped", "container_network_receive_packets_dropped_total"],
  ["tx_bytes", "container_network_transmit_bytes_total"],
  ["tx_packets", "container_network_transmit_packets_total"],
  ["tx_errors", "container_network_transmit_errors_total"],
  ["tx_dropped", "container_network_transmit_packets_dropped_total"],
];

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The engines whose Docker-compatible API the collector reads. */
const ENGINES = {
  docker: {
    collector: "containers",
    title: "Docker",
    socketPath: "/var/run/docker.sock",
    hint: "add the agent's user to the docker group",
    labels: {},
  },
  podman: {
    collector: "podman",
    title: "Podman",
    socketPath: "/run/podman/podman.sock",
    hint: "the rootful socket is root's: run the agent as root",
    labels: { runtime: "podman" },
  },
} as const;

export function containersCollector(options: { socketPath?: string; timeoutMs?: number; engine?: keyof typeof ENGINES } = {}): Collector {
  const engine = options.engine ?? "docker";
  const { collector, title, hint } = ENGINES[engine];
  const socketPath = options.socketPath ?? ENGINES[engine].socketPath;
  const timeoutMs = options.timeoutMs ?? 15_000;
  return {
    name: collector,
    intervalMs: 60_000,
    async collect(signal) {
      try {
        await stat(socketPath);
      } catch (error) {
        if (isGone(error)) throw new UnsupportedError(`no ${title} socket at ${socketPath}`, { cause: error });
        throw error;
      }
      const get = (path: string): Promise<unknown> => engineGet(title, socketPath, path, signal, timeoutMs);
      let list: unknown;
      try {
        list = await get("/containers/json?all=true");
      } catch (error) {
        if (errorCode(error) === "EACCES") throw new UnsupportedError(`permission denied on ${socketPath} (${hint})`, { cause: error });
        throw error;
      }
      if (!Array.isArray(list)) throw new Error(`${title} answered /containers/json with something other than a list`);

      const out: Measurement[] = [];
      const byState = new Map<string, number>(CONTAINER_STATES.map((state) => [state, 0]));
      const running: Array<{ id: string; labels: Record<string, string> }> = [];
      for (const item of list) {
        const container = jsonRecord(item);
        const state = jsonString(container?.State);
        const id = jsonString(container?.Id);
        if (!container || !state || !id) continue;
        byState.set(state, (byState.get(state) ?? 0) + 1);
        if (state !== "running") continue;
        const names = Array.isArray(container.Names) ? container.Names : [];
        const name = (jsonString(names[0]) ?? id.slice(0, 12)).replace(/^\//, "");
        running.push({ id, labels: { name, image: jsonString(container.Image) ?? "", ...ENGINES[engine].labels } });
      }
      for (const [state, count] of byState) out.push({ metric: `${engine}_containers`, labels: { state }, kind: "gauge", value: count });

      const stats = await mapPool(running, 4, async ({ id }) => {
        try {
          return await get(`/containers/${encodeURIComponent(id)}/stats?stream=false&one-shot=true`);
        } catch (error) {
          // Stopped or removed since the list: nothing to report.
          if (error instanceof HttpStatusError && (error.status === 404 || error.status === 409)) return undefined;
          throw error;
        }
      });
      running.forEach(({ labels }, i) => out.push(...containerMeasurements(labels, stats[i])));
      return out;
    },
  };
}

/** Measurements of one container from its stats document (the Engine API's ContainerStatsResponse). */
export function containerMeasurements(labels: Record<string, string>, stats: unknown): Measurement[] {
  const out: Measurement[] = [];
  const doc = jsonRecord(stats);
  if (!doc) return out;
  const cpuNs = jsonNumber(jsonRecord(jsonRecord(doc.cpu_stats)?.cpu_usage)?.total_usage);
  if (cpuNs !== undefined) out.push({ metric: "container_cpu_usage_seconds_total", labels, kind: "counter", value: cpuNs / 1e9 });
  const memory = jsonRecord(doc.memory_stats);
  const usage = jsonNumber(memory?.usage);
  if (usage !== undefined) {
    const detail = jsonRecord(memory?.stats);
    // cgroup v2 reports inactive_file, cgroup v1 total_inactive_file.
    const inactive = jsonNumber(detail?.inactive_file) ?? jsonNumber(detail?.total_inactive_file) ?? 0;
    out.push({ metric: "container_memory_usage_bytes", labels, kind: "gauge", value: usage });
    out.push({ metric: "container_memory_working_set_bytes", labels, kind: "gauge", value: Math.max(0, usage - inactive) });
  }
  const limit = jsonNumber(memory?.limit);
  if (limit !== undefined) out.push({ metric: "container_spec_memory_limit_bytes", labels, kind: "gauge", value: limit });
  const networks = jsonRecord(doc.networks) ?? {};
  for (const iface of Object.keys(networks).sort()) {
    const counters = jsonRecord(networks[iface]);
    for (const [field, metric] of NETWORK_FIELDS) {
      const value = jsonNumber(counters?.[field]);
      if (value !== undefined) out.push({ metric, labels: { ...labels, interface: iface }, kind: "counter", value });
    }
  }
  return out;
}

function engineGet(title: string, socketPath: string, path: string, signal: AbortSignal, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path, method: "GET", headers: { host: "docker", accept: "application/json" }, signal, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) {
            reject(new HttpStatusError(status, `${title} answered GET ${path} with ${status}: ${body.slice(0, 200).trim()}`));
            return;
          }
          try {
            resolve(JSON.parse(body) as unknown);
          } catch (error) {
            reject(new Error(`${title} answered GET ${path} with invalid JSON`, { cause: error }));
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${title} did not answer GET ${path} within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}
