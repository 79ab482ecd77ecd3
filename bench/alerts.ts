/**
 * npm run bench:alerts — the alert evaluation's cost: BENCH_RULES rules (default 1,000) over
 * BENCH_HOSTS simulated hosts (default 100, 200 series each, the last 10 minutes every 10 s,
 * pushed by the store's bench helpers) in a daemon on its embedded PostgreSQL, evaluated at the
 * default 15 s interval for BENCH_CYCLES cycles (default 4). Prints the machine, the wall time
 * per cycle (from the daemon's specta_alert_evaluation_duration_seconds) and the CPU seconds of
 * the daemon and of PostgreSQL per cycle (from /proc, everything the processes did meanwhile).
 * Target: a 15 s cycle under 1 s of the daemon's CPU.
 */
import { rmSync } from "node:fs";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Comparison, PutRuleRequestSchema, type Rule, RuleSchema } from "../gen/alerts/alerts_pb.js";
import { Aggregation, MatchOperator } from "../gen/metrics/metrics_pb.js";
import { stopSpecta } from "./specta-process.js";
import { buildLoad, fmt, intervalMs, machine, send, startSpectaUnderTest, type SpectaUnderTest } from "./store-load.js";

const hosts = Number(process.env.BENCH_HOSTS ?? 100);
const ruleCount = Number(process.env.BENCH_RULES ?? 1_000);
const cycles = Number(process.env.BENCH_CYCLES ?? 4);

const gauges = [
  "node_load1",
  "node_load5",
  "node_load15",
  "node_procs_running",
  "node_filefd_allocated",
  "node_entropy_available_bits",
  "node_sockstat_sockets_used",
  "node_nf_conntrack_entries",
];
const counters = [
  "node_network_receive_bytes_total",
  "node_network_transmit_bytes_total",
  "node_disk_read_bytes_total",
  "node_context_switches_total",
  "node_intr_total",
];

/**
 * Rules as people write them, each over every host: 4 in 5 of the query model (gauges by host with
 * avg, max or last; counters' rates by host and device), 1 in 5 PromQL.
 */
function rules(n: number): Rule[] {
  const aggregations = [Aggregation.AVG, Aggregation.MAX, Aggregation.LAST];
  return Array.from({ length: n }, (_, i) => {
    const name = `bench_rule_${String(i).padStart(4, "0")}`;
    // One rule in a hundred holds on every host (about 1,000 alerts), the others on none.
    const threshold = i % 100 === 0 ? 0 : 1e15;
    if (i % 5 === 4) {
      const exprs = [
        `${gauges[i % gauges.length]} > ${threshold}`,
        `rate(${counters[i % counters.length]}[5m]) > ${threshold}`,
        `100 * node_filefd_allocated / node_filefd_maximum > ${threshold}`,
      ];
      return create(RuleSchema, { name, condition: { expr: exprs[i % exprs.length]! }, pendingFor: durationFromMs(60_000) });
    }
    const counter = i % 4 === 3;
    return create(RuleSchema, {
      name,
      condition: {
        metric: counter ? counters[i % counters.length]! : gauges[i % gauges.length]!,
        ...(i % 7 === 0 ? { matchers: [{ label: "host", operator: MatchOperator.REGEX, value: "host-0[0-4].*" }] } : {}),
        aggregation: counter ? Aggregation.RATE : aggregations[i % aggregations.length]!,
        groupBy: counter ? ["host", "device"] : ["host"],
        window: durationFromMs(5 * 60_000),
        comparison: Comparison.GREATER,
        threshold,
      },
      pendingFor: durationFromMs(60_000),
      labels: { severity: i % 2 ? "warning" : "critical" },
      annotations: { summary: "{{ $labels.host }} at {{ $value }}" },
    });
  });
}

async function scrape(specta: SpectaUnderTest): Promise<{ sum: number; count: number; firing: number; pending: number; erroring: number }> {
  const text = await (await fetch(`${specta.url}/metrics`)).text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? "0");
  return {
    sum: value(/^specta_alert_evaluation_duration_seconds_sum (\S+)$/m),
    count: value(/^specta_alert_evaluation_duration_seconds_count (\S+)$/m),
    firing: value(/^specta_alerts\{state="firing"\} (\S+)$/m),
    pending: value(/^specta_alerts\{state="pending"\} (\S+)$/m),
    erroring: value(/^specta_alert_rules_erroring (\S+)$/m),
  };
}

/** Waits for the cycle count to reach `atLeast`, scraping /metrics every 2 s (each scrape costs the daemon CPU too). */
async function waitForCycles(specta: SpectaUnderTest, atLeast: number): Promise<void> {
  while ((await scrape(specta)).count < atLeast) await new Promise((r) => setTimeout(r, 2_000));
}

async function main(): Promise<void> {
  console.log(machine());
  const endMs = Math.floor(Date.now() / intervalMs) * intervalMs;
  const load = buildLoad(hosts, (10 * 60_000) / intervalMs, endMs);
  const specta = await startSpectaUnderTest();
  await send(load, (worker, r) => specta.post(worker, "/metrics.API/Push", r.push).then(() => undefined));
  console.log(`data: ${hosts} hosts × 200 series × 10 min every 10 s: ${fmt(load.reduce((n, r) => n + r.samples, 0))} samples`);
  for (const rule of rules(ruleCount)) {
    await specta.post(0, "/alerts.API/PutRule", Buffer.from(toBinary(PutRuleRequestSchema, create(PutRuleRequestSchema, { rule }))));
  }
  console.log(`rules: ${ruleCount} (and the 6 defaults), evaluated every 15 s`);

  // The first cycle with every rule in place starts the measurement; `cycles` more end it.
  const first = (await scrape(specta)).count + 1;
  await waitForCycles(specta, first);
  const before = { ...(await scrape(specta)), cpu: specta.cpu(), at: performance.now() };
  await waitForCycles(specta, before.count + cycles);
  const after = { ...(await scrape(specta)), cpu: specta.cpu(), at: performance.now() };
  const n = after.count - before.count;
  const perCycle = (x: number) => fmt(x / n, 3);
  console.log(`cycles measured: ${n} over ${fmt((after.at - before.at) / 1000, 1)} s`);
  console.log(`evaluation wall time per cycle: ${perCycle(after.sum - before.sum)} s`);
  console.log(`daemon CPU per cycle: ${perCycle(after.cpu.daemon - before.cpu.daemon)} s (target < 1 s per 15 s cycle)`);
  console.log(`PostgreSQL CPU per cycle: ${perCycle(after.cpu.postgres - before.cpu.postgres)} s`);
  console.log(`alerts: ${after.firing} firing, ${after.pending} pending; rules erroring: ${after.erroring}`);

  await specta.db.end();
  await stopSpecta();
  rmSync(specta.dataDir, { recursive: true, force: true });
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopSpecta();
  process.exit(1);
});
