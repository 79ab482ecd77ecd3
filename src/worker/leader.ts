import { sql, type Kysely } from "kysely";
import type { Leadership } from "./engine.js";

/**
 * The engine's leader election on `db` (Leadership): one daemon at a time runs a leader-only
 * handler. Every daemon sharing a database runs the same handlers; a handler's advisory lock key
 * makes one of them do the work and the others skip their turn. Keys in use: 0x5ec7a001 to
 * 0x5ec7a003 and 0x5ec7a005 (the store's, src/tsdb/), 0x5ec7a004 (the command expiry,
 * src/commands/expiry.ts), 0x5ec7a010 (the alert evaluation, src/alerts/rules/evaluator.ts),
 * 0x5ec7a012 (the agents' last-seen series, src/fleet/last-seen-series.ts),
 * 0x5ec7a011 (the alert notifications, src/alerts/notifications/dispatcher.ts),
 * 0x5ec7a0a1 (the audit retention, src/audit/trail.ts).
 *
 * The work runs while one dedicated connection holds the session-level advisory lock `key`;
 * resolves false at once, without running it, when another session holds it. The lock lives as
 * long as the connection, so a daemon that dies mid-run frees it with its connection.
 */
export function leadership<DB>(db: Kysely<DB>): Leadership {
  return (key, work) =>
    db.connection().execute(async (conn) => {
      const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${key}) AS locked`.execute(conn);
      if (!rows[0]?.locked) return false;
      const unlock = () => sql`SELECT pg_advisory_unlock(${key})`.execute(conn);
      try {
        await work();
      } catch (err) {
        // Report the work's error, not a second one from a connection that may be broken.
        await unlock().catch(() => undefined);
        throw err;
      }
      await unlock();
      return true;
    });
}
