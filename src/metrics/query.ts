import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Aggregation,
  MatchOperator,
  PointSchema,
  QueryResponseSchema,
  SeriesPointsSchema,
  type Matcher,
  type QueryRequest,
  type QueryResponse,
  type SeriesPoints,
} from "../../gen/metrics/metrics_pb.js";
import { rangeQuery } from "../promql/engine.js";
import { EvaluationError, QueryCanceled, QueryLimitError, QueryTimeout } from "../promql/errors.js";
import { bucketQuantile } from "../promql/math.js";
import { parsePromql, ParseError } from "../promql/parse.js";
import { tsdbReader } from "../promql/tsdb-reader.js";
import type { Labels } from "../shared/labels.js";
import { seriesKey } from "../shared/series-key.js";
import {
  alignedSteps,
  maxSelectedSeries,
  maxTimeMs,
  SeriesKind,
  type LabelMatcher,
  type MatchOperator as StoreOperator,
  type SelectedSeries,
  type StepAggregate,
  type TsdbReads,
} from "../tsdb/index.js";

/** Limits of one Query call, as documented on metrics.QueryRequest. */
export const queryLimits = {
  /** Series a query may select (for quantiles: _bucket series). */
  maxSeries: maxSelectedSeries,
  maxPointsPerSeries: 11_000,
  /** Selected series × steps: bounds the rows one query reads into memory. */
  maxPointsPerQuery: 2_000_000,
  defaultRangeMs: 3_600_000,
  /** The default step is the range divided by this, at least minDefaultStepMs. */
  defaultPoints: 120,
  minDefaultStepMs: 1_000,
};

export interface QueryDeps {
  tsdb: TsdbReads;
  /** The clock; tests may fix it. */
  now?: () => number;
}

interface Range {
  startMs: number;
  endMs: number;
  stepMs: number;
}

/** Answers metrics.API/Query: selects series, reads their points (one statement) and combines them per group. */
export async function query(req: QueryRequest, deps: QueryDeps, signal?: AbortSignal): Promise<QueryResponse> {
  if (req.expr !== "") return queryExpression(req, deps, signal);
  validateRequest(req);
  const isQuantile = req.aggregation === Aggregation.QUANTILE;
  const nowMs = deps.now?.() ?? Date.now();
  const range = resolveRange(req, nowMs);

  const metric = isQuantile ? `${req.metric}_bucket` : req.metric;
  const selected = await deps.tsdb.series.select(metric, req.matchers.map(storeMatcher));
  const response = create(QueryResponseSchema, { step: durationFromMs(range.stepMs) });
  if (selected.length === 0) return response;
  const kind = selected[0]!.kind;
  // Unset: a gauge's mean, a counter's or histogram series' latest running total (a mean of totals means nothing).
  const aggregation = req.aggregation !== Aggregation.UNSPECIFIED ? req.aggregation : kind === SeriesKind.gauge ? Aggregation.AVG : Aggregation.LAST;
  checkKind(metric, kind, aggregation);
  const steps = alignedSteps(range.startMs, range.endMs, range.stepMs).count;
  if (selected.length * steps > queryLimits.maxPointsPerQuery) {
    throw new ConnectError(
      `the query would read up to ${selected.length * steps} points (${selected.length} series × ${steps} steps), at most ${queryLimits.maxPointsPerQuery}: use a larger step, a shorter range or narrower matchers`,
      Code.ResourceExhausted,
    );
  }

  const increase = aggregation === Aggregation.RATE || aggregation === Aggregation.INCREASE || isQuantile;
  const last = aggregation === Aggregation.LAST;
  const points = await deps.tsdb.readPoints({ seriesIds: selected.map((s) => s.id), ...range, increase, last }, nowMs);
  response.series = isQuantile
    ? quantileGroups(selected, points.series, req.groupBy, req.quantile)
    : valueGroups(selected, points.series, req.groupBy, aggregation, range.stepMs, nowMs);
  return response;
}

/**
 * A PromQL expression, evaluated over the store's raw samples as Prometheus' query_range does, at
 * the multiples of the step from start to end (so that points do not move as a dashboard's range
 * slides), with PromQL's limits and errors mapped to codes.
 */
