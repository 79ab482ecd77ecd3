import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

export const dayMs = 86_400_000;

/** Name of the samples partition holding UTC day `day` (days since the epoch), e.g. samples_p20261122. */
export function partitionName(day: number): string {
  return `samples_p${new Date(day * dayMs).toISOString().slice(0, 10).replaceAll("-", "")}`;
}

// One lock for partition DDL, so that daemons sharing a database never race on CREATE or DROP.
const partitionLock = 0x5e_c7_a0_01;

/** Creates and drops the day partitions of `samples`; remembers which exist so that ingest asks only once per day. */
export class Partitions {
  private readonly known = new Set<number>();

  constructor(private readonly db: Kysely<Database>) {}

  /** Makes sure a partition exists for each UTC day holding one of `timesMs`. */
  async ensureFor(timesMs: Iterable<number>): Promise<void> {
    const missing = new Set<number>();
    for (const t of timesMs) {
      const day = Math.floor(t / dayMs);
      if (!this.known.has(day)) missing.add(day);
    }
    if (missing.size > 0) await this.ensureDays([...missing]);
  }

  async ensureDays(days: number[]): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(${partitionLock})`.execute(tx);
      for (const day of days) {
        const from = new Date(day * dayMs).toISOString();
        const to = new Date((day + 1) * dayMs).toISOString();
        await sql`CREATE TABLE IF NOT EXISTS ${sql.table(partitionName(day))} PARTITION OF samples FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(to)})`.execute(tx);
      }
    });
    for (const day of days) this.known.add(day);
  }

  /**
   * Drops every partition whose whole day ends before `cutoffMs`; returns their names.
   * DROP needs an exclusive lock on `samples` itself: waiting behind a long query would queue
   * every insert behind the DROP, so it gives up after `lockTimeoutMs` (error 55P03) instead.
   */
  async dropBefore(cutoffMs: number, lockTimeoutMs = 5_000): Promise<string[]> {
    const lastDroppable = Math.floor(cutoffMs / dayMs) - 1;
    return this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(${partitionLock})`.execute(tx);
      await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(lockTimeoutMs))}ms`}, true)`.execute(tx);
      const dropped: string[] = [];
      for (const { name, day } of await listPartitions(tx)) {
        if (day <= lastDroppable) {
          await sql`DROP TABLE ${sql.table(name)}`.execute(tx);
          this.known.delete(day);
          dropped.push(name);
        }
      }
      return dropped.sort();
    });
  }
}

/** The day partitions of `samples` that exist, oldest first. */
export async function listPartitions(db: Kysely<Database>): Promise<{ name: string; day: number }[]> {
  const { rows } = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = 'samples' AND c.relname ~ '^samples_p[0-9]{8}$'`.execute(db);
  return rows
    .map(({ name }) => ({ name, day: Date.UTC(Number(name.slice(9, 13)), Number(name.slice(13, 15)) - 1, Number(name.slice(15, 17))) / dayMs }))
    .sort((a, b) => a.day - b.day);
}
