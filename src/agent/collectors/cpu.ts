/**
 * cpu (every 5 s): CPU time by mode from /proc/stat and load averages from /proc/loadavg.
 *
 * - `node_cpu_seconds_total{cpu,mode}` counter, one per core ("0", "1", …) and mode, as in
 *   node_exporter;
 * - `node_cpu_all_seconds_total{mode}` counter, the same for all cores together (the kernel's
 *   "cpu" line). It is a metric of its own rather than a `cpu="total"` label value so that
 *   summing node_cpu_seconds_total over its labels never counts a core twice;
 * - `node_load1`, `node_load5`, `node_load15` gauges.
 *
 * Modes: user, nice, system, idle, iowait, irq, softirq, steal (guest time is already included in
 * user and nice by the kernel, so it is not repeated).
 */
import type { Collector, Measurement } from "./collector.js";
import { FieldScanner, USER_HZ, heldFile } from "./util.js";

export const CPU_MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"] as const;

export function cpuCollector(options: { procRoot?: string } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const readStat = heldFile(`${procRoot}/stat`);
  const readLoadavg = heldFile(`${procRoot}/loadavg`);
  return {
    name: "cpu",
    intervalMs: 5_000,
    async collect(signal) {
      const [stat, loadavg] = await Promise.all([readStat(signal), readLoadavg(signal)]);
      const measurements = parseCpuStat(stat);
      if (measurements.length === 0) throw new Error(`no cpu lines in ${procRoot}/stat`);
      measurements.push(...parseLoadavg(loadavg));
      return measurements;
    },
  };
}

/** The cpu lines of /proc/stat as counters of seconds. */
export function parseCpuStat(text: string): Measurement[] {
  const out: Measurement[] = [];
  const scan = new FieldScanner(text);
  const ticks: number[] = [];
  do {
    if (!text.startsWith("cpu", scan.at)) continue;
    const head = scan.word();
    const core = head.slice(3);
    if (core !== "" && !/^\d+$/.test(core)) continue;
    const count = scan.numbers(ticks, CPU_MODES.length);
    for (let i = 0; i < count && !Number.isNaN(ticks[i]); i++) {
      // Older kernels have fewer columns.
      const mode = CPU_MODES[i]!;
      const value = ticks[i]! / USER_HZ;
      out.push(
        core === ""
          ? { metric: "node_cpu_all_seconds_total", labels: { mode }, kind: "counter", value }
          : { metric: "node_cpu_seconds_total", labels: { cpu: core, mode }, kind: "counter", value },
      );
    }
  } while (scan.nextLine());
  return out;
}

const LOAD_METRICS = ["node_load1", "node_load5", "node_load15"] as const;

export function parseLoadavg(text: string): Measurement[] {
  const loads: number[] = [];
  const count = new FieldScanner(text).numbers(loads, LOAD_METRICS.length);
  const out: Measurement[] = [];
  for (let i = 0; i < count; i++) {
    if (!Number.isNaN(loads[i])) out.push({ metric: LOAD_METRICS[i]!, labels: {}, kind: "gauge", value: loads[i]! });
  }
  return out;
}