async function queryExpression(req: QueryRequest, deps: QueryDeps, signal: AbortSignal | undefined): Promise<QueryResponse> {
  if (req.metric !== "" || req.matchers.length > 0 || req.aggregation !== Aggregation.UNSPECIFIED || req.groupBy.length > 0 || req.quantile !== 0) {
    invalid("expr replaces metric, matchers, aggregation, group_by and quantile: send either expr or those");
  }
  const range = resolveRange(req, deps.now?.() ?? Date.now());
  const { first } = alignedSteps(range.startMs, range.endMs, range.stepMs);
  try {
    const result = await rangeQuery(tsdbReader(deps.tsdb), parsePromql(req.expr), first, range.endMs, range.stepMs, {
      ...(signal ? { signal } : {}),
    });
    const series = result.series.map((s) =>
      create(SeriesPointsSchema, {
        labels: s.labels,
        points: s.times.map((t, i) => create(PointSchema, { time: timestampFromMs(t), value: s.values[i]! })),
      }),
    );
    return create(QueryResponseSchema, { series, step: durationFromMs(range.stepMs) });
  } catch (err) {
    if (err instanceof ParseError) invalid(err.message);
    if (err instanceof QueryLimitError) throw new ConnectError(err.message, Code.ResourceExhausted);
    if (err instanceof EvaluationError) throw new ConnectError(err.message, Code.FailedPrecondition);
    if (err instanceof QueryTimeout) throw new ConnectError(err.message, Code.DeadlineExceeded);
    if (err instanceof QueryCanceled) throw new ConnectError(err.message, Code.Canceled);
    throw err;
  }
}

