/**
 * Specta's PromQL evaluator. It is written here because no maintained JavaScript PromQL evaluator
 * exists (Prometheus' own is Go; the JavaScript packages of the Prometheus project only parse).
 * It follows Prometheus 3's engine (promql/engine.go) and is checked against cases of its test
 * data (promql/promqltest/testdata).
 *
 * A query runs in two phases, as Prometheus' does: every selector's series and raw samples are
 * read first, over the whole time span the query needs (through `SeriesReader`, which the store
 * implements: matchers pushed down, limits enforced while reading), then the expression is
 * evaluated at each step in memory, without I/O, which keeps this module pure and unit-testable.
 *
 * Semantics: an instant selector takes each series' latest sample in (t − offset − lookback,
 * t − offset] (lookback 5 minutes), none when that sample is a staleness marker; a range selector
 * the samples in (t − offset − range, t − offset]; a range query evaluates at start, start + step,
 * …, up to end, as Prometheus does (aligning start to the step is the client's choice; Grafana
 * does).
 */
import { aggregate } from "./aggregate.js";
import { selectorsOf, type Expr, type Matcher, type VectorSelector } from "./ast.js";
import { scalarScalar, setOperation, vectorScalar, vectorVector } from "./binary.js";
import { EvaluationError, QueryCanceled, QueryLimitError, QueryTimeout } from "./errors.js";
import { functions } from "./functions.js";
import { dropName, indexAfter, isStaleMarker, labelsKey, type Sample, type SeriesSamples, type Value } from "./values.js";

/** Bounds of one query's reads; the reader charges what it reads and throws EvaluationError beyond them. */
export interface QueryLimits {
  /** Series all selectors of a query may select together. */
  maxSeries: number;
  /** Raw samples a query may read. */
  maxSamples: number;
  /** Steps of a range query (Prometheus refuses more than 11,000 points per series). */
  maxSteps: number;
  timeoutMs: number;
}

export const defaultLimits: QueryLimits = { maxSeries: 10_000, maxSamples: 5_000_000, maxSteps: 11_000, timeoutMs: 30_000 };

/** Prometheus' default lookback delta. */
export const defaultLookbackMs = 5 * 60_000;

/** What a query may still read; shared by the reads of one query. */
export class ReadBudget {
  private series = 0;
  private samples = 0;

  constructor(
    readonly limits: QueryLimits,
    readonly signal: AbortSignal,
    private readonly deadline: number,
  ) {}

  chargeSeries(n: number): void {
    this.series += n;
    if (this.series > this.limits.maxSeries) {
      throw new QueryLimitError(`the query selects more than ${this.limits.maxSeries} series: narrow its selectors with label matchers`);
    }
  }

  chargeSamples(n: number): void {
    this.samples += n;
    if (this.samples > this.limits.maxSamples) {
      throw new QueryLimitError(`query processing would load too many samples into memory in query execution (more than ${this.limits.maxSamples})`);
    }
  }

  /** Throws when the query's client went away or its time is up. */
  check(): void {
    if (this.signal.aborted) throw new QueryCanceled("query was canceled");
    if (Date.now() > this.deadline) throw new QueryTimeout(`query timed out after ${this.limits.timeoutMs} ms`);
  }

  get used(): { series: number; samples: number } {
    return { series: this.series, samples: this.samples };
  }
}

/** Reads series for the evaluator: the store behind it is Specta's (tsdb-reader.ts), or memory in tests. */
export interface SeriesReader {
  /** Every series matching all `matchers` (the metric name as `__name__`), with its raw samples in [fromMs, toMs), in time order. */
  read(matchers: Matcher[], fromMs: number, toMs: number, budget: ReadBudget): Promise<SeriesSamples[]>;
}

export interface QueryOptions {
  lookbackMs?: number;
  limits?: Partial<QueryLimits>;
  /** Aborted when the client goes away. */
  signal?: AbortSignal;
}

