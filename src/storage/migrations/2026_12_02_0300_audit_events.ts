import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // The audit trail (src/audit/): one row per write, inserted in batches. No foreign key to
  // tokens: the trail outlives what it names, and an insert must not wait on the tokens table.
  await sql`
    CREATE TABLE audit_events (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      ts timestamptz NOT NULL,
      action text NOT NULL,
      outcome text NOT NULL,
      metrics text[] NOT NULL DEFAULT '{}',
      ip_address text,
      token_id uuid,
      actor_name text,
      role text NOT NULL
    )`.execute(db);
  // Retention deletes by time; audit.API/List pages newest first by id, filtered by actor or action.
  await sql`CREATE INDEX audit_events_ts ON audit_events (ts)`.execute(db);
  await sql`CREATE INDEX audit_events_token ON audit_events (token_id, id) WHERE token_id IS NOT NULL`.execute(db);
  await sql`CREATE INDEX audit_events_actor_name ON audit_events (actor_name, id) WHERE actor_name IS NOT NULL`.execute(db);
  await sql`CREATE INDEX audit_events_action ON audit_events (action, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_events`.execute(db);
}
