import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
//
// The time-series store (src/tsdb/). Samples leave the one-row-per-sample table for:
// - tsdb_head: what is not compacted yet, one row per group commit and group of 64 series
//   (id >> 6), points columnar and encoded; partitioned by 2-hour block, so that a compacted
//   block is dropped whole instead of deleted row by row;
// - tsdb_chunks: one row per series and 2-hour block, compressed; partitioned by day;
// - tsdb_rollups_5m / tsdb_rollups_1h: per group of series and block, the 5-minute and hourly
//   min/max/sum/count/last of each series, compressed; partitioned by day;
// - tsdb_compacted: which (head partition, group) pairs are already in chunks, so that readers
//   count every sample once while a partition is being compacted.
// Every table leads with series_id or the group (derived from it), so the schema can be
// distributed by series on Citus. The old samples, samples_1m and samples_1h tables stay until
// the store has moved their rows into chunks (src/tsdb/legacy-import.ts), then it drops them.
export async function up(db: Kysely<any>): Promise<void> {
  // Series are unique by a hash of their canonical text, not by (metric, labels): a btree entry
  // over large label values exceeds PostgreSQL's 2,704-byte limit. The key is the first 8 bytes
  // of SHA-256 as a bigint (the store checks metric and labels on every lookup, so a collision
  // refuses a series instead of mixing two). agent_id is the creator, for per-agent limits.
  await sql`ALTER TABLE series ADD COLUMN key bigint`.execute(db);
  await sql`ALTER TABLE series ADD COLUMN agent_id uuid`.execute(db);
  await sql`ALTER TABLE series DROP COLUMN created`.execute(db);
  // The canonical text is metric, then for each label in key order NUL key SOH value (as
  // src/shared/series-key.ts builds it); label keys are ASCII, so ORDER BY in "C" matches.
  await sql`
    UPDATE series s SET key = ('x' || encode(substring(sha256(
      convert_to(s.metric, 'UTF8') || coalesce((
        SELECT string_agg('\\x00'::bytea || convert_to(l.key, 'UTF8') || '\\x01'::bytea || convert_to(l.value, 'UTF8'), ''::bytea ORDER BY l.key COLLATE "C")
        FROM jsonb_each_text(s.labels) AS l(key, value)), ''::bytea)) FROM 1 FOR 8), 'hex'))::bit(64)::bigint`.execute(db);
  await sql`ALTER TABLE series ALTER COLUMN key SET NOT NULL`.execute(db);
  await sql`ALTER TABLE series DROP CONSTRAINT series_metric_labels_key`.execute(db);
  await sql`CREATE UNIQUE INDEX series_key ON series (key)`.execute(db);
  await sql`CREATE INDEX series_metric ON series (metric)`.execute(db);
  // Equality matchers (host="db-1") find their series through this index instead of every series of the metric.
  // No pending list: series are created rarely, and its unmerged entries are several times larger.
  await sql`CREATE INDEX series_labels ON series USING gin (labels jsonb_path_ops) WITH (fastupdate = off)`.execute(db);
  await sql`CREATE INDEX series_agent ON series (agent_id) WHERE agent_id IS NOT NULL`.execute(db);

  // The time of each instrument total's latest sample: the next one is never earlier, whatever
  // the clocks of the daemons (a counter that seemed to go back would read as a reset).
  await sql`ALTER TABLE instrument_totals ADD COLUMN at bigint NOT NULL DEFAULT 0`.execute(db);

  await sql`
    CREATE TABLE tsdb_head (
      id bigint GENERATED ALWAYS AS IDENTITY,
      part integer NOT NULL,
      grp integer NOT NULL,
      lo bigint NOT NULL,
      hi bigint NOT NULL,
      n integer NOT NULL,
      data bytea NOT NULL
    ) PARTITION BY RANGE (part)`.execute(db);
  await sql`CREATE INDEX tsdb_head_grp ON tsdb_head (grp, hi)`.execute(db);
  // The points are encoded already: PostgreSQL's own compression would spend CPU for nothing.
  await sql`ALTER TABLE tsdb_head ALTER COLUMN data SET STORAGE EXTERNAL`.execute(db);

  await sql`
    CREATE TABLE tsdb_compacted (
      part integer NOT NULL,
      grp integer NOT NULL,
      PRIMARY KEY (part, grp)
    )`.execute(db);

  await sql`
    CREATE TABLE tsdb_chunks (
      series_id integer NOT NULL,
      block integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (series_id, block) WITH (fillfactor = 100)
    ) PARTITION BY RANGE (block)`.execute(db);
  // Compaction inserts keys in ascending order and rarely updates them: full index pages.
  // Rollups are per group of series: one row per series and block would cost more in row
  // overhead than the buckets themselves take.
  for (const table of ["tsdb_rollups_5m", "tsdb_rollups_1h"]) {
    await sql`
      CREATE TABLE ${sql.table(table)} (
        grp integer NOT NULL,
        block integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (grp, block) WITH (fillfactor = 100)
      ) PARTITION BY RANGE (block)`.execute(db);
  }
  for (const table of ["tsdb_chunks", "tsdb_rollups_5m", "tsdb_rollups_1h"]) {
    await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN data SET STORAGE EXTERNAL`.execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE instrument_totals DROP COLUMN at`.execute(db);
  for (const table of ["tsdb_rollups_1h", "tsdb_rollups_5m", "tsdb_chunks", "tsdb_compacted", "tsdb_head"]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
  await sql`DROP INDEX IF EXISTS series_agent, series_labels, series_metric, series_key`.execute(db);
  await sql`ALTER TABLE series ADD CONSTRAINT series_metric_labels_key UNIQUE (metric, labels)`.execute(db);
  await sql`ALTER TABLE series DROP COLUMN agent_id, DROP COLUMN key`.execute(db);
}
