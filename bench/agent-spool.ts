/**
 * What the agent's spool holds per point while the daemon is away: heap bytes in memory (the
 * batches as closed, encoded: src/agent/batch.ts) and bytes on disk (spool files). The batches are built the way
 * the agent builds them, from this host's own samples: 10-second batches of the cpu, diskio and
 * network collectors (every 5 s) and the memory and processes collectors (every 10 and 15 s).
 * Part of `npm run bench:agent`; needs `node --expose-gc`.
 *
 * Environment: BENCH_POINTS (default 100,000) points are spooled each way.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { Batch, type EncodedBatch } from "../src/agent/batch.js";
import type { Measurement } from "../src/agent/collectors/collector.js";
import { defaultCollectors } from "../src/agent/collectors/defaults.js";
import { Spool } from "../src/agent/spool.js";
import { createLogger } from "../src/shared/log.js";

const target = Number(process.env.BENCH_POINTS ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

async function sample(): Promise<Record<string, Measurement[]>> {
  const collectors = defaultCollectors({});
  const byName: Record<string, Measurement[]> = {};
  // Twice: rates and shares need a previous reading.
  for (let round = 0; round < 2; round++) {
    for (const c of collectors) byName[c.name] = await c.collect(AbortSignal.timeout(10_000)).catch(() => []);
    if (round === 0) await new Promise((r) => setTimeout(r, 1_100));
  }
  return byName;
}

/** Ten-second batches of this host's samples until `target` points. */
function* batches(byName: Record<string, Measurement[]>): Generator<EncodedBatch> {
  const batch = new Batch({ host: "bench" });
  const every5s = [...(byName.cpu ?? []), ...(byName.diskio ?? []), ...(byName.network ?? [])];
  let at = Date.now();
  for (let points = 0, n = 0; points < target; n++) {
    batch.addAll(every5s, (at += 5_000));
    batch.addAll(every5s, (at += 5_000));
    batch.addAll(byName.memory ?? [], at);
    if (n % 3 !== 2) batch.addAll(byName.processes ?? [], at);
    const closed = batch.close()!;
    points += closed.points;
    yield closed;
  }
}

async function main(): Promise<void> {
  const byName = await sample();
  const log = createLogger("silent");
  const dir = mkdtempSync(join(tmpdir(), "specta-bench-spool-"));
  try {
    const inMemory = new Spool(join(dir, "memory"), { memoryPoints: Number.MAX_SAFE_INTEGER, diskBytes: 0 }, log);
    gc!();
    const heapBefore = process.memoryUsage().heapUsed;
    let batchCount = 0;
    for (const closed of batches(byName)) {
      inMemory.add(closed);
      batchCount++;
    }
    gc!();
    const heapBytes = process.memoryUsage().heapUsed - heapBefore;
    const memoryPoints = inMemory.stats().points;

    const onDisk = new Spool(join(dir, "disk"), { memoryPoints: 0, diskBytes: 2 ** 40 }, log);
    for (const closed of batches(byName)) onDisk.add(closed);
    const { points: diskPoints, diskBytes } = onDisk.stats();

    console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, Node ${process.versions.node}`);
    console.log(
      `spool while the daemon is away: ${batchCount} ten-second batches of this host's samples, ${Math.round(memoryPoints / batchCount)} points each`,
    );
    console.log(
      `  in memory: ${(heapBytes / memoryPoints).toFixed(0)} heap bytes per point (${(heapBytes / 2 ** 20).toFixed(1)} MiB for ${memoryPoints} points)`,
    );
    console.log(
      `  on disk:   ${(diskBytes / diskPoints).toFixed(1)} bytes per point (${(diskBytes / 2 ** 20).toFixed(1)} MiB for ${diskPoints} points)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
