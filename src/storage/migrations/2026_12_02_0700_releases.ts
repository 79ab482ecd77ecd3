import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // Signed agent releases (releases.API): the manifest and signature as published, the bundle,
  // and who gets it. The manifest's fields are copied out for listing and rollout; agents read
  // them only from the signed bytes.
  await sql`
    CREATE TABLE releases (
      version text PRIMARY KEY CHECK (length(version) BETWEEN 1 AND 100),
      manifest bytea NOT NULL,
      signature bytea NOT NULL,
      bundle bytea NOT NULL,
      sha512 text NOT NULL,
      size bigint NOT NULL,
      min_version text NOT NULL,
      expires timestamptz NOT NULL,
      published timestamptz NOT NULL DEFAULT now(),
      rollout_labels jsonb,
      rollout_percent smallint NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100)
    )`.execute(db);
  // Each agent's latest update step (releases.API/ReportUpdate), shown in the inventory.
  await sql`
    ALTER TABLE agents
      ADD COLUMN update_version text,
      ADD COLUMN update_step text,
      ADD COLUMN update_reason text,
      ADD COLUMN update_time timestamptz`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE agents
      DROP COLUMN IF EXISTS update_version,
      DROP COLUMN IF EXISTS update_step,
      DROP COLUMN IF EXISTS update_reason,
      DROP COLUMN IF EXISTS update_time`.execute(db);
  await sql`DROP TABLE IF EXISTS releases`.execute(db);
}
