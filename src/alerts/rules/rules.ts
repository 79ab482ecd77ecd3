import { createHash } from "node:crypto";
import { create, fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, type Duration } from "@bufbuild/protobuf/wkt";
import { Comparison, ConditionSchema, RuleSchema, RuleSource, type Condition, type Rule } from "../../../gen/alerts/alerts_pb.js";
import { Aggregation, MatchOperator } from "../../../gen/metrics/metrics_pb.js";
import { labelKeyPattern, metricNamePattern } from "../../config/config.js";
import { parsePromql, ParseError } from "../../promql/parse.js";
import { compileRegex } from "../../promql/regex.js";
import { templateError } from "./template.js";

/** A rule that cannot be used; the message says why, for the caller or the operator. */
export class RuleError extends Error {
  override name = "RuleError";
}

export const ruleLimits = {
  namePattern: /^[A-Za-z0-9_:.-]{1,100}$/,
  /** window, pending_for and keep_firing_for at most. */
  maxDurationMs: 7 * 86_400_000,
  defaultWindowMs: 5 * 60_000,
  maxExprLength: 10_000,
  maxMatchers: 20,
  maxLabels: 30,
  maxLabelValueLength: 1_000,
  maxAnnotations: 20,
  maxAnnotationLength: 4_000,
};

/** The label every alert carries: its rule's name. */
export const alertnameLabel = "alertname";

function fail(message: string): never {
  throw new RuleError(message);
}

function checkDuration(d: Duration | undefined, where: string): number {
  if (!d) return 0;
  const ms = durationMs(d);
  if (!(ms >= 0) || d.nanos < 0 || d.seconds < 0n) fail(`${where} must not be negative`);
  if (ms > ruleLimits.maxDurationMs) fail(`${where} must be at most 7d, got ${ms / 1000} s`);
  return ms;
}

function checkLabelName(name: string, where: string): void {
  if (!labelKeyPattern.test(name) || name.startsWith("__"))
    fail(`${where}: "${name.slice(0, 100)}" is not a label name (${labelKeyPattern.source}, not starting with __)`);
}

function checkCondition(c: Condition | undefined): void {
  if (!c) fail("condition is required");
  if (c.expr !== "") {
    const metricForm =
      c.metric !== "" ||
      c.matchers.length > 0 ||
      c.aggregation !== Aggregation.UNSPECIFIED ||
      c.groupBy.length > 0 ||
      c.window !== undefined ||
      c.comparison !== Comparison.UNSPECIFIED ||
      c.threshold !== 0 ||
      c.quantile !== 0;
    if (metricForm)
      fail("condition: expr replaces metric, matchers, aggregation, group_by, window, comparison, threshold and quantile: set either expr or those");
    if (c.expr.length > ruleLimits.maxExprLength) fail(`condition.expr is longer than ${ruleLimits.maxExprLength} characters`);
    let type: string;
    try {
      type = parsePromql(c.expr).type;
    } catch (err) {
      if (err instanceof ParseError) fail(`condition.expr: ${err.message}`);
      throw err;
    }
    if (type !== "vector") fail(`condition.expr must give an instant vector (each series an alert), not a ${type}`);
    return;
  }
  if (c.metric === "") fail("condition needs a metric (or an expr)");
  if (c.metric.length > 255 || !metricNamePattern.test(c.metric))
    fail(`condition.metric "${c.metric.slice(0, 100)}" must match ${metricNamePattern.source}`);
  if (c.matchers.length > ruleLimits.maxMatchers) fail(`condition has more than ${ruleLimits.maxMatchers} matchers`);
  for (const m of c.matchers) {
    if (m.label === "") fail("condition.matchers: a matcher has an empty label name");
    if (m.operator === MatchOperator.UNSPECIFIED || MatchOperator[m.operator] === undefined) {
      fail(`condition.matchers: matcher on ${m.label}: operator must be MATCH_OPERATOR_EQUAL, _NOT_EQUAL, _REGEX or _NOT_REGEX`);
    }
    if (m.operator === MatchOperator.REGEX || m.operator === MatchOperator.NOT_REGEX) {
      try {
        compileRegex(m.value);
      } catch (err) {
        fail(`condition.matchers: matcher on ${m.label}: /${m.value.slice(0, 100)}/ is not a usable regular expression: ${(err as Error).message}`);
      }
    }
  }
  if (Aggregation[c.aggregation] === undefined) fail(`condition.aggregation ${c.aggregation} is unknown`);
  if (c.aggregation === Aggregation.QUANTILE) {
    if (!(c.quantile >= 0 && c.quantile <= 1)) fail(`condition.quantile must be in [0, 1], got ${c.quantile}`);
  } else if (c.quantile !== 0) fail("condition.quantile is only for AGGREGATION_QUANTILE");
  for (const label of c.groupBy) checkLabelName(label, "condition.group_by");
  if (c.window && checkDuration(c.window, "condition.window") < 1_000) fail("condition.window must be at least 1s (or unset: 5m)");
  if (c.comparison === Comparison.UNSPECIFIED || Comparison[c.comparison] === undefined) {
    fail("condition.comparison must be one of COMPARISON_GREATER, _GREATER_OR_EQUAL, _LESS, _LESS_OR_EQUAL, _EQUAL, _NOT_EQUAL");
  }
  if (!Number.isFinite(c.threshold)) fail("condition.threshold must be a finite number");
}

