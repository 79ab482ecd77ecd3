/**
 * npm run bench:remote-write — the same node_exporter-like samples as bench:ingest (BENCH_HOSTS
 * hosts, default 50, × 200 series × BENCH_POINTS points, default 360, every 10 s; requests of one
 * host × 6 timestamps over 4 HTTP/2 connections) sent to a fresh Specta daemon once as
 * metrics.API/Push (Connect binary) and once as remote-write 1.0 (/api/v1/write, snappy
 * WriteRequest): ingest rate and server CPU per sample (daemon + PostgreSQL) side by side. Then,
 * on the remote-written daemon with 24 h of host-000's 64 CPU series added, the p50 latency of
 * Prometheus' query_range for sum by (mode) (rate(node_cpu_seconds_total{host="host-000"}[5m]))
 * over 1 h and 24 h, with the data in the head and once compacted.
 */
import { rmSync } from "node:fs";
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
  type LoadRequest,
  type SpectaUnderTest,
} from "./store-load.js";

const hosts = Number(process.env.BENCH_HOSTS ?? 50);
const points = Number(process.env.BENCH_POINTS ?? 360);
const runs = Number(process.env.BENCH_RUNS ?? 30);
const hour = 3_600_000;
const day = 24 * hour;
/** What Prometheus sends with a remote-write 1.0 request (the token is added by post). */
const remoteWriteHeaders = { "content-type": "application/x-protobuf", "content-encoding": "snappy", "x-prometheus-remote-write-version": "0.1.0" };

type Protocol = "Push" | "remote-write";

async function post(specta: SpectaUnderTest, protocol: Protocol, worker: number, r: LoadRequest): Promise<void> {
  await (protocol === "Push"
    ? specta.post(worker, "/metrics.API/Push", r.push)
    : specta.post(worker, "/api/v1/write", r.remoteWrite!, remoteWriteHeaders));
}

interface IngestFigures {
  rate: number;
  seconds: number;
  daemonUs: number;
  postgresUs: number;
}

/** Sends `load` with `protocol` into `specta` (a fresh daemon) and measures it. */
async function ingest(specta: SpectaUnderTest, protocol: Protocol, load: LoadRequest[], samples: number): Promise<IngestFigures> {
  const cpu0 = specta.cpu();
  const seconds = await send(load, (worker, r) => post(specta, protocol, worker, r));
  const cpu1 = specta.cpu();
  return {
    rate: samples / seconds,
    seconds,
    daemonUs: ((cpu1.daemon - cpu0.daemon) / samples) * 1e6,
    postgresUs: ((cpu1.postgres - cpu0.postgres) / samples) * 1e6,
  };
}

async function main(): Promise<void> {
  console.log(machine());
  const endMs = Math.floor(Date.now() / blockMs) * blockMs - intervalMs;
  const load = buildLoad(hosts, points, endMs, undefined, true);
  const samples = load.reduce((n, r) => n + r.samples, 0);
  const bytes = (pick: (r: LoadRequest) => Buffer) => load.reduce((n, r) => n + pick(r).length, 0) / samples;
  console.log(
    `load: ${hosts} hosts × 200 series × ${points} points at 10 s = ${fmt(samples)} samples; ${load.length} requests of one host × 6 timestamps; 4 HTTP/2 connections; generator on the same machine`,
  );
  console.log(
    `  on the wire: Push ${fmt(
      bytes((r) => r.push),
      2,
    )} bytes/sample, remote-write ${fmt(
      bytes((r) => r.remoteWrite!),
      2,
    )} bytes/sample (snappy)`,
  );

  const figures = new Map<Protocol, IngestFigures>();
  for (const protocol of ["Push", "remote-write"] as const) {
    const specta = await startSpectaUnderTest();
    figures.set(protocol, await ingest(specta, protocol, load, samples));
    if (protocol === "remote-write") {
      await queries(specta, endMs);
    }
    await specta.db.end();
    await stopSpecta();
    rmSync(specta.dataDir, { recursive: true, force: true });
  }

  const push = figures.get("Push")!;
  const rw = figures.get("remote-write")!;
  console.log(`\ningest, same samples, each into a fresh daemon on its embedded PostgreSQL`);
  for (const [protocol, f] of figures) {
    console.log(
      `  ${protocol.padEnd(12)} ${fmt(f.rate)} samples/s (${fmt(f.seconds, 1)} s); server CPU ${fmt(f.daemonUs + f.postgresUs, 2)} µs/sample = daemon ${fmt(f.daemonUs, 2)} + PostgreSQL ${fmt(f.postgresUs, 2)}`,
    );
  }
  console.log(
    `  remote-write / Push: rate ${fmt(rw.rate / push.rate, 2)} ×, server CPU ${fmt((rw.daemonUs + rw.postgresUs) / (push.daemonUs + push.postgresUs), 2)} ×, daemon CPU ${fmt(rw.daemonUs / push.daemonUs, 2)} ×`,
  );
}

/** Adds 24 h of host-000's CPU series (remote-written) and measures query_range over 1 h and 24 h, in the head and compacted. */
async function queries(specta: SpectaUnderTest, endMs: number): Promise<void> {
  // The day ends where the fleet's hour begins: the host's CPU series are written once.
  const dayLoad = buildLoad(1, (day - hour) / intervalMs, endMs - hour, (metric) => metric === "node_cpu_seconds_total", true);
  await send(dayLoad, (worker, r) => post(specta, "remote-write", worker, r));
  const expr = 'sum by (mode) (rate(node_cpu_seconds_total{host="host-000"}[5m]))';
  const cases = [
    { name: "1 h, 15 s step", startMs: endMs - hour, stepS: 15 },
    { name: "24 h, 5 min step", startMs: endMs - day, stepS: 300 },
  ];
  const queryRange = async (c: (typeof cases)[number]) => {
    const params = new URLSearchParams({ query: expr, start: String(c.startMs / 1000), end: String(endMs / 1000), step: String(c.stepS) });
    const res = await fetch(`${specta.url}/api/v1/query_range?${params}`, { headers: { authorization: `Bearer ${specta.token}` } });
    const body = (await res.json()) as { status: string; data?: { result: unknown[] }; error?: string };
    if (body.status !== "success" || body.data!.result.length !== 8)
      throw new Error(`${c.name}: ${body.error ?? `${body.data!.result.length} series`}`);
  };
  const head: { p50: number; p90: number }[] = [];
  for (const c of cases) head.push(await latency(runs, () => queryRange(c)));

  await compactStore(specta, endMs);
  const compacted: { p50: number; p90: number }[] = [];
  for (const c of cases) compacted.push(await latency(runs, () => queryRange(c)));

  console.log(`\nquery_range ${expr} (8 modes of 8 CPUs), over ${runs} sequential calls, client side (p50 / p90, ms)`);
  cases.forEach((c, i) =>
    console.log(
      `  ${c.name}: head ${fmt(head[i]!.p50, 1)} / ${fmt(head[i]!.p90, 1)} | compacted ${fmt(compacted[i]!.p50, 1)} / ${fmt(compacted[i]!.p90, 1)}`,
    ),
  );
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopSpecta();
  process.exit(1);
});
