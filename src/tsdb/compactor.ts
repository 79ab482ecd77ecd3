import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import {
  decodeChunk,
  decodeRollups,
  emptyBuckets,
  encodeChunk,
  encodeRollups,
  rollUp,
  rollupWidthMs,
  type Buckets,
  type PointArrays,
  type RollupTier,
} from "./chunk-format.js";
import { byteaColumn } from "./bytea-column.js";
import { decodeHead, groupOf } from "./group-payload.js";
import { Doubles } from "./doubles.js";
import { blockMs, blockOf, chunksTable, headTable, partitionName, rollups1hTable, rollups5mTable, type Partitions } from "./partitions.js";

export interface CompactionOptions {
  /** The appender's write grace (AppenderOptions.writeGraceMs): a block's head partition takes points until then. */
  writeGraceMs: number;
  /** Extra wait after the write grace before a block is compacted: clock skew between daemons, statements in flight. */
  settleMs: number;
  /** Head rows one transaction compacts at most (whole groups: a large group may exceed it alone). */
  maxRowsPerTransaction: number;
  /** How long dropping a compacted head partition may wait for its lock before it is left to the next run. */
  lockTimeoutMs: number;
  /** The clock that says which blocks are closed (the appender's); tests move it. */
  now: () => number;
}

export const defaultCompactionOptions: CompactionOptions = {
  writeGraceMs: 10 * 60_000,
  settleMs: 5 * 60_000,
  maxRowsPerTransaction: 2_000,
  lockTimeoutMs: 5_000,
  now: Date.now,
};

/** What one run did. */
export interface CompactionRun {
  /** Head partitions compacted and dropped, by first block. */
  dropped: number[];
  /** Series-blocks written (chunks with their rollups). */
  chunks: number;
  points: number;
  /** The partition left for the next run: a lock was busy. */
  postponed: number[];
}

/** Points of one series in one block, keyed `${seriesId}:${block}`. */
export type BlockPoints = Map<string, { id: number; block: number; times: number[]; values: Doubles }>;

/**
 * Moves closed blocks from the head into per-series chunks (and their 5-minute and hourly
 * rollups), one head partition at a time, oldest first: the partition is sealed against new
 * rows, compacted a few groups of series per transaction, and dropped whole. Each transaction
 * records its (partition, group) pairs in tsdb_compacted, so that readers never see a point
 * twice. Safe to crash at any point: a group is either compacted with its record or not at
 * all, and compacting a group again writes the same chunks (they are merged, not appended).
 */
export class Compactor {
  private readonly options: CompactionOptions;

  constructor(
    private readonly db: Kysely<TsdbDatabase>,
    private readonly partitions: Partitions,
    options: Partial<CompactionOptions> = {},
  ) {
    this.options = { ...defaultCompactionOptions, ...options };
  }

  /**
   * Compacts every head partition that stopped taking points, oldest first; stops at the first
   * one it cannot finish (a busy lock, `signal`), so that a partition is never compacted before
   * an older one: later writes win, and later partitions hold later writes.
   */
  async run(signal: AbortSignal): Promise<CompactionRun> {
    const run: CompactionRun = { dropped: [], chunks: 0, points: 0, postponed: [] };
    // settleMs covers the skew between the clocks of the daemons sharing the database.
    const horizon = this.options.now() - this.options.writeGraceMs - this.options.settleMs;
    for (const part of await this.partitions.list(headTable)) {
      if ((part + 1) * blockMs > horizon || signal.aborted) break;
      if (!(await this.compactPartition(part, run, signal))) {
        run.postponed.push(part);
        break;
      }
      run.dropped.push(part);
    }
    return run;
  }

  /** Seals, compacts and drops one head partition; false when it had to stop before the drop. */
  private async compactPartition(part: number, run: CompactionRun, signal: AbortSignal): Promise<boolean> {
    if (!(await this.seal(part))) return false;
    const table = sql.table(partitionName(headTable, part));
    const { rows: pending } = await sql<{ grp: number; rows: number }>`
      SELECT h.grp, count(*)::int AS rows FROM ${table} h
      WHERE NOT EXISTS (SELECT 1 FROM tsdb_compacted c WHERE c.part = ${part} AND c.grp = h.grp)
      GROUP BY h.grp ORDER BY h.grp`.execute(this.db);
    for (let i = 0; i < pending.length; ) {
      if (signal.aborted) return false;
      const groups: number[] = [];
      let rows = 0;
      while (i < pending.length && (groups.length === 0 || rows + pending[i]!.rows <= this.options.maxRowsPerTransaction)) {
        groups.push(pending[i]!.grp);
        rows += pending[i]!.rows;
        i++;
      }
      await this.compactGroups(part, groups, run);
    }
    return !signal.aborted && (await this.drop(part));
  }

