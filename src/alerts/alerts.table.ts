import type { ColumnType, Generated, Selectable } from "kysely";

/** Where an alert stands, as stored (alerts.AlertState without its prefix). */
export type AlertStateName = "pending" | "firing" | "resolved" | "inactive";

/** Rules made through alerts.API/PutRule, and overrides of default or configuration rules. */
export interface AlertRulesTable {
  name: string;
  /** alerts.Rule as protobuf JSON. */
  rule: ColumnType<unknown, string, string>;
  created: ColumnType<Date, Date | undefined, never>;
  updated: ColumnType<Date, Date | undefined, Date>;
}

/** Each rule's last evaluation. */
export interface AlertRuleStatusTable {
  name: string;
  health: "ok" | "error";
  last_error: ColumnType<string, string | undefined, string>;
  last_evaluation: Date;
  duration_ms: number;
}

/**
 * One row per alert (a rule and one label set), written by the evaluator (leader-only), read by
 * the notifier and the API. `labels` holds every label: alertname, the rule's and the group's.
 */
export interface AlertsTable {
  /** Hex digest of the rule's name and the labels. */
  fingerprint: string;
  rule: string;
  labels: ColumnType<Record<string, string>, string, string>;
  annotations: ColumnType<Record<string, string>, string, string>;
  state: AlertStateName;
  value: number;
  active_since: Date;
  fired_at: Date | null;
  resolved_at: Date | null;
  last_evaluation: Date;
  /** The last evaluation at which its condition held (keep_firing_for counts from here). */
  last_active: Date;
}

/** Every state change of every alert. */
export interface AlertHistoryTable {
  id: Generated<string>;
  fingerprint: string;
  rule: string;
  labels: ColumnType<Record<string, string>, string, string>;
  from_state: AlertStateName;
  to_state: AlertStateName;
  value: number;
  at: ColumnType<Date, Date | undefined, never>;
}

export type AlertRow = Selectable<AlertsTable>;

/** The evaluator's tables, for `db.withTables` (a type literal: kysely wants an index signature). */
export type AlertTables = {
  alert_rules: AlertRulesTable;
  alert_rule_status: AlertRuleStatusTable;
  alerts: AlertsTable;
  alert_history: AlertHistoryTable;
};
