import { sql, type Kysely } from "kysely";
import type { RetentionConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import { dayMs, type Partitions } from "../storage/partitions.js";
import type { Database } from "../storage/schema.js";
import type { Handler } from "./engine.js";
import { asLeader, leaderLocks } from "./leader.js";

export interface RetentionOptions {
  db: Kysely<Database>;
  partitions: Partitions;
  retention: RetentionConfig;
  log: Logger;
  /** Rollup rows deleted per statement: each statement commits on its own and holds its locks briefly. */
  batchRows?: number;
  /** How long dropping a partition may wait for its lock on `samples` before it is postponed to the next run. */
  lockTimeoutMs?: number;
}

export interface RetentionRun {
  /** Raw sample partitions dropped. */
  partitions: string[];
  /** Set when the partitions could not be locked in time; they are dropped on a later run. */
  postponed?: string;
  minuteRows: number;
  hourRows: number;
}

export interface RetentionHandler extends Handler {
  /** One run; undefined when another daemon holds the leader lock. */
  run(signal: AbortSignal): Promise<RetentionRun | undefined>;
}

/** Deletes expired data: whole day partitions of raw samples, and rollup rows in small batches. One daemon works at a time. */
export function retention(options: RetentionOptions): RetentionHandler {
  const { db, partitions, retention: keep } = options;
  const batchRows = options.batchRows ?? 10_000;
  const log = options.log.child({ handler: "retention" });
  const run = (signal: AbortSignal) =>
    asLeader(db, leaderLocks.retention, async (conn): Promise<RetentionRun> => {
      const now = Date.now();
      const dropped = await dropPartitions(conn, partitions, now - keep.samplesMs, options.lockTimeoutMs, log);
      const minuteRows = await deleteBefore(conn, "samples_1m", now - keep.minuteRollupsMs, batchRows, signal);
      const hourRows = await deleteBefore(conn, "samples_1h", now - keep.hourRollupsMs, batchRows, signal);
      return { ...dropped, minuteRows, hourRows };
    });
  return {
    name: "retention",
    coolerMs: 3_600_000,
    run,
    async ensure(signal) {
      const result = await run(signal);
      if (!result) log.debug("another daemon is applying retention; skipped");
      else if (result.partitions.length > 0 || result.minuteRows > 0 || result.hourRows > 0) log.info(result, "expired data deleted");
    },
  };
}

async function dropPartitions(
  conn: Kysely<Database>,
  partitions: Partitions,
  cutoffMs: number,
  lockTimeoutMs: number | undefined,
  log: Logger,
): Promise<Pick<RetentionRun, "partitions" | "postponed">> {
  const rolledUpTo = await minutesDoneUntil(conn);
  try {
    const dropped = await partitions.dropBefore(cutoffMs, lockTimeoutMs);
    if (dropped.length > 0 && (rolledUpTo === undefined || rolledUpTo < Math.floor(cutoffMs / dayMs) * dayMs)) {
      // Retention bounds the disk even when the rollups are stuck; say what that cost.
      log.warn({ dropped, rolledUpTo: rolledUpTo && new Date(rolledUpTo).toISOString() }, "dropped raw samples that were never rolled up");
    }
    return { partitions: dropped };
  } catch (err) {
    if ((err as { code?: string }).code !== "55P03") throw err;
    const postponed = "a long query held samples; partitions are dropped on a later run";
    log.warn({ cutoff: new Date(cutoffMs).toISOString() }, postponed);
    return { partitions: [], postponed };
  }
}

async function minutesDoneUntil(conn: Kysely<Database>): Promise<number | undefined> {
  const row = await conn.selectFrom("rollup_state").select("done_until").where("tier", "=", "1m").executeTakeFirst();
  return row?.done_until.getTime();
}

/** Deletes the rows of `table` with a bucket before `cutoffMs`, `batchRows` per statement; returns how many. */
async function deleteBefore(
  conn: Kysely<Database>,
  table: "samples_1m" | "samples_1h",
  cutoffMs: number,
  batchRows: number,
  signal: AbortSignal,
): Promise<number> {
  const cutoff = new Date(cutoffMs);
  let total = 0;
  while (!signal.aborted) {
    const result = await sql`
      DELETE FROM ${sql.table(table)} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM ${sql.table(table)} WHERE bucket < ${cutoff} LIMIT ${batchRows}))`.execute(conn);
    const deleted = Number(result.numAffectedRows ?? 0);
    total += deleted;
    if (deleted < batchRows) break;
  }
  return total;
}
