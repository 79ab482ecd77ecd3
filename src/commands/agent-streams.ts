import { sql, type Kysely } from "kysely";
import type { Db } from "../storage/database.js";
import { credentialValid } from "../tokens/tokens.js";
import type { CommandsTables } from "./commands.table.js";
import { notifyCommands } from "./notifier.js";

/** The repository of agent_streams: which daemon holds each agent's commands.API/Stream. `db` may be a transaction. */
const streams = (db: Db): Kysely<CommandsTables> => db.withTables<CommandsTables>();

/** A stream whose agent_streams row is older than this is not counted as connected. */
const presenceStaleMs = 60_000;

/** Those of `agentIds` whose stream is open on some daemon now. */
export async function connectedAgents(db: Db, agentIds: string[]): Promise<Set<string>> {
  const rows = await streams(db)
    .selectFrom("agent_streams")
    .select("agent_id")
    .where("agent_id", "in", agentIds)
    .where("refreshed", ">", new Date(Date.now() - presenceStaleMs))
    .execute();
  return new Set(rows.map((r) => r.agent_id));
}

/** A stream of one agent, opened on the daemon `daemonId` with the credential `tokenId`. */
export interface StreamRegistration {
  agentId: string;
  streamId: string;
  daemonId: string;
  tokenId: string;
}

/**
 * Records the stream as its agent's one stream (replacing any other, which its daemon ends on the
 * note this sends), only while its credential is valid: false when it was revoked.
 */
export async function registerStream(db: Db, s: StreamRegistration): Promise<boolean> {
  const { rows } = await sql`
    WITH up AS (
      INSERT INTO agent_streams (agent_id, stream_id, daemon_id)
      SELECT ${s.agentId}::uuid, ${s.streamId}::uuid, ${s.daemonId}::uuid
      WHERE ${credentialValid(s.tokenId)}
      ON CONFLICT (agent_id) DO UPDATE SET stream_id = excluded.stream_id, daemon_id = excluded.daemon_id, since = now(), refreshed = now()
      RETURNING agent_id)
    SELECT ${notifyCommands({ kind: "stream", agentId: sql.ref("up.agent_id"), streamId: s.streamId })} FROM up`.execute(db);
  return rows.length > 0;
}

/** Forgets the stream, unless a newer one of its agent replaced it. */
export async function unregisterStream(db: Db, agentId: string, streamId: string): Promise<void> {
  await streams(db).deleteFrom("agent_streams").where("agent_id", "=", agentId).where("stream_id", "=", streamId).execute();
}

/** Marks the streams as alive now; returns those that still have their row (the others were replaced or forgotten). */
export async function refreshStreams(db: Db, streamIds: string[]): Promise<Set<string>> {
  const { rows } = await sql<{ stream_id: string }>`
    UPDATE agent_streams SET refreshed = now()
    WHERE stream_id = ANY(${streamIds}::uuid[]) RETURNING stream_id`.execute(db);
  return new Set(rows.map((r) => r.stream_id));
}

/** The current stream of each of `agentIds` that has one. */
export async function currentStreams(db: Db, agentIds: string[]): Promise<Map<string, string>> {
  const rows = await streams(db).selectFrom("agent_streams").select(["agent_id", "stream_id"]).where("agent_id", "in", agentIds).execute();
  return new Map(rows.map((r) => [r.agent_id, r.stream_id]));
}

/** Forgets the rows of daemons that died long ago without removing theirs. */
export async function forgetDeadStreams(db: Db): Promise<void> {
  await sql`DELETE FROM agent_streams WHERE refreshed < now() - interval '1 hour'`.execute(db);
}
