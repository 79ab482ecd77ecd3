import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { Comparison, type Condition, type Rule } from "../../../gen/alerts/alerts_pb.js";
import { Aggregation, QueryRequestSchema } from "../../../gen/metrics/metrics_pb.js";
import { query } from "../../metrics/query.js";
import type { Expr } from "../../promql/ast.js";
import { instantQuery } from "../../promql/engine.js";
import { parsePromql } from "../../promql/parse.js";
import { nameLabel } from "../../promql/values.js";
import type { Logger } from "../../shared/log.js";
import type { Db } from "../../storage/database.js";
import type { TsdbReads } from "../../tsdb/index.js";
import type { Handler } from "../../worker/engine.js";
import type { AlertRow } from "../alerts.table.js";
import { cycleReads, type CycleReads } from "./cycle-reads.js";
import { allRules, commitCycle, type CycleWrites, type StatusRow } from "./repository.js";
import { alertnameLabel, defaultRules, fingerprint, windowMs } from "./rules.js";
import { render } from "./template.js";

/** The advisory lock of the evaluation: one daemon of those sharing a database evaluates (other keys: src/worker/leader.ts). */
export const alertEvaluatorLock = 0x5e_c7_a0_10;

export interface EvaluatorOptions {
  db: Db;
  tsdb: TsdbReads;
  log: Logger;
  /** The configuration file's rules (validated). */
  configured: readonly Rule[];
  /** How often a cycle starts; default 15 s. */
  intervalMs?: number;
  /** One rule's evaluation may take this long (from the cycle's start: the rules are evaluated together) before it counts as failed; default 10 s. */
  ruleTimeoutMs?: number;
  /** Observes each cycle's duration (the daemon's /metrics). */
  observe?: (seconds: number) => void;
}

export const evaluatorDefaults = { intervalMs: 15_000, ruleTimeoutMs: 10_000 };

/** One active group of a rule: its labels and the condition's value. */
export interface Group {
  labels: Record<string, string>;
  value: number;
}

type Outcome = { groups: Group[]; ms: number } | { error: string; ms: number };

export interface CycleResult {
  rules: number;
  errors: number;
  transitions: CycleWrites["transitions"];
  ms: number;
}

/** The leader-only job: one evaluation cycle of every rule per run, then a sleep of the interval less the cycle's duration. */
export function alertEvaluator(options: EvaluatorOptions): Handler {
  const intervalMs = options.intervalMs ?? evaluatorDefaults.intervalMs;
  const log = options.log.child({ handler: "alert-evaluation" });
  const handler: Handler = {
    name: "alert-evaluation",
    coolerMs: intervalMs,
    leaderLock: alertEvaluatorLock,
    async ensure(signal) {
      const result = await evaluateCycle(options, Date.now(), signal);
      handler.coolerMs = Math.max(0, intervalMs - result.ms);
      if (result.transitions.length > 0) {
        log.info({ transitions: result.transitions.length, errors: result.errors, ms: result.ms }, "alerts changed state");
      }
    },
  };
  return handler;
}

/** Evaluates every enabled rule at `nowMs` and commits the alerts' changes in one transaction. */
export async function evaluateCycle(options: EvaluatorOptions, nowMs: number, signal?: AbortSignal): Promise<CycleResult> {
  const started = performance.now();
  const rules = await allRules(options.db, defaultRules, options.configured);
  const enabled = rules.filter((r) => !r.disabled);
  const timeoutMs = options.ruleTimeoutMs ?? evaluatorDefaults.ruleTimeoutMs;
  const outcomes = new Map<string, Outcome>();
  const reads = cycleReads(options.tsdb, signal);
  const parse = exprParser();
  // Every rule at once: their reads are batched by cycleReads, which bounds the database calls.
  // A rule's time is from the cycle's start to its result, waiting for the reads it shares.
  await Promise.all(
    enabled.map(async (rule) => {
      try {
        const groups = await withTimeout(evaluateRule(rule.condition!, parse, reads, nowMs, timeoutMs), timeoutMs);
        outcomes.set(rule.name, { groups, ms: performance.now() - started });
      } catch (err) {
        const error = err instanceof ConnectError ? err.rawMessage : (err as Error).message || String(err);
        outcomes.set(rule.name, { error, ms: performance.now() - started });
      }
    }),
  );
  if (signal?.aborted) return { rules: enabled.length, errors: 0, transitions: [], ms: performance.now() - started };

  const now = new Date(nowMs);
  const writes = await commitCycle(
    options.db,
    now,
    rules.map((r) => r.name),
    (current) => decide(current, enabled, outcomes, now),
  );
  const ms = performance.now() - started;
  options.observe?.(ms / 1000);
  const errors = [...outcomes.values()].filter((o) => "error" in o).length;
  return { rules: enabled.length, errors, transitions: writes.transitions, ms };
}

