/**
 * npm run bench:ingest — simulated agents push batches over gRPC to a real daemon (its own
 * process) on a real PostgreSQL, and this prints samples/s, Push latency, the daemon's RSS and
 * the bytes on disk per stored sample.
 *
 * Settings (environment): BENCH_AGENTS (default 8), BENCH_SERIES per agent (1000),
 * BENCH_POINTS per series per batch (10), BENCH_SECONDS (20), BENCH_DATABASE_URL (default: the
 * daemon's embedded PostgreSQL in a temporary data directory), BENCH_PROFILE_DIR (write a CPU
 * profile of the daemon there), BENCH_DAEMON_NODE_ARGS (node flags for the daemon).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { API as MetricsAPI, Kind, PushRequestSchema, SeriesSchema } from "../gen/metrics/metrics_pb.js";
import { listeningUrl, startSpecta, stopSpecta } from "./specta-process.js";

const agents = Number(process.env.BENCH_AGENTS ?? 8);
const seriesPerAgent = Number(process.env.BENCH_SERIES ?? 1000);
const pointsPerSeries = Number(process.env.BENCH_POINTS ?? 10);
const seconds = Number(process.env.BENCH_SECONDS ?? 20);
const externalUrl = process.env.BENCH_DATABASE_URL;

const dataDir = mkdtempSync(join(tmpdir(), "specta-bench-"));
chmodSync(dataDir, 0o711);

async function main(): Promise<void> {
  const { child: daemon, line } = await startSpecta(
    ["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info", ...(externalUrl ? ["--database-url", externalUrl] : [])],
    /"daemon listening"/,
    [
      // BENCH_PROFILE_DIR=dir writes a CPU profile of the daemon there (open it in Chrome DevTools).
      ...(process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : []),
      // BENCH_DAEMON_NODE_ARGS: node flags for the daemon, e.g. "--max-semi-space-size=32".
      ...(process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean),
    ],
  );
  const url = listeningUrl(line);
  const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();

  let peakRss = 0;
  const rssTimer = setInterval(() => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, "utf8"));
    if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024);
  }, 250);

  const latencies: number[] = [];
  let samples = 0;
  const batchSize = seriesPerAgent * pointsPerSeries;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  // Timestamps step back from now, one ms per point, so that every batch is new data.
  let clock = Date.now() - 60_000;

  await Promise.all(
    Array.from({ length: agents }, async (_, a) => {
      const client = createClient(MetricsAPI, createGrpcTransport({ baseUrl: url, interceptors: [(next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }] }));
      // Like an agent, each keeps its series and sends new points for them in every batch.
      const series = Array.from({ length: seriesPerAgent }, (_, s) =>
        create(SeriesSchema, {
          metric: s % 2 === 0 ? "node_cpu_seconds_total" : "node_memory_bytes",
          labels: { host: `bench-${a}`, id: String(s) },
          kind: s % 2 === 0 ? Kind.COUNTER : Kind.GAUGE,
        }),
      );
      const request = create(PushRequestSchema, { series });
      while (performance.now() < deadline) {
        const times = Array.from({ length: pointsPerSeries }, () => clock--);
        for (const s of series) {
          s.times = times;
          s.values = times.map(() => Math.random() * 100);
        }
        const t0 = performance.now();
        const res = await client.push(request);
        latencies.push(performance.now() - t0);
        samples += res.accepted;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  clearInterval(rssTimer);

  const db = new pg.Client(
    externalUrl ? { connectionString: externalUrl } : { host: join(dataDir, "postgres"), user: "postgres", database: "specta" },
  );
  await db.connect();
  const { rows } = await db.query<{ bytes: string; n: string }>(`
    SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'samples'::regclass) AS bytes,
           (SELECT count(*) FROM samples) AS n`);
  await db.end();
  await stopSpecta();
  rmSync(dataDir, { recursive: true, force: true });

  latencies.sort((x, y) => x - y);
  const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(1);
  const stored = Number(rows[0]!.n);
  console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`);
  console.log(`database: ${externalUrl ? "external PostgreSQL" : "embedded PostgreSQL"}; load generator on the same machine`);
  console.log(`load: ${agents} agents x ${seriesPerAgent} series x ${pointsPerSeries} points = ${batchSize} samples per Push, ${seconds} s`);
  console.log(`ingest: ${Math.round(samples / elapsed).toLocaleString("en")} samples/s (${samples.toLocaleString("en")} samples in ${elapsed.toFixed(1)} s, ${latencies.length} batches)`);
  console.log(`Push latency: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`);
  console.log(`daemon RSS: peak ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
  console.log(`disk: ${(Number(rows[0]!.bytes) / stored).toFixed(1)} bytes per stored sample (${stored.toLocaleString("en")} rows, table + index)`);
}


main().catch(async (err: unknown) => {
  console.error(err);
  await stopSpecta();
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
});
