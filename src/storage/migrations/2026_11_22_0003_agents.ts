import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // The fleet's inventory. last_seen is refreshed in batches by the agent-liveness handler;
  // the status (online / stale / offline) is computed from it when listing, never stored.
  // A deregistered agent keeps its row (its id stays unique) but leaves the inventory.
  await sql`
    CREATE TABLE agents (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      hostname text NOT NULL CHECK (length(hostname) BETWEEN 1 AND 255),
      os text NOT NULL DEFAULT '',
      os_version text NOT NULL DEFAULT '',
      kernel text NOT NULL DEFAULT '',
      arch text NOT NULL DEFAULT '',
      cpu_model text NOT NULL DEFAULT '',
      cpu_count integer NOT NULL DEFAULT 0,
      memory_bytes bigint NOT NULL DEFAULT 0,
      boot_time timestamptz,
      labels jsonb NOT NULL DEFAULT '{}',
      agent_version text NOT NULL DEFAULT '',
      first_seen timestamptz NOT NULL DEFAULT now(),
      last_seen timestamptz NOT NULL DEFAULT now(),
      deregistered timestamptz
    )`.execute(db);
  await sql`CREATE INDEX agents_active_hostname ON agents (hostname) WHERE deregistered IS NULL`.execute(db);
  // Deregister revokes every credential of an agent.
  await sql`CREATE INDEX tokens_agent_id ON tokens (agent_id) WHERE agent_id IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS tokens_agent_id`.execute(db);
  await db.schema.dropTable("agents").ifExists().execute();
}
