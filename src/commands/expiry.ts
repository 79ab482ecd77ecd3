import type { Logger } from "../shared/log.js";
import type { Db } from "../storage/database.js";
import type { Handler } from "../worker/engine.js";
import { forgetDeadStreams } from "./agent-streams.js";
import { expire } from "./queue.js";

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
 * The job that ends the commands nobody will finish (expire: expired, timed_out, each announced
 * to Watch) and forgets the agent_streams rows of daemons that died long ago. One daemon works at
 * a time.
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
      const result = await expire(db, graceMs);
      await forgetDeadStreams(db);
      if (result.expired > 0 || result.timedOut > 0) log.info(result, "commands ended without a result");
    },
  };
}
