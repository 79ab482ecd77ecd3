import { sql, type Kysely } from "kysely";
import type { Database } from "../storage/schema.js";

/**
 * Advisory lock keys of single-leader jobs. Every daemon sharing a database runs the same
 * handlers; the key makes one of them do the work and the others skip their turn.
 * (0x5ec7a001 to 0x5ec7a003 and 0x5ec7a005 are the store's: src/tsdb/.)
 */
export const leaderLocks = {
  commandExpiry: 0x5e_c7_a0_04,
} as const;

/**
 * Runs `work` on one dedicated connection while holding the session-level advisory lock `key`;
 * returns undefined at once, without waiting, when another session holds it. The lock lives
 * as long as the connection, so a daemon that dies mid-run frees it with its connection.
 */
export async function asLeader<T>(
  db: Kysely<Database>,
  key: number,
  work: (conn: Kysely<Database>) => Promise<T>,
): Promise<T | undefined> {
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${key}) AS locked`.execute(conn);
    if (!rows[0]?.locked) return undefined;
    const unlock = () => sql`SELECT pg_advisory_unlock(${key})`.execute(conn);
    let result: T;
    try {
      result = await work(conn);
    } catch (err) {
      // Report the work's error, not a second one from a connection that may be broken.
      await unlock().catch(() => undefined);
      throw err;
    }
    await unlock();
    return result;
  });
}

/** The engine's leader election on `db` (Leadership): one daemon at a time runs a leader-only handler. */
export function leadership(db: Kysely<Database>): (key: number, work: () => Promise<void>) => Promise<boolean> {
  return async (key, work) => (await asLeader(db, key, async () => work().then(() => true))) ?? false;
}
