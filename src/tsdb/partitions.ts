import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";

/**
 * Time in the store: 2-hour blocks (numbered from the Unix epoch) are the unit of compaction;
 * head partitions hold one block each, chunk and rollup partitions one UTC day (12 blocks).
 */
export const blockMs = 2 * 3_600_000;
export const dayMs = 86_400_000;
export const blocksPerDay = dayMs / blockMs;

export const blockOf = (timeMs: number): number => Math.floor(timeMs / blockMs);

/** One partitioned table of the store: each partition covers `unitsPerPartition` consecutive blocks of its key column. */
export interface PartitionedTable {
  table: "tsdb_head" | "tsdb_chunks" | "tsdb_rollups_5m" | "tsdb_rollups_1h";
  unitsPerPartition: number;
  /** Storage parameters of each partition. */
  with?: string;
}

export const headTable: PartitionedTable = {
  table: "tsdb_head",
  unitsPerPartition: 1,
  // Head rows are a few kB: kept inline (not TOASTed), a reader fetches each with one page read.
  with: "toast_tuple_target = 8160",
};
export const chunksTable: PartitionedTable = { table: "tsdb_chunks", unitsPerPartition: blocksPerDay };
export const rollups5mTable: PartitionedTable = { table: "tsdb_rollups_5m", unitsPerPartition: blocksPerDay };
export const rollups1hTable: PartitionedTable = { table: "tsdb_rollups_1h", unitsPerPartition: blocksPerDay };

// One lock for partition DDL, so that daemons sharing a database never race on CREATE or DROP.
// (The same key the row-per-sample store used for its day partitions.)
const partitionLock = 0x5e_c7_a0_01;

/**
 * Name of the partition of `t` whose first block is `first`, by the UTC time it starts:
 * tsdb_chunks_20261201 for a day, tsdb_head_20261201t14 for a block.
 */
export function partitionName(t: PartitionedTable, first: number): string {
  const iso = new Date(first * blockMs).toISOString();
  const day = iso.slice(0, 10).replaceAll("-", "");
  return t.unitsPerPartition === 1 ? `${t.table}_${day}t${iso.slice(11, 13)}` : `${t.table}_${day}`;
}

/** The first block of a partition named by partitionName, or undefined for another name. */
export function blockOfPartition(t: PartitionedTable, name: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:t(\d{2}))?$/.exec(name.slice(t.table.length + 1));
  if (!name.startsWith(`${t.table}_`) || !m) return undefined;
  return blockOf(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4] ?? 0)));
}

function firstKeyOf(t: PartitionedTable, key: number): number {
  return Math.floor(key / t.unitsPerPartition) * t.unitsPerPartition;
}

/**
 * Creates and drops the partitions of the store's tables; remembers which exist, so that the
 * hot path asks the database only when a new block or day begins.
 */
export class Partitions {
  private readonly known = new Map<string, Set<number>>();

  constructor(private readonly db: Kysely<TsdbDatabase>) {}

  /**
   * Makes sure a partition of `t` exists for each key. `verify`: ask the catalog instead of
   * trusting what this daemon saw (another daemon's retention may have dropped one since).
   */
  async ensure(t: PartitionedTable, keys: Iterable<number>, verify = false): Promise<void> {
    if (verify) this.known.set(t.table, new Set(await this.list(t)));
    const known = this.knownOf(t);
    const missing = new Set<number>();
    for (const key of keys) {
      const first = firstKeyOf(t, key);
      if (!known.has(first)) missing.add(first);
    }
    if (missing.size === 0) return;
    await this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(${partitionLock})`.execute(tx);
      // CREATE … PARTITION OF locks the parent: behind a long reader, fail fast (the caller retries) rather than queue every writer behind it.
      await sql`SELECT set_config('lock_timeout', '5s', true)`.execute(tx);
      for (const first of missing) {
        const options = t.with ? sql` WITH (${sql.raw(t.with)})` : sql``;
        await sql`CREATE TABLE IF NOT EXISTS ${sql.table(partitionName(t, first))} PARTITION OF ${sql.table(t.table)}
          FOR VALUES FROM (${sql.lit(first)}) TO (${sql.lit(first + t.unitsPerPartition)})${options}`.execute(tx);
      }
    });
    for (const first of missing) known.add(first);
  }

  /** Forgets what is known of `t`, after a partition was found missing (another daemon dropped it). */
  forget(t: PartitionedTable): void {
    this.known.delete(t.table);
  }

  /** The partitions of `t` that exist, by first key, ascending. */
  async list(t: PartitionedTable, db: Kysely<TsdbDatabase> = this.db): Promise<number[]> {
    const { rows } = await sql<{ name: string }>`
      SELECT c.relname AS name FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = ${t.table}::regclass`.execute(db);
    return rows
      .map((r) => blockOfPartition(t, r.name))
      .filter((first): first is number => first !== undefined)
      .sort((a, b) => a - b);
  }

  /**
   * Drops the partitions of `t` that hold only keys below `cutoff`; returns their names. DROP
   * needs an exclusive lock: waiting behind a long query would queue every reader behind it, so
   * it gives up after `lockTimeoutMs` (error 55P03) and the caller tries again later.
   */
  async dropBefore(t: PartitionedTable, cutoff: number, lockTimeoutMs = 5_000): Promise<string[]> {
    return this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(${partitionLock})`.execute(tx);
      await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(lockTimeoutMs))}ms`}, true)`.execute(tx);
      const dropped: string[] = [];
      for (const first of await this.list(t, tx)) {
        if (first + t.unitsPerPartition > cutoff) continue;
        await sql`DROP TABLE ${sql.table(partitionName(t, first))}`.execute(tx);
        this.knownOf(t).delete(first);
        dropped.push(partitionName(t, first));
      }
      return dropped;
    });
  }

  /**
   * Takes the partition DDL lock for the caller's transaction. Take it before any table lock:
   * ensure() takes it first too, so the two never wait for each other in opposite orders.
   */
  async lockDdl(tx: Kysely<TsdbDatabase>): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock(${partitionLock})`.execute(tx);
  }

  /** Drops one partition inside the caller's transaction, which holds the DDL lock (lockDdl). */
  async dropLocked(tx: Kysely<TsdbDatabase>, t: PartitionedTable, first: number): Promise<void> {
    await sql`DROP TABLE IF EXISTS ${sql.table(partitionName(t, first))}`.execute(tx);
    this.knownOf(t).delete(first);
  }

  private knownOf(t: PartitionedTable): Set<number> {
    let known = this.known.get(t.table);
    if (!known) this.known.set(t.table, (known = new Set()));
    return known;
  }
}
