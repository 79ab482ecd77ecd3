import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import type { Logger } from "../shared/log.js";
import { emptyBuckets, rollupWidthMs, type Buckets } from "./chunk-format.js";
import { setTimeout as sleep } from "node:timers/promises";
import { addPoints, addRollup, lockCompaction, writeBlocks, writeRollups, type BlockPoints, type RollupUpdates } from "./compactor.js";
import { blockMs, blockOf, dayMs, type Partitions } from "./partitions.js";

/**
 * Upgrade in place from the row-per-sample store (one row per sample in day partitions of
 * `samples`, per-minute and per-hour rows in samples_1m and samples_1h): raw samples become
 * chunks with their rollups; where retention already dropped the raw samples, the minute rows
 * become 5-minute rollups and the hour rows hourly rollups. Each legacy partition is dropped
 * once its rows are in chunks, so an import cut short resumes where it stopped (writing a
 * chunk again merges, it does not append). Runs before the daemon serves, under a lock, so
 * daemons starting together import once.
 */

const importLock = 0x5e_c7_a0_05;
/** Legacy rows read per statement: bounded memory whatever the number of series. */
const rowsPerBatch = 200_000;

export async function importLegacySamples(db: Kysely<TsdbDatabase>, partitions: Partitions, log: Logger): Promise<void> {
  if (!(await exists(db, "samples"))) return;
  await db.connection().execute(async (conn) => {
    // An import of months of samples takes longer than the pool's statement timeout allows one statement.
    await sql`SET statement_timeout = 0`.execute(conn);
    try {
      await waitForLock(conn, log);
      try {
        if (!(await exists(conn, "samples"))) return; // another daemon finished it while we waited
        await importAll(conn, partitions, log);
      } finally {
        await sql`SELECT pg_advisory_unlock(${importLock})`.execute(conn);
      }
    } finally {
      await sql`RESET statement_timeout`.execute(conn);
    }
  });
}

/** Waits for the import lock without a statement that could time out, saying once that it waits. */
async function waitForLock(conn: Kysely<TsdbDatabase>, log: Logger): Promise<void> {
  for (let waited = false; ; waited = true) {
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${importLock}) AS locked`.execute(conn);
    if (rows[0]?.locked) return;
    if (!waited) log.info("another daemon is moving the row-per-sample store into chunks; waiting for it");
    await sleep(1_000);
  }
}

async function importAll(conn: Kysely<TsdbDatabase>, partitions: Partitions, log: Logger): Promise<void> {
  const started = Date.now();
  const days = await legacyDays(conn);
  if (days.length > 0) log.info({ partitions: days.length }, "moving samples of the row-per-sample store into chunks");
  let samples = 0;
  for (const day of days) {
    samples += await importDay(conn, partitions, day);
    log.info({ day: new Date(day * dayMs).toISOString().slice(0, 10), samples }, "a day of samples moved into chunks");
  }
  // Rollup rows older than the oldest raw day (or all of them, with no raw day left) have no raw samples behind them.
  const rawFrom = days.length > 0 ? days[0]! * dayMs : Infinity;
  const minutes = await importRollups(conn, partitions, "samples_1m", "5m", rawFrom);
  const hours = await importRollups(conn, partitions, "samples_1h", "1h", rawFrom);
  await conn.transaction().execute(async (tx) => {
    for (const table of ["samples", "samples_1m", "samples_1h", "rollup_state", "late_hours"]) {
      await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(tx);
    }
  });
  const moved = { samples, minuteRows: minutes, hourRows: hours, ms: Date.now() - started };
  if (samples + minutes + hours > 0) log.info(moved, "the row-per-sample store is moved into chunks");
}

async function exists(db: Kysely<TsdbDatabase>, table: string): Promise<boolean> {
  const { rows } = await sql<{ oid: string | null }>`SELECT to_regclass(${table})::text AS oid`.execute(db);
  return rows[0]?.oid !== null && rows[0]?.oid !== undefined;
}

/** The legacy day partitions (samples_pYYYYMMDD), as day numbers, oldest first. */
async function legacyDays(db: Kysely<TsdbDatabase>): Promise<number[]> {
  const { rows } = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'samples'::regclass AND c.relname ~ '^samples_p[0-9]{8}$'`.execute(db);
  return rows
    .map(({ name }) => Date.UTC(Number(name.slice(9, 13)), Number(name.slice(13, 15)) - 1, Number(name.slice(15, 17))) / dayMs)
    .sort((a, b) => a - b);
}

function legacyPartition(day: number): string {
  return `samples_p${new Date(day * dayMs).toISOString().slice(0, 10).replaceAll("-", "")}`;
}

/**
 * Moves one legacy day partition into chunks, rowsPerBatch rows at a time in key order (a
 * series may span batches: writing a chunk again merges); drops it at the end. Returns the
 * samples moved.
 */
