import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import { decodeChunk, decodeRollups, encodeChunk, encodeRollups, rollUp, rollupWidthMs, type Buckets, type PointArrays, type RollupTier } from "./chunk-format.js";
import { byteaColumn } from "./bytea-column.js";
import { decodeHead, groupOf } from "./group-payload.js";
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
  /** Partitions left for the next run: their lock was busy, or rows arrived after their groups were compacted. */
  postponed: number[];
}

/** Points of one series in one block, keyed `${seriesId}:${block}`. */
export type BlockPoints = Map<string, { id: number; block: number; times: number[]; values: number[] }>;

/**
 * Moves closed blocks from the head into per-series chunks (and their 5-minute and hourly
 * rollups), one head partition at a time, oldest first, a few groups of series per transaction.
 * Each transaction records its (partition, group) pairs in tsdb_compacted, so that readers never
 * see a point twice; a partition whose every group is compacted is dropped whole. Safe to crash
 * at any point: a group is either compacted with its record or not at all, and compacting a
 * group again writes the same chunks (they are merged, not appended).
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

  /** Compacts every head partition that stopped taking points, unless `signal` aborts between transactions. */
  async run(signal: AbortSignal): Promise<CompactionRun> {
    const run: CompactionRun = { dropped: [], chunks: 0, points: 0, postponed: [] };
    // settleMs covers the skew between the clocks of the daemons sharing the database.
    const horizon = this.options.now() - this.options.writeGraceMs - this.options.settleMs;
    for (const part of await this.partitions.list(headTable)) {
      if ((part + 1) * blockMs > horizon || signal.aborted) break;
      await this.compactPartition(part, run, signal);
    }
    return run;
  }

  private async compactPartition(part: number, run: CompactionRun, signal: AbortSignal): Promise<void> {
    const table = sql.table(partitionName(headTable, part));
    const { rows: pending } = await sql<{ grp: number; rows: number }>`
      SELECT h.grp, count(*)::int AS rows FROM ${table} h
      WHERE NOT EXISTS (SELECT 1 FROM tsdb_compacted c WHERE c.part = ${part} AND c.grp = h.grp)
      GROUP BY h.grp ORDER BY h.grp`.execute(this.db);
    for (let i = 0; i < pending.length; ) {
      if (signal.aborted) return;
      const groups: number[] = [];
      let rows = 0;
      while (i < pending.length && (groups.length === 0 || rows + pending[i]!.rows <= this.options.maxRowsPerTransaction)) {
        groups.push(pending[i]!.grp);
        rows += pending[i]!.rows;
        i++;
      }
      await this.compactGroups(part, groups, run);
    }
    if (signal.aborted) return;
    if (await this.dropIfComplete(part)) run.dropped.push(part);
    else run.postponed.push(part);
  }

  /** One transaction: the head rows of `groups` in partition `part` merged into chunks and rollups, and recorded. */
  private async compactGroups(part: number, groups: number[], run: CompactionRun): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
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
          INSERT INTO tsdb_compacted (part, grp, rows)
          SELECT ${part}, g, r FROM unnest(${done}::int4[], ${done.map((g) => rowsPerGroup.get(g)!)}::int4[]) AS u(g, r)
          ON CONFLICT (part, grp) DO UPDATE SET rows = excluded.rows`.execute(tx);
      }
    });
  }

  /**
   * Drops the partition if every one of its groups is recorded as compacted with as many rows as
   * it holds now; rows that arrived after their group was compacted un-record the group, and the
   * next run compacts it again. Locks the head table, parent first as every statement does, so
   * that nothing writes or reads the partition meanwhile.
   */
  private async dropIfComplete(part: number): Promise<boolean> {
    try {
      return await this.db.transaction().execute(async (tx) => {
        await this.partitions.lockDdl(tx);
        await sql`SELECT set_config('lock_timeout', ${`${this.options.lockTimeoutMs}ms`}, true)`.execute(tx);
        const table = sql.table(partitionName(headTable, part));
        await sql`LOCK TABLE tsdb_head, ${table} IN ACCESS EXCLUSIVE MODE`.execute(tx);
        const { rows: stale } = await sql<{ grp: number }>`
          SELECT h.grp FROM (SELECT grp, count(*)::int AS rows FROM ${table} GROUP BY grp) h
          LEFT JOIN tsdb_compacted c ON c.part = ${part} AND c.grp = h.grp
          WHERE c.rows IS DISTINCT FROM h.rows`.execute(tx);
        if (stale.length > 0) {
          await sql`DELETE FROM tsdb_compacted WHERE part = ${part} AND grp = ANY(${stale.map((s) => s.grp)}::int4[])`.execute(tx);
          return false;
        }
        await this.partitions.dropLocked(tx, headTable, part);
        await sql`DELETE FROM tsdb_compacted WHERE part = ${part}`.execute(tx);
        return true;
      });
    } catch (err) {
      if ((err as { code?: string }).code === "55P03") return false; // lock_timeout: a long reader; next run
      throw err;
    }
  }
}

/** Adds points of one series to their blocks' lists. */
export function addPoints(byBlock: BlockPoints, id: number, times: ArrayLike<number>, values: ArrayLike<number>, n: number): void {
  let block = Number.NaN;
  let end = Number.NaN;
  let p: { id: number; block: number; times: number[]; values: number[] } | undefined;
  for (let i = 0; i < n; i++) {
    const t = times[i]!;
    if (!(t >= end - blockMs && t < end)) {
      block = blockOf(t);
      end = (block + 1) * blockMs;
      const key = `${id}:${block}`;
      p = byBlock.get(key);
      if (!p) byBlock.set(key, (p = { id, block, times: [], values: [] }));
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
export async function writeBlocks(tx: Kysely<TsdbDatabase>, partitions: Partitions, byBlock: BlockPoints): Promise<{ chunks: number; points: number }> {
  if (byBlock.size === 0) return { chunks: 0, points: 0 };
  const entries = [...byBlock.values()];
  const blocks = new Set(entries.map((e) => e.block));
  await partitions.ensure(chunksTable, blocks);
  const { rows: stored } = await sql<{ series_id: number; block: number; data: Buffer }>`
    SELECT c.series_id, c.block, c.data FROM tsdb_chunks c
    JOIN unnest(${entries.map((e) => e.id)}::int4[], ${entries.map((e) => e.block)}::int4[]) AS u(s, b) ON c.series_id = u.s AND c.block = u.b`.execute(tx);
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
 * Writes rollup rows: each (group, block) row keeps the buckets of the series it already holds
 * and takes the new buckets of the updated series.
 */
export async function writeRollups(tx: Kysely<TsdbDatabase>, partitions: Partitions, tier: RollupTier, updates: RollupUpdates): Promise<void> {
  if (updates.size === 0) return;
  const table = rollupTables[tier];
  const rows = [...updates.values()];
  await partitions.ensure(table, new Set(rows.map((r) => r.block)));
  const { rows: stored } = await sql<{ grp: number; block: number; data: Buffer }>`
    SELECT r.grp, r.block, r.data FROM ${sql.table(table.table)} r
    JOIN unnest(${rows.map((r) => r.grp)}::int4[], ${rows.map((r) => r.block)}::int4[]) AS u(g, b) ON r.grp = u.g AND r.block = u.b`.execute(tx);
  for (const old of stored) {
    const row = updates.get(`${old.grp}:${old.block}`)!;
    decodeRollups(old.data, old.block * blockMs, undefined, (id, buckets) => {
      if (!row.series.has(id)) row.series.set(id, buckets);
    });
  }
  const data = byteaColumn(rows.map((r) => encodeRollups([...r.series].sort(([a], [b]) => a - b).map(([id, buckets]) => ({ id, buckets })), r.block * blockMs)));
  await sql`
    INSERT INTO ${sql.table(table.table)} (grp, block, data)
    SELECT g, b, substring(${data.blob}::bytea FROM o FOR len)
    FROM unnest(${rows.map((r) => r.grp)}::int4[], ${rows.map((r) => r.block)}::int4[], ${data.offsets}::int4[], ${data.lengths}::int4[]) AS u(g, b, o, len)
    ON CONFLICT (grp, block) DO UPDATE SET data = excluded.data`.execute(tx);
}

/**
 * The points of a stored chunk and new points (in write order, maybe unsorted, maybe with equal
 * times), merged in time order with one value per time: the newest written.
 */
export function mergePoints(stored: PointArrays | undefined, times: number[], values: number[]): PointArrays {
  const n0 = stored?.n ?? 0;
  const total = n0 + times.length;
  const allTimes = new Float64Array(total);
  const allValues = new Float64Array(total);
  if (stored) {
    allTimes.set(stored.times.subarray(0, n0));
    allValues.set(stored.values.subarray(0, n0));
  }
  allTimes.set(times, n0);
  allValues.set(values, n0);
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
