/**
 * agent (every 10 s): the agent's own runtime, as Golectra reports its own: what this Node
 * process costs the host it watches. No file, no process:
 *
 * - `specta_agent_resident_memory_bytes`, `specta_agent_heap_used_bytes`, `specta_agent_heap_total_bytes`,
 *   `specta_agent_external_memory_bytes` (buffers and other memory outside V8's heap);
 * - `specta_agent_cpu_seconds_total{mode}` (user, system);
 * - `specta_agent_event_loop_delay_seconds{quantile}` (0.5, 0.99 and 1, the largest) since the
 *   last run: how late the agent's scheduled wakeups were (../schedule.ts). Not sampled by a timer
 *   of its own (monitorEventLoopDelay): each sample wakes the process, and once a second that cost
 *   the agent more CPU than all its collectors (npm run bench:agent);
 * - `specta_agent_gc_runs_total{kind}`, `specta_agent_gc_seconds_total{kind}` (minor, major,
 *   incremental, weakcb).
 *
 * The spool's size comes with every batch (specta_agent_spool_*, see agent.ts).
 */
import { constants, PerformanceObserver } from "node:perf_hooks";
import { eventLoopDelay } from "../schedule.js";
import type { Collector, Measurement } from "./collector.js";

const GC_KINDS: ReadonlyArray<readonly [kind: number, name: string]> = [
  [constants.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [constants.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"],
];

export function runtimeCollector(): Collector {
  // Started at the first run and kept for the life of the process (the agent's).
  let started: { gcRuns: Map<number, number>; gcSeconds: Map<number, number> } | undefined;
  const start = () => {
    const gcRuns = new Map<number, number>(GC_KINDS.map(([kind]) => [kind, 0]));
    const gcSeconds = new Map<number, number>(GC_KINDS.map(([kind]) => [kind, 0]));
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        // A gc entry's detail (NodeGCPerformanceDetail) is not in PerformanceEntry's type.
        const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
        if (kind === undefined || !gcRuns.has(kind)) continue;
        gcRuns.set(kind, gcRuns.get(kind)! + 1);
        gcSeconds.set(kind, gcSeconds.get(kind)! + entry.duration / 1000);
      }
    }).observe({ entryTypes: ["gc"] });
    return { gcRuns, gcSeconds };
  };
  return {
    name: "agent",
    intervalMs: 10_000,
    async collect() {
      started ??= start();
      const { gcRuns, gcSeconds } = started;
      const memory = process.memoryUsage();
      const cpu = process.cpuUsage();
      const out: Measurement[] = [
        { metric: "specta_agent_resident_memory_bytes", labels: {}, kind: "gauge", value: memory.rss },
        { metric: "specta_agent_heap_used_bytes", labels: {}, kind: "gauge", value: memory.heapUsed },
        { metric: "specta_agent_heap_total_bytes", labels: {}, kind: "gauge", value: memory.heapTotal },
        { metric: "specta_agent_external_memory_bytes", labels: {}, kind: "gauge", value: memory.external },
        { metric: "specta_agent_cpu_seconds_total", labels: { mode: "user" }, kind: "counter", value: cpu.user / 1e6 },
        { metric: "specta_agent_cpu_seconds_total", labels: { mode: "system" }, kind: "counter", value: cpu.system / 1e6 },
      ];
      // No wakeup measured yet (the first run is the schedule's first turn): nothing to say.
      if (eventLoopDelay.count > 0) {
        for (const [quantile, ns] of [
          ["0.5", eventLoopDelay.percentile(50)],
          ["0.99", eventLoopDelay.percentile(99)],
          ["1", eventLoopDelay.max],
        ] as const) {
          out.push({ metric: "specta_agent_event_loop_delay_seconds", labels: { quantile }, kind: "gauge", value: ns / 1e9 });
        }
        eventLoopDelay.reset();
      }
      for (const [kind, name] of GC_KINDS) {
        out.push({ metric: "specta_agent_gc_runs_total", labels: { kind: name }, kind: "counter", value: gcRuns.get(kind)! });
        out.push({ metric: "specta_agent_gc_seconds_total", labels: { kind: name }, kind: "counter", value: gcSeconds.get(kind)! });
      }
      return out;
    },
  };
}
