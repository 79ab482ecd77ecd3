/**
 * memory (every 10 s): RAM and swap from /proc/meminfo, in bytes (gauges):
 * `node_memory_total_bytes`, `node_memory_available_bytes` (MemAvailable: what can be allocated
 * without swapping; absent on kernels before 3.14), `node_memory_free_bytes`,
 * `node_memory_buffers_bytes`, `node_memory_cached_bytes`, `node_memory_swap_total_bytes`,
 * `node_memory_swap_free_bytes`.
 */
import type { Collector, Measurement } from "./collector.js";
import { FieldScanner, heldFile } from "./util.js";

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
  const out: Measurement[] = [];
  const scan = new FieldScanner(text);
  const amount: number[] = [];
  for (let i = 0; i < FIELDS.length; i++) {
    const [key, metric] = FIELDS[i]!;
    // "Key:" at a line's start; looked for, not reached by splitting the file's ~50 lines.
    const line = lineStartingWith(text, `${key}:`);
    if (line < 0) continue;
    scan.at = line + key.length + 1;
    if (scan.numbers(amount, 1) === 0 || Number.isNaN(amount[0])) continue;
    const value = scan.word() === "kB" ? amount[0]! * 1024 : amount[0]!;
    out.push({ metric, labels: {}, kind: "gauge", value });
  }
  return out;
}

/** Where the first line that starts with `prefix` starts, or -1. */
function lineStartingWith(text: string, prefix: string): number {
  if (text.startsWith(prefix)) return 0;
  const newline = text.indexOf(`\n${prefix}`);
  return newline < 0 ? -1 : newline + 1;
}