  /**
   * Makes the partition refuse new rows (a CHECK (false) NOT VALID constraint: existing rows stay,
   * every new one fails with 23514, and the appender routes it to the current block as late
   * points). Adding it waits for writes in flight, so what compaction reads next is all the
   * partition will ever hold. False when its lock is busy; the next run tries again.
   */
  private async seal(part: number): Promise<boolean> {
    const name = partitionName(headTable, part);
    return this.withLockTimeout(async (tx) => {
      const { rows } = await sql<{ sealed: boolean }>`
        SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = ${name}::regclass AND conname = ${sealConstraint}) AS sealed`.execute(tx);
      if (!rows[0]?.sealed) await sql`ALTER TABLE ${sql.table(name)} ADD CONSTRAINT ${sql.id(sealConstraint)} CHECK (false) NOT VALID`.execute(tx);
    });
  }

  /** One transaction: the head rows of `groups` in partition `part` merged into chunks and rollups, and recorded. */
  private async compactGroups(part: number, groups: number[], run: CompactionRun): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await lockCompaction(tx);
      const { rows } = await sql<{ grp: number; data: Buffer }>`
        SELECT grp, data FROM ${sql.table(partitionName(headTable, part))}
        WHERE grp = ANY(${groups}::int4[]) ORDER BY grp, id`.execute(tx);
      const byBlock: BlockPoints = new Map();
      const rowsPerGroup = new Map<number, number>();
      for (const row of rows) {
        rowsPerGroup.set(row.grp, (rowsPerGroup.get(row.grp) ?? 0) + 1);
        decodeHead(row.data, undefined, (id, times, values, n) => addPoints(byBlock, id, times, values, n));
      }
      const written = await writeBlocks(tx, this.partitions, byBlock);
      run.chunks += written.chunks;
      run.points += written.points;
      const done = groups.filter((g) => rowsPerGroup.has(g));
      if (done.length > 0) {
        await sql`
          INSERT INTO tsdb_compacted (part, grp)
          SELECT ${part}, unnest(${done}::int4[])
          ON CONFLICT (part, grp) DO NOTHING`.execute(tx);
      }
    });
  }

  /**
   * Drops the sealed, compacted partition and its records. DROP locks the head table, which
   * waits for readers: it gives up after lockTimeoutMs and the next run tries again.
   */
  private async drop(part: number): Promise<boolean> {
    return this.withLockTimeout(async (tx) => {
      await lockCompaction(tx);
      await this.partitions.dropLocked(tx, headTable, part);
      await sql`DELETE FROM tsdb_compacted WHERE part = ${part}`.execute(tx);
    });
  }

  /** Runs `work` in a transaction holding the partition DDL lock, with a lock timeout; false when a lock timed out. */
  private async withLockTimeout(work: (tx: Kysely<TsdbDatabase>) => Promise<void>): Promise<boolean> {
    try {
      await this.db.transaction().execute(async (tx) => {
        await this.partitions.lockDdl(tx);
        await sql`SELECT set_config('lock_timeout', ${`${this.options.lockTimeoutMs}ms`}, true)`.execute(tx);
        await work(tx);
      });
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === lockTimeout) return false;
      throw err;
    }
  }
}

/** The constraint that seals a head partition. */
export const sealConstraint = "sealed";
const lockTimeout = "55P03";
// Transactions that rewrite chunks and rollups (read, merge, write) take this lock, so two
// writers (a compaction whose leadership lapsed and its successor, the legacy import) cannot
// interleave and lose each other's points. Not the leader lock: the leader holds that one on
// another connection for the whole run.
const compactionWriteLock = 0x5e_c7_a0_06;

