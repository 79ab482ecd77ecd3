import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // The host's installed packages as its agent last reported them (agent.API/Register's
  // packages): {"manager", "collected", "packages": [{"name", "version", "arch"}]}; NULL until
  // an agent reports them. An inventory, not series.
  await sql`ALTER TABLE agents ADD COLUMN packages jsonb`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE agents DROP COLUMN IF EXISTS packages`.execute(db);
}
