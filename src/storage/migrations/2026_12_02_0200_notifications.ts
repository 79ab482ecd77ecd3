import { sql, type Kysely } from "kysely";

// Frozen in time: migrations use Kysely<any> and never import the current schema types.
export async function up(db: Kysely<any>): Promise<void> {
  // Silences: matchers as [{label, op, value}]; ExpireSilence moves `ends` to now.
  await sql`
    CREATE TABLE alert_silences (
      id text PRIMARY KEY,
      matchers jsonb NOT NULL,
      starts timestamptz NOT NULL,
      ends timestamptz NOT NULL CHECK (ends > starts),
      comment text NOT NULL,
      created_by text NOT NULL,
      created timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX alert_silences_ends ON alert_silences (ends)`.execute(db);

  // Channels: alerts.Channel as protobuf JSON, secrets included (the API never returns them).
  await sql`
    CREATE TABLE notification_channels (
      name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
      channel jsonb NOT NULL,
      created timestamptz NOT NULL DEFAULT now(),
      updated timestamptz NOT NULL DEFAULT now()
    )`.execute(db);

  // The routing table: alerts.Route as protobuf JSON, in order.
  await sql`
    CREATE TABLE notification_routes (
      position integer PRIMARY KEY,
      route jsonb NOT NULL
    )`.execute(db);

  // Per group and channel, what was notified last: the dispatcher's memory across restarts and leaders.
  await sql`
    CREATE TABLE notification_groups (
      group_key text NOT NULL,
      channel text NOT NULL,
      group_labels jsonb NOT NULL,
      notified_firing text[] NOT NULL DEFAULT '{}',
      next_flush timestamptz NOT NULL,
      last_notified timestamptz,
      PRIMARY KEY (group_key, channel)
    )`.execute(db);

  // Notifications to send (the outbox): one per group flush and channel, retried until sent or given up.
  await sql`
    CREATE TABLE notifications (
      id bigserial PRIMARY KEY,
      channel text NOT NULL,
      group_key text NOT NULL,
      group_labels jsonb NOT NULL,
      alerts jsonb NOT NULL,
      fingerprints text[] NOT NULL,
      attempts integer NOT NULL DEFAULT 0,
      next_attempt timestamptz NOT NULL DEFAULT now(),
      state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
      created timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX notifications_due ON notifications (next_attempt) WHERE state = 'pending'`.execute(db);

  // Every attempt to deliver a notification.
  await sql`
    CREATE TABLE notification_deliveries (
      id bigserial PRIMARY KEY,
      notification_id bigint NOT NULL,
      channel text NOT NULL,
      group_key text NOT NULL,
      fingerprints text[] NOT NULL,
      attempt integer NOT NULL,
      at timestamptz NOT NULL DEFAULT now(),
      ok boolean NOT NULL,
      error text NOT NULL DEFAULT '',
      next_attempt timestamptz
    )`.execute(db);
  await sql`CREATE INDEX notification_deliveries_at ON notification_deliveries (at DESC)`.execute(db);
  await sql`CREATE INDEX notification_deliveries_fingerprints ON notification_deliveries USING gin (fingerprints)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS notification_deliveries, notifications, notification_groups, notification_routes, notification_channels, alert_silences`.execute(
    db,
  );
}