/** PromQL conditions parsed, by text: kept from one cycle to the next while a rule has them. */
let parsed = new Map<string, Expr>();

/**
 * The cycle's parser of PromQL conditions: each text parsed once, and not again next cycle. A text
 * that does not parse (a rule stored before the parser changed) throws in its own rule's evaluation.
 */
function exprParser(): (text: string) => Expr {
  const previous = parsed;
  parsed = new Map();
  return (text) => {
    let expr = parsed.get(text);
    if (!expr) parsed.set(text, (expr = previous.get(text) ?? parsePromql(text)));
    return expr;
  };
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the evaluation took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/** The groups of a rule whose condition holds at `nowMs`; their labels are shared with other rules' groups, read-only. */
async function evaluateRule(c: Condition, parse: (text: string) => Expr, reads: CycleReads, nowMs: number, timeoutMs: number): Promise<Group[]> {
  if (c.expr !== "") {
    const { value } = await instantQuery(reads.promql, parse(c.expr), nowMs, { limits: { timeoutMs } });
    if (value.type !== "vector") throw new Error(`the expression gave a ${value.type}, not an instant vector`);
    return value.samples.map((s) => {
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.labels)) if (k !== nameLabel && v !== "") labels[k] = v;
      return { labels, value: s.value };
    });
  }
  // Rules of the query model that differ only in their comparison or threshold share one query and its groups' values.
  const window = windowMs(c);
  const key = JSON.stringify([c.metric, c.matchers.map((m) => [m.label, m.operator, m.value]), c.aggregation, c.groupBy, c.quantile, window]);
  const values = await reads.once(`q${key}`, () => windowValues(c, window, reads, nowMs));
  return values.filter((g) => compare(c.comparison, g.value, c.threshold));
}

/** Each group's value over the window: read in about ten steps through metrics.API/Query's code, then its steps combined. */
async function windowValues(c: Condition, window: number, reads: CycleReads, nowMs: number): Promise<Group[]> {
  const res = await query(
    create(QueryRequestSchema, {
      metric: c.metric,
      matchers: c.matchers,
      aggregation: c.aggregation,
      groupBy: c.groupBy,
      quantile: c.quantile,
      start: timestampFromMs(nowMs - window),
      end: timestampFromMs(nowMs),
      step: durationFromMs(Math.max(1_000, Math.round(window / 10))),
    }),
    { tsdb: reads.store, now: () => nowMs },
  );
  return res.series.map((s) => ({
    labels: s.labels,
    value: combineSteps(
      c.aggregation,
      s.points.map((p) => p.value),
    ),
  }));
}

/** The window's value from its steps' values: min, max, sum (sum, count, increase), the latest (last, quantile) or the mean (avg, rate). */
function combineSteps(aggregation: Aggregation, values: number[]): number {
  switch (aggregation) {
    case Aggregation.MIN:
      return Math.min(...values);
    case Aggregation.MAX:
      return Math.max(...values);
    case Aggregation.SUM:
    case Aggregation.COUNT:
    case Aggregation.INCREASE:
      return values.reduce((a, b) => a + b, 0);
    case Aggregation.LAST:
    case Aggregation.QUANTILE:
      return values.at(-1)!;
    default:
      return values.reduce((a, b) => a + b, 0) / values.length;
  }
}

function compare(comparison: Comparison, value: number, threshold: number): boolean {
  switch (comparison) {
    case Comparison.GREATER:
      return value > threshold;
    case Comparison.GREATER_OR_EQUAL:
      return value >= threshold;
    case Comparison.LESS:
      return value < threshold;
    case Comparison.LESS_OR_EQUAL:
      return value <= threshold;
    case Comparison.EQUAL:
      return value === threshold;
    case Comparison.NOT_EQUAL:
      return value !== threshold;
    default:
      return false;
  }
}

const ms = (d: Duration | undefined) => (d ? durationMs(d) : 0);
const isOpen = (row: AlertRow) => row.state === "pending" || row.state === "firing";