/** A range query's result: one series per label set, points in time order (a scalar expression gives one series without labels). */
export interface RangeResult {
  series: { labels: SeriesSamples["labels"]; times: number[]; values: number[] }[];
  /** Series and samples read. */
  read: { series: number; samples: number };
}

export interface InstantResult {
  value: Value;
  read: { series: number; samples: number };
}

interface Prepared {
  budget: ReadBudget;
  data: Map<VectorSelector, SeriesSamples[]>;
}

/** Reads what every selector of `expr` needs for evaluations at times in [startMs, endMs]. */
async function prepare(
  reader: SeriesReader,
  expr: Expr,
  startMs: number,
  endMs: number,
  lookbackMs: number,
  options: QueryOptions,
): Promise<Prepared> {
  const limits = { ...defaultLimits, ...options.limits };
  const budget = new ReadBudget(limits, options.signal ?? new AbortController().signal, Date.now() + limits.timeoutMs);
  const data = new Map<VectorSelector, SeriesSamples[]>();
  for (const { selector, rangeMs } of selectorsOf(expr)) {
    budget.check();
    const windowMs = rangeMs > 0 ? rangeMs : lookbackMs;
    // Windows are open on the left: (t − window, t]; reads are [from, to).
    const from = startMs - selector.offsetMs - windowMs + 1;
    const to = endMs - selector.offsetMs + 1;
    data.set(selector, await reader.read(selector.matchers, from, to, budget));
  }
  budget.check();
  return { budget, data };
}

export async function instantQuery(reader: SeriesReader, expr: Expr, timeMs: number, options: QueryOptions = {}): Promise<InstantResult> {
  const lookbackMs = options.lookbackMs ?? defaultLookbackMs;
  const { budget, data } = await prepare(reader, expr, timeMs, timeMs, lookbackMs, options);
  const value = new Evaluator(data, lookbackMs).eval(expr, timeMs);
  return { value, read: budget.used };
}

export async function rangeQuery(
  reader: SeriesReader,
  expr: Expr,
  startMs: number,
  endMs: number,
  stepMs: number,
  options: QueryOptions = {},
): Promise<RangeResult> {
  if (expr.type !== "scalar" && expr.type !== "vector") {
    throw new EvaluationError(
      `invalid expression type "${expr.type === "matrix" ? "range vector" : "string"}" for range query, must be Scalar or instant Vector`,
    );
  }
  const lookbackMs = options.lookbackMs ?? defaultLookbackMs;
  const { budget, data } = await prepare(reader, expr, startMs, endMs, lookbackMs, options);
  const evaluator = new Evaluator(data, lookbackMs);
  const out = new Map<string, RangeResult["series"][number]>();
  for (let t = startMs; t <= endMs; t += stepMs) {
    budget.check();
    const value = evaluator.eval(expr, t);
    const samples: Sample[] = value.type === "scalar" ? [{ labels: {}, value: value.value }] : value.type === "vector" ? value.samples : [];
    for (const s of samples) {
      const key = labelsKey(s.labels);
      let series = out.get(key);
      if (!series) out.set(key, (series = { labels: s.labels, times: [], values: [] }));
      if (series.times[series.times.length - 1] === t) throw new EvaluationError("vector cannot contain metrics with the same labelset");
      series.times.push(t);
      series.values.push(s.value);
    }
  }
  return { series: [...out.values()], read: budget.used };
}

/** Evaluates an expression at one time over the prepared series; pure. */
class Evaluator {
  constructor(
    private readonly data: Map<VectorSelector, SeriesSamples[]>,
    private readonly lookbackMs: number,
  ) {}