/**
 * Checks a rule as PutRule and the configuration file take it, and returns it as stored: source
 * and overrides cleared (they are set when rules are listed). Throws RuleError.
 */
export function validateRule(rule: Rule | undefined): Rule {
  if (!rule) fail("rule is required");
  if (!ruleLimits.namePattern.test(rule.name)) fail(`name "${rule.name.slice(0, 100)}" must be 1 to 100 characters of [A-Za-z0-9_:.-]`);
  checkCondition(rule.condition);
  checkDuration(rule.pendingFor, "pending_for");
  checkDuration(rule.keepFiringFor, "keep_firing_for");
  const labels = Object.entries(rule.labels);
  if (labels.length > ruleLimits.maxLabels) fail(`labels: at most ${ruleLimits.maxLabels}`);
  for (const [k, v] of labels) {
    checkLabelName(k, "labels");
    if (k === alertnameLabel) fail(`labels: "${alertnameLabel}" is the rule's name and cannot be set`);
    if (v === "" || v.length > ruleLimits.maxLabelValueLength) fail(`labels.${k} must be 1 to ${ruleLimits.maxLabelValueLength} characters`);
  }
  const annotations = Object.entries(rule.annotations);
  if (annotations.length > ruleLimits.maxAnnotations) fail(`annotations: at most ${ruleLimits.maxAnnotations}`);
  for (const [k, v] of annotations) {
    checkLabelName(k, "annotations");
    if (v.length > ruleLimits.maxAnnotationLength) fail(`annotations.${k} is longer than ${ruleLimits.maxAnnotationLength} characters`);
    const error = templateError(v);
    if (error) fail(`annotations.${k}: ${error}`);
  }
  return create(RuleSchema, { ...rule, source: RuleSource.UNSPECIFIED, overrides: false });
}

/** A rule from protobuf JSON (the configuration file, the alert_rules table), validated. Throws RuleError. */
export function ruleFromJson(json: JsonValue, where: string): Rule {
  let rule: Rule;
  try {
    rule = fromJson(RuleSchema, json);
  } catch (err) {
    throw new RuleError(`${where}: ${(err as Error).message}`);
  }
  try {
    return validateRule(rule);
  } catch (err) {
    if (err instanceof RuleError) throw new RuleError(`${where}: ${err.message}`);
    throw err;
  }
}

/** The window a metric-form condition reads. */
export function windowMs(c: Condition): number {
  return c.window ? durationMs(c.window) : ruleLimits.defaultWindowMs;
}

