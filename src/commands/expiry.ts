import { sql } from "kysely";
import type { Logger } from "../log.js";
import type { Db } from "../storage/database.js";
import type { Handler } from "../worker/engine.js";
import { commandsChannel } from "./notifier.js";

/** The advisory lock of the expiry: one daemon of those sharing a database runs it (other keys: src/worker/leader.ts). */
export const commandExpiryLock = 0x5e_c7_a0_04;

export interface CommandExpiryOptions {
  db: Db;
  log: Logger;
  /** How often it runs; default 1 s. */
  intervalMs?: number;
  /** A delivered or running command times out this long after its own timeout; default 30 s. */
  graceMs?: number;
}

/**
 * Ends the commands nobody will finish: still queued at their deadline → expired (the agent
 * stayed away); delivered or running past delivery + timeout + grace → timed_out (the agent
 * died or never reported). Each change is announced on the commands channel (Watch). One daemon
 * works at a time. Also forgets agent_streams rows of daemons that died long ago.
 */
export function commandExpiry(options: CommandExpiryOptions): Handler {
  const { db } = options;
  const graceMs = options.graceMs ?? 30_000;
  const log = options.log.child({ handler: "command-expiry" });
  return {
    name: "command-expiry",
    coolerMs: options.intervalMs ?? 1_000,
    leaderLock: commandExpiryLock,
    async ensure() {
      const expired = await sql<{ id: string }>`
        WITH e AS (
          UPDATE commands SET state = 'expired', updated = now(),
            output = jsonb_build_object('error', 'the agent did not take the command before its deadline')
          WHERE state = 'queued' AND deadline <= now()
          RETURNING id)
        SELECT id, pg_notify(${commandsChannel}, 'command:' || id) IS NULL AS notified FROM e`.execute(db);
      const timedOut = await sql<{ id: string }>`
        WITH t AS (
          UPDATE commands SET state = 'timed_out', updated = now(),
            output = jsonb_build_object('error', 'the agent did not report a result within the timeout')
          WHERE state IN ('delivered', 'running')
            AND coalesce(delivered, created) + (timeout_ms + ${graceMs}::bigint) * interval '1 millisecond' <= now()
          RETURNING id)
        SELECT id, pg_notify(${commandsChannel}, 'command:' || id) IS NULL AS notified FROM t`.execute(db);
      await sql`DELETE FROM agent_streams WHERE refreshed < now() - interval '1 hour'`.execute(db);
      const result = { expired: expired.rows.length, timedOut: timedOut.rows.length };
      if (result.expired > 0 || result.timedOut > 0) log.info(result, "commands ended without a result");
    },
  };
}
