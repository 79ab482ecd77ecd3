import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // Rollups read every series over a short time range (the last minute, a late hour). The
  // primary key leads with series_id, so without this each of those reads scanned the whole
  // day partition. Samples arrive in time order, which makes a BRIN index a few kB per day
  // and nearly free to maintain; autosummarize keeps the newest block ranges summarised.
  await sql`CREATE INDEX samples_ts_brin ON samples USING brin (ts) WITH (autosummarize = on)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS samples_ts_brin`.execute(db);
}