/** The alert's id: a digest of the rule's name and every label, independent of their order. */
export function fingerprint(rule: string, labels: Readonly<Record<string, string>>): string {
  const hash = createHash("sha256").update(rule).update("\0");
  for (const k of Object.keys(labels).sort()) hash.update(k).update("\0").update(labels[k]!).update("\0");
  return hash.digest("hex").slice(0, 32);
}

const minutes = (n: number) => durationFromMs(n * 60_000);
const metricCondition = (c: MessageInitShape<typeof ConditionSchema>) => create(ConditionSchema, c);

/**
 * Specta's rules for its own agents and daemons (RULE_SOURCE_DEFAULT): on by default, changed or
 * turned off by a PutRule override of the same name. The series they read:
 * - specta_agent_last_seen_timestamp_seconds{host}: written by the fleet (src/fleet/last-seen-series.ts)
 *   from agents.last_seen, so an agent that stops calling keeps a series that ages;
 * - node_filesystem_{used,size}_bytes, node_memory_{available,total}_bytes,
 *   node_cpu_all_seconds_total{mode}, node_systemd_unit_state{name,state}: the agent's collectors;
 * - specta_database_up: the daemon's /metrics (1 while its database answers), in the store when
 *   the daemons' /metrics are scraped into it (e.g. by Prometheus' remote-write).
 */
export const defaultRules: readonly Rule[] = [
  create(RuleSchema, {
    name: "AgentOffline",
    condition: metricCondition({ expr: "time() - max by (host) (specta_agent_last_seen_timestamp_seconds) > 120" }),
    labels: { severity: "critical" },
    annotations: { summary: "Agent {{ $labels.host }} is offline", description: "{{ $labels.host }} has not called the daemon for {{ $value }} s." },
  }),
  create(RuleSchema, {
    name: "FilesystemAlmostFull",
    condition: metricCondition({ expr: "100 * node_filesystem_used_bytes / node_filesystem_size_bytes > 90" }),
    pendingFor: minutes(5),
    labels: { severity: "warning" },
    annotations: { summary: "{{ $labels.mountpoint }} on {{ $labels.host }} is {{ $value }} % full" },
  }),
  create(RuleSchema, {
    name: "MemoryLow",
    condition: metricCondition({ expr: "100 * node_memory_available_bytes / node_memory_total_bytes < 10" }),
    pendingFor: minutes(5),
    labels: { severity: "warning" },
    annotations: { summary: "{{ $labels.host }} has {{ $value }} % of its memory available" },
  }),
  create(RuleSchema, {
    name: "CpuBusy",
    condition: metricCondition({
      expr: '100 * (1 - sum by (host) (rate(node_cpu_all_seconds_total{mode=~"idle|iowait"}[2m])) / sum by (host) (rate(node_cpu_all_seconds_total[2m]))) > 90',
    }),
    pendingFor: minutes(10),
    labels: { severity: "warning" },
    annotations: { summary: "{{ $labels.host }}'s CPU has been {{ $value }} % busy for 10 minutes" },
  }),
  create(RuleSchema, {
    name: "SystemdUnitFailed",
    condition: metricCondition({
      metric: "node_systemd_unit_state",
      matchers: [{ label: "state", operator: MatchOperator.EQUAL, value: "failed" }],
      aggregation: Aggregation.LAST,
      groupBy: ["host", "name"],
      window: minutes(2),
      comparison: Comparison.GREATER,
      threshold: 0,
    }),
    labels: { severity: "warning" },
    annotations: { summary: "{{ $labels.name }} failed on {{ $labels.host }}" },
  }),
  create(RuleSchema, {
    name: "DatabaseUnreachable",
    condition: metricCondition({
      metric: "specta_database_up",
      aggregation: Aggregation.LAST,
      groupBy: ["instance"],
      window: minutes(2),
      comparison: Comparison.LESS,
      threshold: 1,
    }),
    pendingFor: minutes(1),
    labels: { severity: "critical" },
    annotations: { summary: "The Specta daemon {{ $labels.instance }} cannot reach its database" },
  }),
].map((rule) => create(RuleSchema, { ...rule, source: RuleSource.DEFAULT }));
