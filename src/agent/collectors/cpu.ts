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
import { USER_HZ, heldFile, toNumber } from "./util.js";

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
  for (const line of text.split("\n")) {
    if (!line.startsWith("cpu")) continue;
    const fields = line.split(/\s+/);
    const head = fields[0]!;
    const core = head.slice(3);
    if (core !== "" && !/^\d+$/.test(core)) continue;
    for (let i = 0; i < CPU_MODES.length; i++) {
      const ticks = toNumber(fields[i + 1]);
      if (ticks === undefined) break; // older kernels have fewer columns
      const mode = CPU_MODES[i]!;
      out.push(
        core === ""
          ? { metric: "node_cpu_all_seconds_total", labels: { mode }, kind: "counter", value: ticks / USER_HZ }
          : { metric: "node_cpu_seconds_total", labels: { cpu: core, mode }, kind: "counter", value: ticks / USER_HZ },
      );
    }
  }
  return out;
}

/** /proc/loadavg: "0.52 0.58 0.59 2/200 6904". */
export function parseLoadavg(text: string): Measurement[] {
  const fields = text.trim().split(/\s+/);
  const out: Measurement[] = [];
  (["node_load1", "node_load5", "node_load15"] as const).forEach((metric, i) => {
    const value = toNumber(fields[i]);
    if (value !== undefined) out.push({ metric, labels: {}, kind: "gauge", value });
  });
  return out;
}
