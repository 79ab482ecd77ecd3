/**
 * npm run bench:ingest — node_exporter-like samples (BENCH_HOSTS hosts, default 100, × 200
 * series × BENCH_POINTS points, default 360, every 10 s: 7.2 M samples) pushed in requests of one
 * host × 6 timestamps over 4 connections, into a Specta daemon on its embedded PostgreSQL and,
 * in the same run, into VictoriaMetrics (Debian's package, its JSON line import). Prints ingest
 * rate, server CPU per sample (daemon + PostgreSQL, compaction included), bytes per sample on
 * disk once compacted (every table and index of the store) and PostgreSQL WAL per sample, with
 * the ratio to VictoriaMetrics where it has one.
 */
import { rmSync } from "node:fs";
import pg from "pg";
import { createLogger } from "../src/shared/log.js";
import { openTsdb } from "../src/tsdb/index.js";
import { blockMs } from "../src/tsdb/partitions.js";
import { stopSpecta } from "./specta-process.js";
import { buildLoad, fmt, intervalMs, machine, send, startSpectaUnderTest, startVictoria } from "./store-load.js";

const hosts = Number(process.env.BENCH_HOSTS ?? 100);
const points = Number(process.env.BENCH_POINTS ?? 360);

async function main(): Promise<void> {
  console.log(machine());
  // The hour ends just before the current 2-hour block, so that it lies in one block, as every
  // hour of a steady stream does once its block closes.
  const endMs = Math.floor(Date.now() / blockMs) * blockMs - intervalMs;
  const load = buildLoad(hosts, points, endMs);
  const samples = load.reduce((n, r) => n + r.samples, 0);
  console.log(
    `load: ${hosts} hosts × 200 series × ${points} points at 10 s = ${fmt(samples)} samples; ${load.length} requests of one host × 6 timestamps; 4 connections; generator on the same machine`,
  );

  // Specta.
  const specta = await startSpectaUnderTest();
  const postgresVersion = (await specta.db.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  const cpu0 = specta.cpu();
  const wal0 = await specta.walLsn();
  const seconds = await send(load, (worker, r) => specta.post(worker, "/metrics.API/Push", r.push).then(() => undefined));
  const cpu1 = specta.cpu();
  const walIngest = await specta.walBytesSince(wal0);
  const headBytes = await specta.storeBytes();

  // Compaction, as the daemon's leader-only job does it once the blocks are closed: here in
  // this process, with the store's clock moved past them.
  const pool = new pg.Pool({ host: `${specta.dataDir}/postgres`, user: "postgres", database: "specta", max: 4 });
  const tsdb = await openTsdb(pool, {
    limits: { perMetric: 1, perAgent: 1 },
    retention: { rawMs: 30 * 86_400_000, rollups5mMs: 90 * 86_400_000, rollups1hMs: 730 * 86_400_000 },
    now: () => endMs + 2 * blockMs,
    log: createLogger("warn"),
  });
  const wal1 = await specta.walLsn();
  const compactCpu0 = process.cpuUsage();
  const compactPg0 = specta.cpu().postgres;
  const compactStarted = performance.now();
  const run = await tsdb.compact();
  const compactSeconds = (performance.now() - compactStarted) / 1000;
  const compactCpu1 = process.cpuUsage(compactCpu0);
  const compactPg = specta.cpu().postgres - compactPg0;
  const walCompaction = await specta.walBytesSince(wal1);
  await specta.db.query("CHECKPOINT");
  const tables = await specta.storeTables();
  const storeBytes = await specta.storeBytes();
  await pool.end();
  await specta.db.end();
  await stopSpecta();
  rmSync(specta.dataDir, { recursive: true, force: true });

  const daemonCpu = cpu1.daemon - cpu0.daemon;
  const postgresCpu = cpu1.postgres - cpu0.postgres;
  const compactionCpu = (compactCpu1.user + compactCpu1.system) / 1e6 + compactPg;
  const spectaRate = samples / seconds;
  const spectaCpuUs = ((daemonCpu + postgresCpu + compactionCpu) / samples) * 1e6;
  const spectaBytes = storeBytes / samples;

  // VictoriaMetrics, same load.
  const vm = await startVictoria();
  let vmFigures: { rate: number; cpuUs: number; bytes: number } | undefined;
  if (vm) {
    const vmCpu0 = vm.cpu();
    const vmSeconds = await send(load, (_, r) => vm.post("/api/v1/import", r.vm));
    const vmCpu = vm.cpu() - vmCpu0;
    const bytes = await vm.diskBytes();
    vmFigures = { rate: samples / vmSeconds, cpuUs: (vmCpu / samples) * 1e6, bytes: bytes / samples };
    await vm.stop();
    rmSync(vm.dataDir, { recursive: true, force: true });
  }

  const ratio = (ours: number, theirs: number | undefined, higherIsBetter: boolean) =>
    theirs === undefined ? "" : ` (${fmt(higherIsBetter ? ours / theirs : theirs / ours, 2)} × VictoriaMetrics)`;
  console.log(`\nSpecta (Push, Connect binary over HTTP/2, embedded PostgreSQL ${postgresVersion})`);
  console.log(`  ingest: ${fmt(spectaRate)} samples/s (${fmt(seconds, 1)} s)${ratio(spectaRate, vmFigures?.rate, true)}`);
  console.log(
    `  server CPU: ${fmt(spectaCpuUs, 2)} µs/sample = daemon ${fmt((daemonCpu / samples) * 1e6, 2)} + PostgreSQL ${fmt((postgresCpu / samples) * 1e6, 2)} + compaction ${fmt((compactionCpu / samples) * 1e6, 2)}${ratio(spectaCpuUs, vmFigures?.cpuUs, false)}`,
  );
  console.log(
    `  compaction: ${fmt(run.points)} points into ${fmt(run.chunks)} chunks in ${fmt(compactSeconds, 1)} s (${fmt(run.points / compactSeconds)} points/s)`,
  );
  console.log(
    `  disk: ${fmt(spectaBytes, 2)} bytes/sample once compacted (series, chunks, 5-minute and hourly rollups, with indexes); ${fmt(headBytes / samples, 2)} before compaction${ratio(spectaBytes, vmFigures?.bytes, false)}`,
  );
  console.log(`  disk by table: ${[...tables].map(([name, bytes]) => `${name} ${fmt(bytes / samples, 2)}`).join(", ")} bytes/sample`);
  console.log(
    `  WAL: ${fmt((walIngest + walCompaction) / samples, 2)} bytes/sample = ingest ${fmt(walIngest / samples, 2)} + compaction ${fmt(walCompaction / samples, 2)}`,
  );
  if (vmFigures) {
    console.log(`\nVictoriaMetrics 1.79 (JSON line import, same requests)`);
    console.log(
      `  ingest: ${fmt(vmFigures.rate)} samples/s; server CPU ${fmt(vmFigures.cpuUs, 2)} µs/sample; disk ${fmt(vmFigures.bytes, 2)} bytes/sample after a flush`,
    );
  } else {
    console.log("\nVictoriaMetrics is not installed (apt install victoria-metrics): no side-by-side figures");
  }
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopSpecta();
  process.exit(1);
});
