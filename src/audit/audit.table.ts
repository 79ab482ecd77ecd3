import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

/** One audit event (event.ts: AuditEvent), kept for the audit retention. */
export interface AuditEventsTable {
  id: Generated<string>;
  ts: ColumnType<Date, Date, never>;
  action: string;
  outcome: string;
  metrics: string[];
  ip_address: string | null;
  token_id: string | null;
  actor_name: string | null;
  role: string;
}

export type AuditEventRow = Selectable<AuditEventsTable>;
export type NewAuditEventRow = Insertable<AuditEventsTable>;

/** The tables of src/audit/, for `db.withTables` (a type literal: kysely wants an index signature). */
export type AuditTables = { audit_events: AuditEventsTable };
