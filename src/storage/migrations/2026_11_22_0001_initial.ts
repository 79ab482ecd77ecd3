import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE series (
      id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      metric text NOT NULL CHECK (length(metric) BETWEEN 1 AND 255),
      labels jsonb NOT NULL,
      kind smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
      created timestamptz NOT NULL DEFAULT now(),
      UNIQUE (metric, labels)
    )`.execute(db);

  // Keyed by series first so that the same schema can be distributed by series_id (Citus);
  // no foreign key to series on the hot path.
  await sql`
    CREATE TABLE samples (
      series_id integer NOT NULL,
      ts timestamptz NOT NULL,
      value double precision NOT NULL,
      PRIMARY KEY (series_id, ts)
    ) PARTITION BY RANGE (ts)`.execute(db);

  for (const tier of ["samples_1m", "samples_1h"]) {
    await sql`
      CREATE TABLE ${sql.table(tier)} (
        series_id integer NOT NULL,
        bucket timestamptz NOT NULL,
        min double precision NOT NULL,
        max double precision NOT NULL,
        sum double precision NOT NULL,
        count bigint NOT NULL,
        last double precision NOT NULL,
        PRIMARY KEY (series_id, bucket)
      )`.execute(db);
    await sql`CREATE INDEX ${sql.id(`${tier}_bucket`)} ON ${sql.table(tier)} (bucket)`.execute(db);
  }

  await sql`
    CREATE TABLE instrument_totals (
      series_id integer PRIMARY KEY,
      total double precision NOT NULL
    )`.execute(db);

  await sql`
    CREATE TABLE rollup_state (
      tier text PRIMARY KEY,
      done_until timestamptz NOT NULL
    )`.execute(db);

  await sql`CREATE TABLE late_hours (hour timestamptz PRIMARY KEY)`.execute(db);

  await sql`
    CREATE TABLE tokens (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL,
      role text NOT NULL CHECK (role IN ('admin', 'viewer', 'agent')),
      hash bytea NOT NULL UNIQUE,
      agent_id uuid,
      created timestamptz NOT NULL DEFAULT now(),
      revoked timestamptz
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ["tokens", "late_hours", "rollup_state", "instrument_totals", "samples_1h", "samples_1m", "samples", "series"]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
