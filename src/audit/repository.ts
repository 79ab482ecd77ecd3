import { sql } from "kysely";
import type { Db } from "../storage/database.js";
import { isUuid } from "../storage/ids.js";
import type { AuditTables, AuditEventRow } from "./audit.table.js";
import type { AuditEvent } from "./event.js";
import type { SinkWriter } from "./queue.js";

/** The database sink: each batch is one INSERT. */
export function databaseSink(db: Db): SinkWriter<AuditEvent> {
  const tables = db.withTables<AuditTables>();
  return {
    name: "database",
    async write(batch) {
      await tables
        .insertInto("audit_events")
        .values(
          batch.map((e) => ({
            ts: new Date(e.ts),
            action: e.action,
            outcome: e.outcome,
            metrics: e.metrics,
            ip_address: e.ip_address,
            token_id: e.actor.token_id,
            actor_name: e.actor.name,
            role: e.actor.role,
          })),
        )
        .execute();
    },
  };
}

export interface AuditFilter {
  /** A token id or a credential's name. */
  actor?: string | undefined;
  action?: string | undefined;
  start?: Date | undefined;
  end?: Date | undefined;
  /** Only events with a smaller id (the previous page's last). */
  beforeId?: string | undefined;
  limit: number;
}

/** Events matching `filter`, newest first (by id, the order they were stored in). */
export async function listEvents(db: Db, filter: AuditFilter): Promise<AuditEventRow[]> {
  let query = db.withTables<AuditTables>().selectFrom("audit_events").selectAll().orderBy("id", "desc").limit(filter.limit);
  const { actor, action, start, end, beforeId } = filter;
  if (actor !== undefined) query = isUuid(actor) ? query.where("token_id", "=", actor) : query.where("actor_name", "=", actor);
  if (action !== undefined) query = query.where("action", "=", action);
  if (start !== undefined) query = query.where("ts", ">=", start);
  if (end !== undefined) query = query.where("ts", "<", end);
  if (beforeId !== undefined) query = query.where("id", "<", beforeId);
  return query.execute();
}

/** Deletes up to `batch` events older than `before`; returns how many it deleted (fewer than `batch`: none are left). */
export async function deleteOldEvents(db: Db, before: Date, batch: number): Promise<number> {
  const result = await sql`
    DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE ts < ${before} ORDER BY ts LIMIT ${batch})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