async function importDay(db: Kysely<TsdbDatabase>, partitions: Partitions, day: number): Promise<number> {
  const table = sql.table(legacyPartition(day));
  let moved = 0;
  for (let after: { id: number; t: number } | undefined; ; ) {
    const { rows } = await sql<{ series_id: number; t: number; value: number }>`
      SELECT series_id, round(extract(epoch FROM ts) * 1000)::float8 AS t, value FROM ${table}
      ${after ? sql`WHERE (series_id, ts) > (${after.id}, ${new Date(after.t)})` : sql``}
      ORDER BY series_id, ts LIMIT ${rowsPerBatch}`.execute(db);
    if (rows.length === 0) break;
    const byBlock: BlockPoints = new Map();
    let i = 0;
    while (i < rows.length) {
      const id = rows[i]!.series_id;
      const times: number[] = [];
      const values: number[] = [];
      for (; i < rows.length && rows[i]!.series_id === id; i++) {
        times.push(rows[i]!.t);
        values.push(rows[i]!.value);
      }
      addPoints(byBlock, id, times, values, times.length);
    }
    await db.transaction().execute(async (tx) => {
      await lockCompaction(tx);
      await writeBlocks(tx, partitions, byBlock);
    });
    moved += rows.length;
    const last = rows[rows.length - 1]!;
    after = { id: last.series_id, t: last.t };
  }
  await sql`DROP TABLE ${table}`.execute(db);
  return moved;
}

/**
 * Legacy rollup rows before `beforeMs` into rollups of `tier`: minute rows summed into 5-minute
 * buckets, hour rows as they are. Returns the legacy rows read.
 */
async function importRollups(
  db: Kysely<TsdbDatabase>,
  partitions: Partitions,
  legacy: "samples_1m" | "samples_1h",
  tier: "5m" | "1h",
  beforeMs: number,
): Promise<number> {
  if (!(await exists(db, legacy))) return 0;
  const widthMs = rollupWidthMs[tier];
  const before = Number.isFinite(beforeMs) ? new Date(beforeMs) : new Date(8.64e15);
  let read = 0;
  for (let after: { id: number; t: number } | undefined; ; ) {
    const { rows } = await sql<{ series_id: number; t: number; min: number; max: number; sum: number; count: number; last: number }>`
      SELECT series_id, round(extract(epoch FROM bucket) * 1000)::float8 AS t, min, max, sum, count::float8 AS count, last FROM ${sql.table(legacy)}
      WHERE bucket < ${before} ${after ? sql`AND (series_id, bucket) > (${after.id}, ${new Date(after.t)})` : sql``}
      ORDER BY series_id, bucket LIMIT ${rowsPerBatch}`.execute(db);
    if (rows.length === 0) break;
    // A batch ends at a whole bucket of this tier, so that no bucket is written in two halves.
    if (rows.length === rowsPerBatch) {
      const last = rows[rows.length - 1]!;
      const bucketOf = (r: { series_id: number; t: number }) => `${r.series_id}:${Math.floor(r.t / widthMs)}`;
      const cut = bucketOf(last);
      while (rows.length > 1 && bucketOf(rows[rows.length - 1]!) === cut) rows.pop();
    }
    after = { id: rows[rows.length - 1]!.series_id, t: rows[rows.length - 1]!.t };
    read += rows.length;
    // Buckets per (series, block): legacy rows merged into this tier's buckets.
    const bySeriesBlock = new Map<string, { id: number; block: number; buckets: Buckets }>();
    for (const r of rows) {
      const block = blockOf(r.t);
      const key = `${r.series_id}:${block}`;
      let e = bySeriesBlock.get(key);
      if (!e) bySeriesBlock.set(key, (e = { id: r.series_id, block, buckets: emptyBuckets(blockMs / widthMs) }));
      const b = e.buckets;
      const start = Math.floor(r.t / widthMs) * widthMs;
      const k = b.n - 1;
      if (k >= 0 && b.times[k] === start) {
        b.min[k] = Math.min(b.min[k]!, r.min);
        b.max[k] = Math.max(b.max[k]!, r.max);
        b.sum[k] = b.sum[k]! + r.sum;
        b.count[k] = b.count[k]! + r.count;
        b.last[k] = r.last;
      } else {
        b.times[b.n] = start;
        b.min[b.n] = r.min;
        b.max[b.n] = r.max;
        b.sum[b.n] = r.sum;
        b.count[b.n] = r.count;
        b.last[b.n] = r.last;
        b.n++;
      }
    }
    const updates: RollupUpdates = new Map();
    for (const e of bySeriesBlock.values()) addRollup(updates, e.id, e.block, e.buckets);
    await db.transaction().execute(async (tx) => {
      await lockCompaction(tx);
      await writeRollups(tx, partitions, tier, updates);
    });
  }
  return read;
}
