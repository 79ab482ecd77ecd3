import { create, fromJson, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import { sql, type Kysely } from "kysely";
import { RuleSchema, RuleSource, type Rule } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";
import type { AlertHistoryTable, AlertRow, AlertStateName, AlertTables } from "../alerts.table.js";
import type { Selectable } from "kysely";

/** Every query of the evaluator's tables (alert_rules, alert_rule_status, alerts, alert_history). */
const tables = (db: Db): Kysely<AlertTables> => db.withTables<AlertTables>();

export type HistoryRow = Selectable<AlertHistoryTable>;
export type StatusRow = Selectable<AlertTables["alert_rule_status"]>;

/** A resolved or inactive alert's row is kept this long after resolved_at (the notifier reads the resolution), then forgotten. */
export const keepResolvedMs = 15 * 60_000;

/** Rules parsed from alert_rules, by name, with their row's version (xmin): an evaluation cycle parses only what changed. */
const parsed = new Map<string, { version: string; rule: Rule }>();

/**
 * Every rule in ListRules' order: the defaults, the configuration's, then the API's; an API rule
 * of a default's or configuration rule's name takes that rule's place (overrides).
 */
export async function allRules(db: Db, defaults: readonly Rule[], configured: readonly Rule[]): Promise<Rule[]> {
  const rows = await tables(db)
    .selectFrom("alert_rules")
    .select(["name", "rule", sql<string>`xmin::text`.as("version")])
    .orderBy("created")
    .orderBy("name")
    .execute();
  const stored = new Map<string, Rule>();
  for (const row of rows) {
    let hit = parsed.get(row.name);
    if (hit?.version !== row.version) {
      hit = { version: row.version, rule: fromJson(RuleSchema, row.rule as JsonValue, { ignoreUnknownFields: true }) };
      parsed.set(row.name, hit);
    }
    stored.set(row.name, hit.rule);
  }
  for (const name of parsed.keys()) if (!stored.has(name)) parsed.delete(name);
  const out: Rule[] = [];
  for (const [source, rules] of [
    [RuleSource.DEFAULT, defaults],
    [RuleSource.CONFIG, configured],
  ] as const) {
    for (const rule of rules) {
      const override = stored.get(rule.name);
      stored.delete(rule.name);
      out.push(override ? create(RuleSchema, { ...override, source: RuleSource.API, overrides: true }) : create(RuleSchema, { ...rule, source }));
    }
  }
  for (const rule of stored.values()) out.push(create(RuleSchema, { ...rule, source: RuleSource.API, overrides: false }));
  return out;
}

/** Stores an API rule or override (validated). */
export async function putRule(db: Db, rule: Rule): Promise<void> {
  const json = toJsonString(RuleSchema, rule);
  await tables(db)
    .insertInto("alert_rules")
    .values({ name: rule.name, rule: json })
    .onConflict((oc) => oc.column("name").doUpdateSet({ rule: json, updated: new Date() }))
    .execute();
}

/** Deletes an API rule or override; false when there was none. */
export async function deleteRule(db: Db, name: string): Promise<boolean> {
  const result = await tables(db).deleteFrom("alert_rules").where("name", "=", name).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

export async function ruleStatuses(db: Db): Promise<Map<string, StatusRow>> {
  const rows = await tables(db).selectFrom("alert_rule_status").selectAll().execute();
  return new Map(rows.map((r) => [r.name, r]));
}

/** Pending and firing alerts per rule. */
export async function activeCounts(db: Db): Promise<Map<string, number>> {
  const rows = await tables(db)
    .selectFrom("alerts")
    .select(["rule", (eb) => eb.fn.countAll<string>().as("n")])
    .where("state", "in", ["pending", "firing"])
    .groupBy("rule")
    .execute();
  return new Map(rows.map((r) => [r.rule, Number(r.n)]));
}

/** Pending and firing alerts, and those resolved (or gone inactive) since `resolvedSince` if given. */
export async function currentAlerts(db: Db, resolvedSince?: Date): Promise<AlertRow[]> {
  return tables(db)
    .selectFrom("alerts")
    .selectAll()
    .where((eb) =>
      resolvedSince
        ? eb.or([eb("state", "in", ["pending", "firing"]), eb("resolved_at", ">=", resolvedSince)])
        : eb("state", "in", ["pending", "firing"]),
    )
    .execute();
}

export interface HistoryFilter {
  rule?: string;
  fingerprint?: string;
  start?: Date;
  end?: Date;
  limit: number;
}

/** State changes, newest first. */
export async function history(db: Db, f: HistoryFilter): Promise<HistoryRow[]> {
  let q = tables(db).selectFrom("alert_history").selectAll();
  if (f.rule) q = q.where("rule", "=", f.rule);
  if (f.fingerprint) q = q.where("fingerprint", "=", f.fingerprint);
  if (f.start) q = q.where("at", ">=", f.start);
  if (f.end) q = q.where("at", "<=", f.end);
  return q.orderBy("at", "desc").orderBy("id", "desc").limit(f.limit).execute();
}

/** What one evaluation cycle writes, in one transaction. */
export interface CycleWrites {
  /** Rows inserted or replaced whole (by fingerprint). */
  upserts: AlertRow[];
  transitions: { row: AlertRow; from: AlertStateName }[];
  statuses: StatusRow[];
}

/**
 * One evaluation cycle's transaction: locks the alerts against another writer (a second daemon
 * that believes it leads, e.g. after its lock's connection broke), reads their current rows,
 * lets `decide` compute the changes from them, writes the changes, their history and the rules'
 * status, and forgets resolved rows older than keepResolvedMs and the status of rules gone.
 * Reading inside the lock means a transition is decided once, whoever evaluates.
 */
export async function commitCycle(
  db: Db,
  now: Date,
  ruleNames: readonly string[],
  decide: (current: AlertRow[]) => CycleWrites,
): Promise<CycleWrites> {
  return tables(db)
    .transaction()
    .execute(async (tx) => {
      await sql`LOCK TABLE alerts IN SHARE ROW EXCLUSIVE MODE`.execute(tx);
      const current = await tx.selectFrom("alerts").selectAll().execute();
      const writes = decide(current);
      if (writes.upserts.length > 0) {
        // One statement of arrays (unnest) rather than a parameter per column and row: a cycle may write thousands.
        const u = writes.upserts;
        const at = (d: Date | null) => d?.toISOString() ?? null;
        await sql`
          INSERT INTO alerts (fingerprint, rule, labels, annotations, state, value, active_since, fired_at, resolved_at, last_evaluation, last_active)
          SELECT * FROM unnest(${u.map((r) => r.fingerprint)}::text[], ${u.map((r) => r.rule)}::text[], ${u.map((r) => JSON.stringify(r.labels))}::jsonb[],
            ${u.map((r) => JSON.stringify(r.annotations))}::jsonb[], ${u.map((r) => r.state)}::text[], ${u.map((r) => r.value)}::float8[],
            ${u.map((r) => at(r.active_since))}::timestamptz[], ${u.map((r) => at(r.fired_at))}::timestamptz[], ${u.map((r) => at(r.resolved_at))}::timestamptz[],
            ${u.map((r) => at(r.last_evaluation))}::timestamptz[], ${u.map((r) => at(r.last_active))}::timestamptz[])
          ON CONFLICT (fingerprint) DO UPDATE SET labels = excluded.labels, annotations = excluded.annotations, state = excluded.state,
            value = excluded.value, active_since = excluded.active_since, fired_at = excluded.fired_at, resolved_at = excluded.resolved_at,
            last_evaluation = excluded.last_evaluation, last_active = excluded.last_active`.execute(tx);
      }
      if (writes.transitions.length > 0) {
        await tx
          .insertInto("alert_history")
          .values(
            writes.transitions.map(({ row, from }) => ({
              fingerprint: row.fingerprint,
              rule: row.rule,
              labels: JSON.stringify(row.labels),
              from_state: from,
              to_state: row.state,
              value: row.value,
              at: now,
            })),
          )
          .execute();
      }
      await tx
        .deleteFrom("alerts")
        .where("state", "in", ["resolved", "inactive"])
        .where("resolved_at", "<", new Date(now.getTime() - keepResolvedMs))
        .execute();
      if (writes.statuses.length > 0) {
        const st = writes.statuses;
        await sql`
          INSERT INTO alert_rule_status (name, health, last_error, last_evaluation, duration_ms)
          SELECT n, h, e, ${now}, d FROM unnest(${st.map((r) => r.name)}::text[], ${st.map((r) => r.health)}::text[], ${st.map((r) => r.last_error)}::text[],
            ${st.map((r) => r.duration_ms)}::float8[]) AS u(n, h, e, d)
          ON CONFLICT (name) DO UPDATE SET health = excluded.health, last_error = excluded.last_error,
            last_evaluation = excluded.last_evaluation, duration_ms = excluded.duration_ms`.execute(tx);
      }
      let gone = tx.deleteFrom("alert_rule_status");
      if (ruleNames.length > 0) gone = gone.where("name", "not in", ruleNames);
      await gone.execute();
      return writes;
    });
}
