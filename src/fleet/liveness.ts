import { Status } from "../../gen/agent/agent_pb.js";
import type { Db } from "../storage/database.js";
import type { Handler } from "../worker/engine.js";
import { recordLastSeen } from "./inventory.js";

/** An agent seen less than this long ago is online. */
export const onlineWithinMs = 30_000;
/** An agent seen less than this long ago (but not online) is stale; older: offline. */
export const staleWithinMs = 5 * 60_000;

/** The status of an agent last seen at `lastSeenMs`. */
export function statusAt(lastSeenMs: number, nowMs: number): Status {
  const age = nowMs - lastSeenMs;
  if (age < onlineWithinMs) return Status.ONLINE;
  if (age < staleWithinMs) return Status.STALE;
  return Status.OFFLINE;
}

/**
 * When each agent last called this daemon, kept in memory and written to `agents.last_seen` in
 * one statement per flush (the agent-liveness handler), so that an agent's calls cost no query.
 */
export class AgentLiveness {
  private pending = new Map<string, number>();

  /** Notes a call by `agentId` at `atMs` (default: now). */
  record(agentId: string, atMs: number = Date.now()): void {
    const previous = this.pending.get(agentId);
    if (previous === undefined || atMs > previous) this.pending.set(agentId, atMs);
  }

  /** The last call of `agentId` not yet written to the database, in Unix ms. */
  unflushed(agentId: string): number | undefined {
    return this.pending.get(agentId);
  }

  /** Drops what is pending for an agent (it was deregistered). */
  forget(agentId: string): void {
    this.pending.delete(agentId);
  }

  /**
   * Writes every pending time in one UPDATE (never moving last_seen back); returns how many
   * agents were written. On failure the times stay pending for the next flush.
   */
  async flush(db: Db): Promise<number> {
    if (this.pending.size === 0) return 0;
    const batch = this.pending;
    this.pending = new Map();
    try {
      return await recordLastSeen(db, batch);
    } catch (err) {
      for (const [id, at] of batch) this.record(id, at);
      throw err;
    }
  }
}

export interface AgentLivenessOptions {
  db: Db;
  liveness: AgentLiveness;
  /** How often the agents' last calls are written; default 5 s. */
  intervalMs?: number;
}

/**
 * The handler that writes when each agent last called this daemon to `agents.last_seen`, in one
 * statement every few seconds. Every daemon flushes its own agents' calls; the status (online /
 * stale / offline) is computed from last_seen when the inventory is listed.
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
