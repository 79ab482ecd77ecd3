import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // The machine an agent runs on (an app-specific hash of /etc/machine-id): enrolling the same
  // machine again under the same hostname keeps its agent id.
  await sql`ALTER TABLE agents ADD COLUMN machine_id text CHECK (length(machine_id) BETWEEN 1 AND 255)`.execute(db);

  // A hostname names one active agent, so that commands.API/Submit by hostname (and the host
  // label derived from it) cannot be ambiguous. Earlier versions let a second agent take a name:
  // the most recently seen one keeps it, the others get their id's first 8 characters appended,
  // which `specta agents` shows and `specta agents remove` takes.
  await sql`
    UPDATE agents a SET hostname = left(a.hostname, 246) || '-' || left(a.id::text, 8)
    FROM (
      SELECT id, row_number() OVER (PARTITION BY hostname ORDER BY last_seen DESC, first_seen DESC, id) AS n
      FROM agents WHERE deregistered IS NULL
    ) d
    WHERE a.id = d.id AND d.n > 1`.execute(db);
  await sql`DROP INDEX agents_active_hostname`.execute(db);
  await sql`CREATE UNIQUE INDEX agents_active_hostname ON agents (hostname) WHERE deregistered IS NULL`.execute(db);

  // Which token minted a token (tokens.API/Create): revoking a token revokes what it minted, and
  // what those minted. NULL for the daemon's own local admin token, agents' credentials, and
  // tokens minted before this column existed.
  await sql`ALTER TABLE tokens ADD COLUMN created_by uuid REFERENCES tokens (id)`.execute(db);
  await sql`CREATE INDEX tokens_created_by ON tokens (created_by) WHERE created_by IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS tokens_created_by`.execute(db);
  await sql`ALTER TABLE tokens DROP COLUMN IF EXISTS created_by`.execute(db);
  await sql`DROP INDEX IF EXISTS agents_active_hostname`.execute(db);
  await sql`CREATE INDEX agents_active_hostname ON agents (hostname) WHERE deregistered IS NULL`.execute(db);
  await sql`ALTER TABLE agents DROP COLUMN IF EXISTS machine_id`.execute(db);
}
