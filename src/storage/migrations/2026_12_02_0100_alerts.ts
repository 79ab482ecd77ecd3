import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // Rules made through alerts.API/PutRule, and overrides of default or configuration rules by name.
  await sql`
    CREATE TABLE alert_rules (
      name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
      rule jsonb NOT NULL,
      created timestamptz NOT NULL DEFAULT now(),
      updated timestamptz NOT NULL DEFAULT now()
    )`.execute(db);

  // Each rule's last evaluation, written by the evaluating daemon, read by any.
  await sql`
    CREATE TABLE alert_rule_status (
      name text PRIMARY KEY,
      health text NOT NULL CHECK (health IN ('ok', 'error')),
      last_error text NOT NULL DEFAULT '',
      last_evaluation timestamptz NOT NULL,
      duration_ms double precision NOT NULL
    )`.execute(db);

  // One row per alert (rule × label set): the evaluator's state, which the notifier reads. Rows of
  // resolved and inactive alerts stay until the evaluator forgets them.
  await sql`
    CREATE TABLE alerts (
      fingerprint text PRIMARY KEY,
      rule text NOT NULL,
      labels jsonb NOT NULL,
      annotations jsonb NOT NULL,
      state text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved', 'inactive')),
      value double precision NOT NULL,
      active_since timestamptz NOT NULL,
      fired_at timestamptz,
      resolved_at timestamptz,
      last_evaluation timestamptz NOT NULL,
      last_active timestamptz NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX alerts_rule ON alerts (rule)`.execute(db);
  await sql`CREATE INDEX alerts_open ON alerts (state) WHERE state IN ('pending', 'firing')`.execute(db);

  // Every state change of every alert.
  await sql`
    CREATE TABLE alert_history (
      id bigserial PRIMARY KEY,
      fingerprint text NOT NULL,
      rule text NOT NULL,
      labels jsonb NOT NULL,
      from_state text NOT NULL,
      to_state text NOT NULL,
      value double precision NOT NULL,
      at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX alert_history_at ON alert_history (at DESC)`.execute(db);
  await sql`CREATE INDEX alert_history_fingerprint ON alert_history (fingerprint, at DESC)`.execute(db);
  await sql`CREATE INDEX alert_history_rule ON alert_history (rule, at DESC)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS alert_history, alerts, alert_rule_status, alert_rules`.execute(db);
}
