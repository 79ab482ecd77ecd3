/**
 * npm run bench:query — the latency of one host's 64 CPU series (node_cpu_seconds_total) over
 * 1 hour at a 60 s step and over 7 days at a 1 h step, in Specta (metrics.API/Query, Connect
 * binary) and VictoriaMetrics (query_range) holding the same data: BENCH_HOSTS hosts (default
 * 100) × 200 series for the last hour, and 7 days of the queried host's CPU series. Specta is
 * measured twice: with the data in the head (not compacted yet) and in chunks and rollups.
 */
import { rmSync } from "node:fs";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MatchOperator, QueryRequestSchema, QueryResponseSchema } from "../gen/metrics/metrics_pb.js";
import { blockMs } from "../src/tsdb/partitions.js";
import { stopSpecta } from "./specta-process.js";
import {
  buildLoad,
  compactStore,
  fmt,
  intervalMs,
  latency,
  machine,
  send,
  startSpectaUnderTest,
  startVictoria,
  type LoadRequest,
} from "./store-load.js";

const hosts = Number(process.env.BENCH_HOSTS ?? 100);
const runs = Number(process.env.BENCH_RUNS ?? 50);
const hour = 3_600_000;
const day = 24 * hour;

interface Case {
  name: string;
  startMs: number;
  endMs: number;
  stepMs: number;
}

async function main(): Promise<void> {
  console.log(machine());
  const endMs = Math.floor(Date.now() / blockMs) * blockMs - intervalMs;
  const fleet = buildLoad(hosts, 360, endMs);
  // The week ends where the fleet's hour begins: the host's CPU series are written once.
  const week = buildLoad(1, (7 * day - hour) / intervalMs, endMs - hour, (metric) => metric === "node_cpu_seconds_total");
  const load: LoadRequest[] = [...week, ...fleet];
  const samples = load.reduce((n, r) => n + r.samples, 0);
  console.log(`data: ${hosts} hosts × 200 series × 1 h, and 7 days of host-000's 64 CPU series, every 10 s: ${fmt(samples)} samples`);
  const cases: Case[] = [
    { name: "64 CPU series, 1 h, 60 s step", startMs: endMs - hour, endMs, stepMs: 60_000 },
    { name: "64 CPU series, 7 d, 1 h step", startMs: endMs - 7 * day, endMs, stepMs: hour },
  ];

  const specta = await startSpectaUnderTest();
  await send(load, (worker, r) => specta.post(worker, "/metrics.API/Push", r.push).then(() => undefined));
  const query = async (c: Case) => {
    const body = toBinary(
      QueryRequestSchema,
      create(QueryRequestSchema, {
        metric: "node_cpu_seconds_total",
        matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: "host-000" }],
        start: timestampFromMs(c.startMs),
        end: timestampFromMs(c.endMs),
        step: durationFromMs(c.stepMs),
      }),
    );
    const res = fromBinary(QueryResponseSchema, await specta.post(0, "/metrics.API/Query", Buffer.from(body)));
    if (res.series.length !== 64) throw new Error(`${c.name}: ${res.series.length} series`);
  };
  const head: { p50: number; p90: number }[] = [];
  for (const c of cases) head.push(await latency(runs, () => query(c)));

  await compactStore(specta, endMs);
  const compacted: { p50: number; p90: number }[] = [];
  for (const c of cases) compacted.push(await latency(runs, () => query(c)));
  await specta.db.end();
  await stopSpecta();
  rmSync(specta.dataDir, { recursive: true, force: true });

  const vm = await startVictoria();
  const victoria: { p50: number; p90: number }[] = [];
  if (vm) {
    await send(load, (_, r) => vm.post("/api/v1/import", r.vm));
    await vm.get("/internal/force_flush");
    for (const c of cases) {
      const path = `/api/v1/query_range?query=${encodeURIComponent('node_cpu_seconds_total{host="host-000"}')}&start=${c.startMs / 1000}&end=${c.endMs / 1000}&step=${c.stepMs / 1000}`;
      const check = JSON.parse(await vm.get(path)) as { data: { result: unknown[] } };
      if (check.data.result.length !== 64) throw new Error(`VictoriaMetrics ${c.name}: ${check.data.result.length} series`);
      victoria.push(await latency(runs, () => vm.get(path)));
    }
    await vm.stop();
    rmSync(vm.dataDir, { recursive: true, force: true });
  }

  console.log(`\nlatency over ${runs} sequential calls, client side (p50 / p90, ms)`);
  cases.forEach((c, i) => {
    const vs = victoria[i]
      ? ` | VictoriaMetrics ${fmt(victoria[i].p50, 1)} / ${fmt(victoria[i].p90, 1)} (Specta compacted: ${fmt(victoria[i].p50 / compacted[i]!.p50, 2)} × its speed)`
      : "";
    console.log(
      `  ${c.name}: Specta head ${fmt(head[i]!.p50, 1)} / ${fmt(head[i]!.p90, 1)} | compacted ${fmt(compacted[i]!.p50, 1)} / ${fmt(compacted[i]!.p90, 1)}${vs}`,
    );
  });
  if (!vm) console.log("VictoriaMetrics is not installed (apt install victoria-metrics): no side-by-side figures");
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopSpecta();
  process.exit(1);
});
