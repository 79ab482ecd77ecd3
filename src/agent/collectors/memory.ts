/**
 * memory (every 10 s): RAM and swap from /proc/meminfo, in bytes (gauges):
 * `node_memory_total_bytes`, `node_memory_available_bytes` (MemAvailable: what can be allocated
 * without swapping; absent on kernels before 3.14), `node_memory_free_bytes`,
 * `node_memory_buffers_bytes`, `node_memory_cached_bytes`, `node_memory_swap_total_bytes`,
 * `node_memory_swap_free_bytes`.
 */
import type { Collector, Measurement } from "./collector.js";
import { heldFile, toNumber } from "./util.js";

const FIELDS: ReadonlyArray<readonly [string, string]> = [
  ["MemTotal", "node_memory_total_bytes"],
  ["MemAvailable", "node_memory_available_bytes"],
  ["MemFree", "node_memory_free_bytes"],
  ["Buffers", "node_memory_buffers_bytes"],
  ["Cached", "node_memory_cached_bytes"],
  ["SwapTotal", "node_memory_swap_total_bytes"],
  ["SwapFree", "node_memory_swap_free_bytes"],
];

export function memoryCollector(options: { procRoot?: string } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const readMeminfo = heldFile(`${procRoot}/meminfo`);
  return {
    name: "memory",
    intervalMs: 10_000,
    async collect(signal) {
      const measurements = parseMeminfo(await readMeminfo(signal));
      if (!measurements.some((m) => m.metric === "node_memory_total_bytes")) throw new Error(`no MemTotal in ${procRoot}/meminfo`);
      return measurements;
    },
  };
}

/** Lines such as "MemTotal:       24684084 kB". */
export function parseMeminfo(text: string): Measurement[] {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const [amount, unit] = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    const value = toNumber(amount);
    if (value === undefined) continue;
    values.set(line.slice(0, colon), unit === "kB" ? value * 1024 : value);
  }
  const out: Measurement[] = [];
  for (const [key, metric] of FIELDS) {
    const value = values.get(key);
    if (value !== undefined) out.push({ metric, labels: {}, kind: "gauge", value });
  }
  return out;
}