/** Checks what needs no database (an unset aggregation is chosen by the metric's kind, once known). */
function validateRequest(req: QueryRequest): void {
  if (req.metric === "") invalid("metric is required");
  if (Aggregation[req.aggregation] === undefined) invalid(`aggregation ${req.aggregation} is unknown`);
  if (req.aggregation === Aggregation.QUANTILE) {
    if (!(req.quantile >= 0 && req.quantile <= 1)) invalid(`quantile must be in [0, 1], got ${req.quantile}`);
    if (req.groupBy.includes("le")) invalid("a quantile combines the le buckets: group_by must not name le");
  }
  for (const label of req.groupBy) if (label === "") invalid("group_by holds an empty label name");
  validateMatchers(req.matchers);
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

/** end defaults to now, start to an hour before end, step to the range / 120 in whole seconds (≥ 1 s). */
export function resolveRange(req: Pick<QueryRequest, "start" | "end" | "step">, nowMs: number): Range {
  const endMs = req.end ? timestampMs(req.end) : nowMs;
  const startMs = req.start ? timestampMs(req.start) : endMs - queryLimits.defaultRangeMs;
  for (const [name, ms] of [
    ["start", startMs],
    ["end", endMs],
  ] as const) {
    if (!(ms >= 0 && ms <= maxTimeMs)) invalid(`${name} must lie between 1970 and 9999, got ${ms} ms since 1970`);
  }
  if (startMs > endMs) invalid(`start (${new Date(startMs).toISOString()}) is after end (${new Date(endMs).toISOString()})`);
  const asked = req.step ? durationMs(req.step) : 0;
  if (asked < 0 || (asked > 0 && asked < 1)) invalid("step must be at least 1 ms");
  // A zero step counts as not set: JSON clients often send "0s" for "the default".
  const stepMs = asked > 0 ? Math.round(asked) : defaultStep(endMs - startMs);
  const points = alignedSteps(startMs, endMs, stepMs).count;
  if (points > queryLimits.maxPointsPerSeries) {
    invalid(`the range and step give ${points} points per series, at most ${queryLimits.maxPointsPerSeries}: use a larger step or a shorter range`);
  }
  return { startMs, endMs, stepMs };
}

/** The range / 120 to the nearest whole second (a range a few ms over 30 min still gets 15 s), at least 1 s. */
function defaultStep(rangeMs: number): number {
  const wanted = rangeMs / queryLimits.defaultPoints;
  return Math.max(queryLimits.minDefaultStepMs, Math.round(wanted / 1000) * 1000);
}

/** Refuses matchers without a label or operator (InvalidArgument). */
export function validateMatchers(matchers: Matcher[]): void {
  for (const m of matchers) {
    if (m.label === "") invalid("a matcher has an empty label name");
    if (MatchOperator[m.operator] === undefined || m.operator === MatchOperator.UNSPECIFIED) {
      invalid(`matcher on ${m.label}: operator must be MATCH_OPERATOR_EQUAL, _NOT_EQUAL, _REGEX or _NOT_REGEX`);
    }
  }
}

const storeOperators: Record<number, StoreOperator> = {
  [MatchOperator.EQUAL]: "=",
  [MatchOperator.NOT_EQUAL]: "!=",
  [MatchOperator.REGEX]: "=~",
  [MatchOperator.NOT_REGEX]: "!~",
};

/** A matcher of the contract as the store (and PromQL) spell it. */
export function storeMatcher(m: Matcher): LabelMatcher {
  return { label: m.label, op: storeOperators[m.operator]!, value: m.value };
}

/** rate and increase need running totals: counters, or the _bucket/_sum/_count series of histograms. */
function checkKind(metric: string, kind: number, aggregation: Aggregation): void {
  if ((aggregation === Aggregation.RATE || aggregation === Aggregation.INCREASE) && kind === SeriesKind.gauge) {
    invalid(`metric ${metric} is a gauge: rate and increase need a counter`);
  }
  if (aggregation === Aggregation.QUANTILE && kind !== SeriesKind.histogram) {
    invalid(`metric ${metric} is not a histogram's bucket series: quantile needs a histogram`);
  }
}

/** The labels a series is grouped under: the group_by labels it has, or all of its labels (minus `drop`). */
function groupLabels(labels: Labels, groupBy: string[], drop?: string): Labels {
  const out: Labels = {};
  if (groupBy.length === 0) {
    for (const [k, v] of Object.entries(labels)) if (k !== drop) out[k] = v;
  } else {
    for (const k of groupBy) if (labels[k] !== undefined) out[k] = labels[k];
  }
  return out;
}

/** Groups series by their group labels, in a stable order (by the canonical label text). */
function groupSeries(selected: SelectedSeries[], groupBy: string[], drop?: string): { labels: Labels; members: SelectedSeries[] }[] {
  const groups = new Map<string, { labels: Labels; members: SelectedSeries[] }>();
  for (const s of selected) {
    const labels = groupLabels(s.labels, groupBy, drop);
    const key = seriesKey("", labels);
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { labels, members: [] }));
    group.members.push(s);
  }
  return [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

/** A step of a series or a group, with its rate: per second, summed over the group. */
type Combined = Omit<StepAggregate, "time" | "spanMs"> & { rate: number };

/**
 * A counter's increase per second over the step; at the newest step, still filling, per second
 * of the time its values span so far (from the value before its first delta to its last), else
 * a step half over would read half the rate.
 */
function rateOf(p: StepAggregate, stepMs: number, nowMs: number): number {
  const filling = p.time + stepMs > nowMs && p.spanMs > 0;
  return p.increase / ((filling ? Math.min(p.spanMs, stepMs) : stepMs) / 1000);
}

/** Merges the steps of a group's series: one accumulator per step time. */
function combineSteps(members: SelectedSeries[], points: Map<number, StepAggregate[]>, stepMs: number, nowMs: number): Map<number, Combined> {
  const byTime = new Map<number, Combined>();
  for (const s of members) {
    for (const p of points.get(s.id) ?? []) {
      const acc = byTime.get(p.time);
      const rate = rateOf(p, stepMs, nowMs);
      if (!acc) {
        byTime.set(p.time, { min: p.min, max: p.max, sum: p.sum, count: p.count, last: p.last, increase: p.increase, deltas: p.deltas, rate });
        continue;
      }
      acc.min = Math.min(acc.min, p.min);
      acc.max = Math.max(acc.max, p.max);
      acc.sum += p.sum;
      acc.count += p.count;
      acc.last += p.last;
      acc.increase += p.increase;
      acc.deltas += p.deltas;
      acc.rate += rate;
    }
  }
  return byTime;
}

/** The value of one step (its rate given apart), or undefined when the step has nothing to say (left out). */
function stepValue(c: Omit<Combined, "rate">, rate: number, aggregation: Aggregation): number | undefined {
  switch (aggregation) {
    case Aggregation.MIN:
      return c.min;
    case Aggregation.MAX:
      return c.max;
    case Aggregation.SUM:
      return c.sum;
    case Aggregation.COUNT:
      return c.count;
    case Aggregation.LAST:
      return c.last;
    case Aggregation.INCREASE:
      return c.deltas > 0 ? c.increase : undefined;
    case Aggregation.RATE:
      return c.deltas > 0 ? rate : undefined;
    default:
      return c.count > 0 ? c.sum / c.count : undefined;
  }
}

function valueGroups(
  selected: SelectedSeries[],
  points: Map<number, StepAggregate[]>,
  groupBy: string[],
  aggregation: Aggregation,
  stepMs: number,
  nowMs: number,
): SeriesPoints[] {
  const out: SeriesPoints[] = [];
  for (const group of groupSeries(selected, groupBy)) {
    const series = create(SeriesPointsSchema, { labels: group.labels });
    const add = (time: number, value: number | undefined) => {
      if (value !== undefined) series.points.push(create(PointSchema, { time: timestampFromMs(time), value }));
    };
    // A group of one series (no group_by) has its steps in time order already; they are read as they are, not copied
    // (the alert evaluation's queries spent much of their time copying them).
    if (group.members.length === 1) {
      for (const p of points.get(group.members[0]!.id) ?? []) add(p.time, stepValue(p, rateOf(p, stepMs, nowMs), aggregation));
    } else {
      const steps = [...combineSteps(group.members, points, stepMs, nowMs)].sort(([a], [b]) => a - b);
      for (const [time, c] of steps) add(time, stepValue(c, c.rate, aggregation));
    }
    if (series.points.length > 0) out.push(series);
  }
  return out;
}

/** Upper bound of a bucket from its le label ("+Inf" included); undefined when it does not parse. */
function parseLe(le: string | undefined): number | undefined {
  if (le === undefined) return undefined;
  if (le === "+Inf" || le === "Inf" || le === "inf" || le === "+inf") return Infinity;
  const n = Number(le);
  return le.trim() === "" || Number.isNaN(n) ? undefined : n;
}

/**
 * Quantiles per group and step from the increases of the group's _bucket series, summed by le
 * (series without a valid le are ignored). Each histogram (series labels without le) is its
 * own group unless group_by says otherwise.
 */
function quantileGroups(selected: SelectedSeries[], points: Map<number, StepAggregate[]>, groupBy: string[], q: number): SeriesPoints[] {
  const out: SeriesPoints[] = [];
  const buckets = selected.filter((s) => parseLe(s.labels.le) !== undefined);
  for (const group of groupSeries(buckets, groupBy, "le")) {
    const byTime = new Map<number, { counts: Map<number, number>; deltas: number }>();
    for (const s of group.members) {
      const le = parseLe(s.labels.le)!;
      for (const p of points.get(s.id) ?? []) {
        let step = byTime.get(p.time);
        if (!step) byTime.set(p.time, (step = { counts: new Map(), deltas: 0 }));
        step.counts.set(le, (step.counts.get(le) ?? 0) + p.increase);
        step.deltas += p.deltas;
      }
    }
    const series = create(SeriesPointsSchema, { labels: group.labels });
    for (const time of [...byTime.keys()].sort((a, b) => a - b)) {
      const step = byTime.get(time)!;
      if (step.deltas === 0) continue;
      const value = bucketQuantile(
        q,
        [...step.counts].map(([upperBound, count]) => ({ upperBound, count })),
      );
      if (!Number.isNaN(value)) series.points.push(create(PointSchema, { time: timestampFromMs(time), value }));
    }
    if (series.points.length > 0) out.push(series);
  }
  return out;
}
