import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // On-demand diagnostics, one row per command for one agent. The diagnostic is stored as
  // protobuf JSON (commands.Diagnostic), its oneof case in `kind` (the proto field name) so that
  // the agent's allow-list is checked in SQL. `deadline` = created + ttl: a command still queued
  // then expires. `delivered` is when the agent's stream took it; its timeout runs from there.
  await sql`
    CREATE TABLE commands (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      agent_id uuid NOT NULL REFERENCES agents (id),
      kind text NOT NULL,
      diagnostic jsonb NOT NULL,
      timeout_ms integer NOT NULL CHECK (timeout_ms > 0),
      state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'delivered', 'running', 'succeeded', 'failed', 'timed_out', 'expired', 'cancelled')),
      created timestamptz NOT NULL DEFAULT now(),
      deadline timestamptz NOT NULL,
      updated timestamptz NOT NULL DEFAULT now(),
      delivered timestamptz,
      output jsonb
    )`.execute(db);
  // "The queued commands of agent X, oldest first" (every Stream), and the open commands by
  // deadline (the expiry handler).
  await sql`CREATE INDEX commands_queued ON commands (agent_id, created) WHERE state = 'queued'`.execute(db);
  await sql`CREATE INDEX commands_open_deadline ON commands (deadline) WHERE state IN ('queued', 'delivered', 'running')`.execute(db);
  // Which agents hold an open commands.API/Stream, and on which daemon: one row per agent (a
  // newer stream replaces the older one). Each daemon refreshes its rows; a row not refreshed
  // for a minute belongs to a daemon that died and is ignored.
  await sql`
    CREATE TABLE agent_streams (
      agent_id uuid PRIMARY KEY,
      stream_id uuid NOT NULL,
      daemon_id uuid NOT NULL,
      since timestamptz NOT NULL DEFAULT now(),
      refreshed timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("agent_streams").ifExists().execute();
  await db.schema.dropTable("commands").ifExists().execute();
}
