import type { Kysely } from "kysely";
import type { Db } from "../storage/database.js";
import type { CommandsTables } from "./commands.table.js";

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