/** Serialises the transactions that rewrite chunks and rollups (see compactionWriteLock). */
export async function lockCompaction(tx: Kysely<TsdbDatabase>): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${compactionWriteLock})`.execute(tx);
}

/** Adds points of one series to their blocks' lists. */
export function addPoints(byBlock: BlockPoints, id: number, times: ArrayLike<number>, values: ArrayLike<number>, n: number): void {
  let block = Number.NaN;
  let end = Number.NaN;
  let p: { id: number; block: number; times: number[]; values: Doubles } | undefined;
  for (let i = 0; i < n; i++) {
    const t = times[i]!;
    if (!(t >= end - blockMs && t < end)) {
      block = blockOf(t);
      end = (block + 1) * blockMs;
      const key = `${id}:${block}`;
      p = byBlock.get(key);
      if (!p) byBlock.set(key, (p = { id, block, times: [], values: new Doubles() }));
    }
    p!.times.push(t);
    p!.values.push(values[i]!);
  }
}

/**
 * Writes the points of each (series, block) into its chunk, merged with the chunk already
 * stored (the new points win at equal times), and recomputes the rollups of those series over
 * those blocks from the merged points. Used by compaction and by the import of the
 * row-per-sample store.
 */
export async function writeBlocks(
  tx: Kysely<TsdbDatabase>,
  partitions: Partitions,
  byBlock: BlockPoints,
): Promise<{ chunks: number; points: number }> {
  if (byBlock.size === 0) return { chunks: 0, points: 0 };
  const entries = [...byBlock.values()];
  const blocks = new Set(entries.map((e) => e.block));
  // Verified: a late point may fall on a day another daemon's retention has just dropped.
  await partitions.ensure(chunksTable, blocks, true);
  const { rows: stored } = await sql<{ series_id: number; block: number; data: Buffer }>`
    SELECT c.series_id, c.block, c.data FROM tsdb_chunks c
    JOIN unnest(${entries.map((e) => e.id)}::int4[], ${entries.map((e) => e.block)}::int4[]) AS u(s, b) ON c.series_id = u.s AND c.block = u.b`.execute(
    tx,
  );
  const existing = new Map(stored.map((r) => [`${r.series_id}:${r.block}`, r.data]));

  const ids: number[] = [];
  const blockNumbers: number[] = [];
  const chunks: Buffer[] = [];
  const rollups: Record<RollupTier, RollupUpdates> = { "5m": new Map(), "1h": new Map() };
  let points = 0;
  for (const [key, e] of byBlock) {
    const old = existing.get(key);
    const merged = mergePoints(old ? decodeChunk(old, e.block * blockMs) : undefined, e.times, e.values);
    ids.push(e.id);
    blockNumbers.push(e.block);
    chunks.push(encodeChunk(merged, e.block * blockMs));
    for (const tier of rollupTiers) addRollup(rollups[tier], e.id, e.block, rollUp(merged, rollupWidthMs[tier]));
    points += e.times.length;
  }
  const data = byteaColumn(chunks);
  await sql`
    INSERT INTO tsdb_chunks (series_id, block, data)
    SELECT s, b, substring(${data.blob}::bytea FROM o FOR len)
    FROM unnest(${ids}::int4[], ${blockNumbers}::int4[], ${data.offsets}::int4[], ${data.lengths}::int4[]) AS u(s, b, o, len)
    ON CONFLICT (series_id, block) DO UPDATE SET data = excluded.data`.execute(tx);
  for (const tier of rollupTiers) await writeRollups(tx, partitions, tier, rollups[tier]);
  return { chunks: byBlock.size, points };
}

const rollupTiers: RollupTier[] = ["5m", "1h"];
const rollupTables = { "5m": rollups5mTable, "1h": rollups1hTable } as const;

/** New buckets of series, by (group, block) of the rollup row they go into. */
export type RollupUpdates = Map<string, { grp: number; block: number; series: Map<number, Buckets> }>;

export function addRollup(updates: RollupUpdates, id: number, block: number, buckets: Buckets): void {
  const grp = groupOf(id);
  const key = `${grp}:${block}`;
  let row = updates.get(key);
  if (!row) updates.set(key, (row = { grp, block, series: new Map() }));
  row.series.set(id, buckets);
}

/**
 * Writes rollup rows: each (group, block) row keeps the buckets it already holds and takes the
 * new buckets of the updated series (a new bucket replaces a stored one of the same time).
 */
export async function writeRollups(tx: Kysely<TsdbDatabase>, partitions: Partitions, tier: RollupTier, updates: RollupUpdates): Promise<void> {
  if (updates.size === 0) return;
  const table = rollupTables[tier];
  const rows = [...updates.values()];
  await partitions.ensure(table, new Set(rows.map((r) => r.block)), true);
  const { rows: stored } = await sql<{ grp: number; block: number; data: Buffer }>`
    SELECT r.grp, r.block, r.data FROM ${sql.table(table.table)} r
    JOIN unnest(${rows.map((r) => r.grp)}::int4[], ${rows.map((r) => r.block)}::int4[]) AS u(g, b) ON r.grp = u.g AND r.block = u.b`.execute(tx);
  for (const old of stored) {
    const row = updates.get(`${old.grp}:${old.block}`)!;
    decodeRollups(old.data, old.block * blockMs, undefined, (id, buckets) => {
      const fresh = row.series.get(id);
      row.series.set(id, fresh ? mergeBuckets(buckets, fresh) : buckets);
    });
  }
  const data = byteaColumn(
    rows.map((r) =>
      encodeRollups(
        [...r.series].sort(([a], [b]) => a - b).map(([id, buckets]) => ({ id, buckets })),
        r.block * blockMs,
      ),
    ),
  );
  await sql`
    INSERT INTO ${sql.table(table.table)} (grp, block, data)
    SELECT g, b, substring(${data.blob}::bytea FROM o FOR len)
    FROM unnest(${rows.map((r) => r.grp)}::int4[], ${rows.map((r) => r.block)}::int4[], ${data.offsets}::int4[], ${data.lengths}::int4[]) AS u(g, b, o, len)
    ON CONFLICT (grp, block) DO UPDATE SET data = excluded.data`.execute(tx);
}

/** Buckets of `stored` and `fresh` in time order; at an equal time the fresh bucket wins. */
function mergeBuckets(stored: Buckets, fresh: Buckets): Buckets {
  const out = emptyBuckets(stored.n + fresh.n);
  let i = 0;
  let j = 0;
  while (i < stored.n || j < fresh.n) {
    const takeFresh = i >= stored.n || (j < fresh.n && fresh.times[j]! <= stored.times[i]!);
    const from = takeFresh ? fresh : stored;
    const k = takeFresh ? j : i;
    if (takeFresh && i < stored.n && stored.times[i] === fresh.times[j]) i++;
    out.times[out.n] = from.times[k]!;
    out.min[out.n] = from.min[k]!;
    out.max[out.n] = from.max[k]!;
    out.sum[out.n] = from.sum[k]!;
    out.count[out.n] = from.count[k]!;
    out.last[out.n] = from.last[k]!;
    out.n++;
    if (takeFresh) j++;
    else i++;
  }
  return out;
}

/**
 * The points of a stored chunk and new points (in write order, maybe unsorted, maybe with equal
 * times), merged in time order with one value per time: the newest written.
 */
export function mergePoints(stored: PointArrays | undefined, times: number[], values: Doubles): PointArrays {
  const n0 = stored?.n ?? 0;
  const total = n0 + times.length;
  const allTimes = new Float64Array(total);
  const allValues = new Float64Array(total);
  if (stored) {
    allTimes.set(stored.times.subarray(0, n0));
    allValues.set(stored.values.subarray(0, n0));
  }
  allTimes.set(times, n0);
  allValues.set(values.view(), n0);
  let ordered = true;
  for (let i = 1; i < total && ordered; i++) ordered = allTimes[i]! > allTimes[i - 1]!;
  if (ordered) return { times: allTimes, values: allValues, n: total };
  const order = Array.from({ length: total }, (_, i) => i).sort((a, b) => allTimes[a]! - allTimes[b]! || a - b);
  const outTimes = new Float64Array(total);
  const outValues = new Float64Array(total);
  let n = 0;
  for (const i of order) {
    if (n > 0 && outTimes[n - 1] === allTimes[i]) outValues[n - 1] = allValues[i]!;
    else {
      outTimes[n] = allTimes[i]!;
      outValues[n] = allValues[i]!;
      n++;
    }
  }
  return { times: outTimes, values: outValues, n };
}
