import type { ColumnType, Generated, Selectable } from "kysely";
import type { LabelMatcher } from "../../tsdb/index.js";
import type { AlertTables } from "../alerts.table.js";

/** A label matcher as stored: as the store spells it ({label, op: "=~", value}). */
export type StoredMatcher = LabelMatcher;

export interface AlertSilencesTable {
  id: string;
  matchers: ColumnType<StoredMatcher[], string, string>;
  starts: Date;
  ends: Date;
  comment: string;
  created_by: string;
  created: ColumnType<Date, Date | undefined, never>;
}

export interface NotificationChannelsTable {
  name: string;
  /** alerts.Channel as protobuf JSON, secrets included. */
  channel: ColumnType<unknown, string, string>;
  created: ColumnType<Date, Date | undefined, never>;
  updated: ColumnType<Date, Date | undefined, Date>;
}

export interface NotificationRoutesTable {
  position: number;
  /** alerts.Route as protobuf JSON. */
  route: ColumnType<unknown, string, string>;
}

/** What one channel was last told about one group. */
export interface NotificationGroupsTable {
  group_key: string;
  channel: string;
  group_labels: ColumnType<Record<string, string>, string, string>;
  /** Fingerprints of the firing alerts of the last notification: their resolution is owed. */
  notified_firing: string[];
  next_flush: Date;
  last_notified: Date | null;
}

/** One alert as a notification carries it, frozen when the group was flushed. */
export interface NotifiedAlert {
  fingerprint: string;
  status: "firing" | "resolved";
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  /** The resolution's time; empty while firing. */
  endsAt: string;
}

export type NotificationState = "pending" | "sent" | "failed";

export interface NotificationsTable {
  id: Generated<string>;
  channel: string;
  group_key: string;
  group_labels: ColumnType<Record<string, string>, string, string>;
  alerts: ColumnType<NotifiedAlert[], string, string>;
  fingerprints: string[];
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt: ColumnType<Date, Date | undefined, Date>;
  state: ColumnType<NotificationState, NotificationState | undefined, NotificationState>;
  created: ColumnType<Date, Date | undefined, never>;
}

export interface NotificationDeliveriesTable {
  id: Generated<string>;
  notification_id: string;
  channel: string;
  group_key: string;
  fingerprints: string[];
  attempt: number;
  at: ColumnType<Date, Date | undefined, never>;
  ok: boolean;
  error: ColumnType<string, string | undefined, never>;
  next_attempt: Date | null;
}

export type SilenceRow = Selectable<AlertSilencesTable>;
export type NotificationRow = Selectable<NotificationsTable>;
export type DeliveryRow = Selectable<NotificationDeliveriesTable>;

/** The notifier's tables and the `alerts` table it reads, for `db.withTables`. */
export type NotificationTables = AlertTables & {
  alert_silences: AlertSilencesTable;
  notification_channels: NotificationChannelsTable;
  notification_routes: NotificationRoutesTable;
  notification_groups: NotificationGroupsTable;
  notifications: NotificationsTable;
  notification_deliveries: NotificationDeliveriesTable;
};