  eval(expr: Expr, t: number): Value {
    switch (expr.kind) {
      case "number":
        return { type: "scalar", value: expr.value };
      case "string":
        return { type: "string", value: expr.value };
      case "selector":
        return { type: "vector", samples: this.instant(expr, t) };
      case "matrix":
        return { type: "matrix", series: this.range(expr.selector, expr.rangeMs, t) };
      case "aggregate": {
        const param = expr.param ? this.scalar(expr.param, t) : Number.NaN;
        return { type: "vector", samples: aggregate(expr, this.vector(expr.expr, t), param) };
      }
      case "call": {
        const fn = functions[expr.func]!;
        const value = fn.eval({ args: expr.args.map((a) => this.eval(a, t)), call: expr, t });
        if (value.type === "vector") unique(value.samples);
        return value;
      }
      case "unary": {
        const inner = this.eval(expr.expr, t);
        if (inner.type === "scalar") return { type: "scalar", value: -inner.value };
        if (inner.type !== "vector") throw new Error(`unary minus of a ${inner.type}`);
        return { type: "vector", samples: unique(inner.samples.map((s) => ({ labels: dropName(s.labels), value: -s.value }))) };
      }
      case "binary": {
        const lhs = this.eval(expr.lhs, t);
        const rhs = this.eval(expr.rhs, t);
        if (lhs.type === "scalar" && rhs.type === "scalar") return { type: "scalar", value: scalarScalar(expr, lhs.value, rhs.value) };
        if (lhs.type === "vector" && rhs.type === "vector") {
          const samples =
            expr.matching!.card === "many-to-many" ? setOperation(expr, lhs.samples, rhs.samples) : vectorVector(expr, lhs.samples, rhs.samples);
          return { type: "vector", samples };
        }
        if (lhs.type === "vector" && rhs.type === "scalar")
          return { type: "vector", samples: unique(vectorScalar(expr, lhs.samples, rhs.value, false)) };
        if (lhs.type === "scalar" && rhs.type === "vector")
          return { type: "vector", samples: unique(vectorScalar(expr, rhs.samples, lhs.value, true)) };
        throw new Error(`binary operation between a ${lhs.type} and a ${rhs.type}`);
      }
    }
  }

  private vector(expr: Expr, t: number): Sample[] {
    const v = this.eval(expr, t);
    if (v.type !== "vector") throw new Error(`expected an instant vector, got a ${v.type}`);
    return v.samples;
  }

  private scalar(expr: Expr, t: number): number {
    const v = this.eval(expr, t);
    if (v.type !== "scalar") throw new Error(`expected a scalar, got a ${v.type}`);
    return v.value;
  }

  /** Each series' latest sample in (t − offset − lookback, t − offset], unless it is a staleness marker. */
  private instant(selector: VectorSelector, t: number): Sample[] {
    const at = t - selector.offsetMs;
    const out: Sample[] = [];
    for (const s of this.data.get(selector)!) {
      const i = indexAfter(s.times, at) - 1;
      if (i < 0 || s.times[i]! <= at - this.lookbackMs) continue;
      const value = s.values[i]!;
      if (isStaleMarker(value)) continue;
      out.push({ labels: s.labels, value });
    }
    return out;
  }

  /** Each series' samples in (t − offset − range, t − offset], staleness markers left out; series without any are left out. */
  private range(selector: VectorSelector, rangeMs: number, t: number): SeriesSamples[] {
    const end = t - selector.offsetMs;
    const out: SeriesSamples[] = [];
    for (const s of this.data.get(selector)!) {
      const from = indexAfter(s.times, end - rangeMs);
      const to = indexAfter(s.times, end);
      if (to <= from) continue;
      let times = s.times.subarray(from, to);
      let values = s.values.subarray(from, to);
      if (values.some(isStaleMarker)) {
        const keep = Array.from(values, (v) => !isStaleMarker(v));
        times = times.filter((_, i) => keep[i]);
        values = values.filter((_, i) => keep[i]);
        if (values.length === 0) continue;
      }
      out.push({ labels: s.labels, times, values });
    }
    return out;
  }
}

/** Prometheus refuses a vector in which two samples have the same labels (names dropped by a function or an operator can make them). */
function unique(samples: Sample[]): Sample[] {
  if (samples.length < 2) return samples;
  const seen = new Set<string>();
  for (const s of samples) {
    const key = labelsKey(s.labels);
    if (seen.has(key)) throw new EvaluationError("vector cannot contain metrics with the same labelset");
    seen.add(key);
  }
  return samples;
}