/**
 * An open alert whose state does not change is rewritten at most this often, rather than every
 * cycle (with a thousand alerts, their rewrite was a large part of a cycle's work in both
 * processes): its value, the annotations rendered from it (and from a rule's changed templates)
 * and last_evaluation are up to this old. What restarts and a change of evaluating daemon go on
 * from (state, active_since, fired_at, resolved_at) is written whenever it changes. Alerts of
 * rules with keep_firing_for are rewritten every cycle, as it counts from last_active.
 */
export const alertRefreshMs = 60_000;

/**
 * The state machine, from the alerts' rows as committed: an active group's alert becomes pending
 * (or firing at once without pending_for), fires once pending_for has passed since active_since,
 * and when no longer active resolves (firing, after keep_firing_for since last_active) or goes
 * inactive (pending). A rule whose evaluation failed keeps its alerts as they are; alerts of
 * rules disabled or gone resolve. Rows whose state does not change are written as alertRefreshMs says.
 */
function decide(current: AlertRow[], enabled: Rule[], outcomes: Map<string, Outcome>, now: Date): CycleWrites {
  const nowMs = now.getTime();
  const byFingerprint = new Map(current.map((r) => [r.fingerprint, r]));
  const seen = new Set<string>();
  const writes: CycleWrites = { upserts: [], transitions: [], statuses: [] };
  const rules = new Map(enabled.map((r) => [r.name, r]));

  for (const rule of enabled) {
    const outcome = outcomes.get(rule.name)!;
    writes.statuses.push(statusOf(rule.name, outcome, now));
    if ("error" in outcome) continue;
    const pendingMs = ms(rule.pendingFor);
    for (const group of outcome.groups) {
      const labels = { ...group.labels, ...rule.labels, [alertnameLabel]: rule.name };
      const fp = fingerprint(rule.name, labels);
      if (seen.has(fp)) continue;
      seen.add(fp);
      const before = byFingerprint.get(fp);
      const open = before && isOpen(before) ? before : undefined;
      const fires = open?.state === "pending" && nowMs - open.active_since.getTime() >= pendingMs;
      if (open && !fires && !due(open, rule, nowMs)) continue;
      const annotations = Object.fromEntries(Object.entries(rule.annotations).map(([k, t]) => [k, render(t, labels, group.value)]));
      const update = { labels, annotations, value: group.value, last_evaluation: now, last_active: now };
      if (open) {
        const row: AlertRow = { ...open, ...update, ...(fires ? { state: "firing", fired_at: now } : {}) };
        writes.upserts.push(row);
        if (fires) writes.transitions.push({ row, from: "pending" });
        continue;
      }
      const firesAtOnce = pendingMs === 0;
      const row: AlertRow = {
        fingerprint: fp,
        rule: rule.name,
        ...update,
        state: firesAtOnce ? "firing" : "pending",
        active_since: now,
        fired_at: firesAtOnce ? now : null,
        resolved_at: null,
      };
      writes.upserts.push(row);
      writes.transitions.push({ row, from: before?.state ?? "inactive" });
    }
  }

  for (const before of current) {
    if (!isOpen(before) || seen.has(before.fingerprint)) continue;
    const rule = rules.get(before.rule);
    const outcome = rule && outcomes.get(rule.name);
    if (outcome && "error" in outcome) continue;
    if (rule && before.state === "firing" && nowMs - before.last_active.getTime() < ms(rule.keepFiringFor)) {
      writes.upserts.push({ ...before, last_evaluation: now });
      continue;
    }
    const row: AlertRow = { ...before, state: before.state === "firing" ? "resolved" : "inactive", resolved_at: now, last_evaluation: now };
    writes.upserts.push(row);
    writes.transitions.push({ row, from: before.state });
  }
  return writes;
}

/** Whether an open alert that keeps its state is rewritten this cycle (alertRefreshMs). */
function due(before: AlertRow, rule: Rule, nowMs: number): boolean {
  return ms(rule.keepFiringFor) > 0 || nowMs - before.last_evaluation.getTime() >= alertRefreshMs;
}

function statusOf(name: string, outcome: Outcome, now: Date): StatusRow {
  return {
    name,
    health: "error" in outcome ? "error" : "ok",
    last_error: "error" in outcome ? outcome.error.slice(0, 1_000) : "",
    last_evaluation: now,
    duration_ms: outcome.ms,
  };
}
