import { sql, type Kysely } from "kysely";
import type { Labels } from "../shared/labels.js";
import type { Db } from "../storage/database.js";
import type { AgentRow, AgentsTables, NewAgentRow } from "./agents.table.js";

/** The fleet's repository: every query of the agents table goes through this module; `db` may be a transaction. */
const agents = (db: Db): Kysely<AgentsTables> => db.withTables<AgentsTables>();

/**
 * What an agent reports about itself (agent.API/Register), validated: the columns a registration
 * writes; `packages` (JSON text) only when the agent sent them, else the stored list stays.
 */
export type Inventory = Required<Omit<NewAgentRow, "id" | "first_seen" | "last_seen" | "packages">> & { packages?: string };

/** Every column but the packages, which can be large and are read only when asked for. */
const summaryColumns = [
  "id",
  "hostname",
  "os",
  "os_version",
  "kernel",
  "arch",
  "cpu_model",
  "cpu_count",
  "memory_bytes",
  "boot_time",
  "labels",
  "agent_version",
  "first_seen",
  "last_seen",
  "deregistered",
  "machine_id",
  "update_version",
  "update_step",
  "update_reason",
  "update_time",
] as const;

/** Which agent: by id, or by the hostname it holds among the active agents. */
export type AgentKey = { id: string } | { hostname: string };

/**
 * The active agents, by hostname, that carry every label of `labels` (all of them when it is
 * empty); their packages only `withPackages` (null otherwise).
 */
export async function listAgents(db: Db, labels: Labels, withPackages = false): Promise<AgentRow[]> {
  const table = agents(db).selectFrom("agents");
  let query = (withPackages ? table.selectAll() : table.select([...summaryColumns, sql<null>`NULL`.as("packages")])).where(
    "deregistered",
    "is",
    null,
  );
  if (Object.keys(labels).length > 0) query = query.where(sql<boolean>`labels @> ${JSON.stringify(labels)}::jsonb`);
  return query.orderBy("hostname").orderBy("id").execute();
}

/** The id of the active agent `key` names. */
export async function activeAgentId(db: Db, key: AgentKey): Promise<string | undefined> {
  const query = agents(db).selectFrom("agents").select("id").where("deregistered", "is", null);
  const row = await ("id" in key ? query.where("id", "=", key.id) : query.where("hostname", "=", key.hostname)).executeTakeFirst();
  return row?.id;
}

/** The ids of the active agents that carry every label of `labels`, by hostname. */
export async function agentIdsWithLabels(db: Db, labels: Labels): Promise<string[]> {
  const rows = await agents(db)
    .selectFrom("agents")
    .select("id")
    .where("deregistered", "is", null)
    .where(sql<boolean>`labels @> ${JSON.stringify(labels)}::jsonb`)
    .orderBy("hostname")
    .execute();
  return rows.map((r) => r.id);
}

/** When each active agent was last seen, as stored. */
export function lastSeenOfActive(db: Db): Promise<Pick<AgentRow, "id" | "hostname" | "last_seen">[]> {
  return agents(db).selectFrom("agents").select(["id", "hostname", "last_seen"]).where("deregistered", "is", null).execute();
}

/** Locks the active agent `key` names until the transaction `db` ends. */
export function lockAgent(db: Db, key: AgentKey): Promise<Pick<AgentRow, "id" | "machine_id"> | undefined> {
  const query = agents(db).selectFrom("agents").select(["id", "machine_id"]).where("deregistered", "is", null);
  return ("id" in key ? query.where("id", "=", key.id) : query.where("hostname", "=", key.hostname)).forUpdate().executeTakeFirst();
}

/** A new agent; fails with a unique violation (isHostnameTaken) when an active agent holds its hostname. */
export async function insertAgent(db: Db, inventory: Inventory): Promise<string> {
  return (await agents(db).insertInto("agents").values(inventory).returning("id").executeTakeFirstOrThrow()).id;
}

/** Writes what a registration of `agentId` reported; it counts as a call, so last_seen moves too. */
export async function updateInventory(db: Db, agentId: string, inventory: Inventory): Promise<void> {
  await agents(db)
    .updateTable("agents")
    .set({ ...inventory, last_seen: new Date() })
    .where("id", "=", agentId)
    .execute();
}

/** Marks the active agent `agentId` deregistered; false when there is none. */
export async function deregisterAgent(db: Db, agentId: string): Promise<boolean> {
  const row = await agents(db)
    .updateTable("agents")
    .set({ deregistered: new Date() })
    .where("id", "=", agentId)
    .where("deregistered", "is", null)
    .returning("id")
    .executeTakeFirst();
  return row !== undefined;
}

/** Moves each agent's last_seen to its time in `seen` (Unix ms), never back, in one statement; returns how many moved. */
export async function recordLastSeen(db: Db, seen: ReadonlyMap<string, number>): Promise<number> {
  const ids = [...seen.keys()];
  const times = ids.map((id) => new Date(seen.get(id)!).toISOString());
  const result = await sql`
    UPDATE agents a SET last_seen = greatest(a.last_seen, v.seen)
    FROM unnest(${ids}::uuid[], ${times}::timestamptz[]) AS v(id, seen)
    WHERE a.id = v.id AND a.deregistered IS NULL`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Whether `err` is the refusal of a second active agent with a hostname (its unique index). */
export function isHostnameTaken(err: unknown): boolean {
  const { code, constraint } = err as { code?: string; constraint?: string };
  return code === "23505" && constraint === "agents_active_hostname";
}

/** The labels of the active agent `agentId`; undefined when there is none. */
export async function activeAgentLabels(db: Db, agentId: string): Promise<Labels | undefined> {
  const row = await agents(db).selectFrom("agents").select("labels").where("id", "=", agentId).where("deregistered", "is", null).executeTakeFirst();
  return row?.labels;
}

/** The latest step of an agent's self-update, as releases.API/ReportUpdate records it. */
export interface UpdateReport {
  version: string;
  step: string;
  reason: string;
}

/** Records `agentId`'s latest update step (shown by agent.API/List); false when the agent is not active. */
export async function recordUpdate(db: Db, agentId: string, report: UpdateReport): Promise<boolean> {
  const row = await agents(db)
    .updateTable("agents")
    .set({ update_version: report.version, update_step: report.step, update_reason: report.reason, update_time: new Date() })
    .where("id", "=", agentId)
    .where("deregistered", "is", null)
    .returning("id")
    .executeTakeFirst();
  return row !== undefined;
}
