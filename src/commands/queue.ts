import { sql, type Kysely } from "kysely";
import type { Db } from "../storage/database.js";
import type { CommandRow, CommandState, CommandsTables } from "./commands.table.js";
import { notifyCommands } from "./notifier.js";

/**
 * The command queue in PostgreSQL: every query of the commands table. Each change sends its note
 * (notifyCommands) in the statement or transaction that makes it, so that the streams and
 * watchers of every daemon wake at its commit; the table stays the truth.
 */
const commands = (db: Db): Kysely<CommandsTables> => db.withTables<CommandsTables>();

/** Commands taken from the queue per statement on a stream. */
export const takeLimit = 100;

const openStates: CommandState[] = ["queued", "delivered", "running"];

/** Whether a command in `state` has ended. */
export function isEnded(state: CommandState): boolean {
  return !openStates.includes(state);
}

/** One diagnostic for some agents, validated. */
export interface Submission {
  agentIds: string[];
  /** The Diagnostic's oneof case, as the proto field name. */
  kind: string;
  /** commands.Diagnostic as protobuf JSON. */
  diagnostic: string;
  timeoutMs: number;
  ttlMs: number;
}

/** Queues one command per agent of the submission; the agents' streams on every daemon wake at the commit. */
export function submit(db: Db, s: Submission): Promise<Pick<CommandRow, "id" | "agent_id">[]> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<Pick<CommandRow, "id" | "agent_id">>`
      INSERT INTO commands (agent_id, kind, diagnostic, timeout_ms, deadline)
      SELECT a, ${s.kind}, ${s.diagnostic}::jsonb, ${s.timeoutMs}, now() + ${s.ttlMs} * interval '1 millisecond'
      FROM unnest(${s.agentIds}::uuid[]) AS a
      RETURNING id, agent_id`.execute(trx);
    await sql`SELECT ${notifyCommands({ kind: "agent", agentId: sql.ref("a") })} FROM unnest(${s.agentIds}::uuid[]) AS a`.execute(trx);
    return rows;
  });
}

/**
 * Takes up to takeLimit of the agent's queued commands, oldest first, in one statement: delivered,
 * or failed at once when `allow` (the agent's allow-list; empty: everything) leaves out their kind.
 */
export async function take(db: Db, agentId: string, allow: string[]): Promise<CommandRow[]> {
  const allowAll = allow.length === 0;
  const refusal = `this agent does not allow this diagnostic (it allows: ${allow.join(", ")})`;
  const { rows } = await sql<CommandRow>`
    WITH picked AS (
      SELECT id FROM commands
      WHERE agent_id = ${agentId} AND state = 'queued' AND deadline > now()
      ORDER BY created LIMIT ${takeLimit}
      FOR UPDATE SKIP LOCKED
    ), taken AS (
      UPDATE commands c SET
        state = CASE WHEN ${allowAll}::boolean OR c.kind = ANY(${allow}::text[]) THEN 'delivered' ELSE 'failed' END,
        output = CASE WHEN ${allowAll}::boolean OR c.kind = ANY(${allow}::text[]) THEN c.output
                      ELSE jsonb_build_object('error', ${refusal}::text) END,
        delivered = now(),
        updated = now()
      FROM picked WHERE c.id = picked.id
      RETURNING c.*
    )
    SELECT taken.*, ${notifyCommands({ kind: "command", commandId: sql.ref("taken.id") })} IS NULL AS notified
    FROM taken ORDER BY created`.execute(db);
  return rows;
}

/** What became of an agent's report: recorded, or refused (no such command of this agent, not delivered yet, ended). */
export type ReportOutcome = { recorded: true } | { refused: "unknown" | "queued" } | { refused: "ended"; state: CommandState };

/** An agent's report on one of its delivered commands: its new state and, once it has ended, its output (protobuf JSON). */
export interface Report {
  agentId: string;
  commandId: string;
  state: "running" | "succeeded" | "failed" | "timed_out";
  output?: string;
}

/** Records a report; another agent's command is as unknown as a missing one. */
export function report(db: Db, r: Report): Promise<ReportOutcome> {
  return commands(db)
    .transaction()
    .execute(async (trx): Promise<ReportOutcome> => {
      const row = await trx
        .selectFrom("commands")
        .select(["state"])
        .where("id", "=", r.commandId)
        .where("agent_id", "=", r.agentId)
        .forUpdate()
        .executeTakeFirst();
      if (!row) return { refused: "unknown" };
      if (isEnded(row.state)) return { refused: "ended", state: row.state };
      if (row.state === "queued") return { refused: "queued" };
      if (r.state === "running" && row.state === "running") return { recorded: true };
      await trx
        .updateTable("commands")
        .set({ state: r.state, updated: new Date(), ...(r.output !== undefined ? { output: r.output } : {}) })
        .where("id", "=", r.commandId)
        .execute();
      await sql`SELECT ${notifyCommands({ kind: "command", commandId: r.commandId })}`.execute(trx);
      return { recorded: true };
    });
}

/** Cancels a command that has not ended; returns it as it is now (undefined: there is none). */
export async function cancel(db: Db, commandId: string): Promise<CommandRow | undefined> {
  const { rows } = await sql<CommandRow>`
    WITH c AS (
      UPDATE commands SET state = 'cancelled', updated = now()
      WHERE id = ${commandId} AND state IN ('queued', 'delivered', 'running')
      RETURNING *)
    SELECT c.*, ${notifyCommands({ kind: "command", commandId: sql.ref("c.id") })} IS NULL AS notified FROM c`.execute(db);
  return rows[0] ?? (await get(db, commandId));
}

/**
 * Ends the commands nobody will finish: still queued at their deadline → expired (the agent
 * stayed away); delivered or running past delivery + timeout + `graceMs` → timed_out (the agent
 * died or never reported). Returns how many of each.
 */
export async function expire(db: Db, graceMs: number): Promise<{ expired: number; timedOut: number }> {
  const expired = await sql<{ id: string }>`
    WITH e AS (
      UPDATE commands SET state = 'expired', updated = now(),
        output = jsonb_build_object('error', 'the agent did not take the command before its deadline')
      WHERE state = 'queued' AND deadline <= now()
      RETURNING id)
    SELECT id, ${notifyCommands({ kind: "command", commandId: sql.ref("e.id") })} IS NULL AS notified FROM e`.execute(db);
  const timedOut = await sql<{ id: string }>`
    WITH t AS (
      UPDATE commands SET state = 'timed_out', updated = now(),
        output = jsonb_build_object('error', 'the agent did not report a result within the timeout')
      WHERE state IN ('delivered', 'running')
        AND coalesce(delivered, created) + (timeout_ms + ${graceMs}::bigint) * interval '1 millisecond' <= now()
      RETURNING id)
    SELECT id, ${notifyCommands({ kind: "command", commandId: sql.ref("t.id") })} IS NULL AS notified FROM t`.execute(db);
  return { expired: expired.rows.length, timedOut: timedOut.rows.length };
}

export function get(db: Db, commandId: string): Promise<CommandRow | undefined> {
  return commands(db).selectFrom("commands").selectAll().where("id", "=", commandId).executeTakeFirst();
}

/** Those of `agentIds` that have a command waiting to be taken. */
export async function withQueued(db: Db, agentIds: string[]): Promise<string[]> {
  const { rows } = await sql<{ agent_id: string }>`
    SELECT DISTINCT agent_id FROM commands
    WHERE state = 'queued' AND agent_id = ANY(${agentIds}::uuid[]) AND deadline > now()`.execute(db);
  return rows.map((r) => r.agent_id);
}
