import type { Kysely } from "kysely";
import type { AgentLiveness } from "../agents/liveness.js";
import type { Database } from "../storage/schema.js";
import type { Handler } from "./engine.js";

export interface AgentLivenessOptions {
  db: Kysely<Database>;
  liveness: AgentLiveness;
  /** How often the agents' last calls are written; default 5 s. */
  intervalMs?: number;
}

/**
 * Writes when each agent last called this daemon to `agents.last_seen`, in one statement every
 * few seconds. Every daemon flushes its own agents' calls; the status (online / stale / offline)
 * is computed from last_seen when the inventory is listed.
 */
export function agentLiveness({ db, liveness, intervalMs = 5_000 }: AgentLivenessOptions): Handler {
  return {
    name: "agent-liveness",
    coolerMs: intervalMs,
    async ensure() {
      await liveness.flush(db);
    },
  };
}
