import type { Call, Expr, ValueType } from "./ast.js";
import { EvaluationError } from "./errors.js";
import { bucketQuantile, compensatedSum, kahanSumInc, mean, quantile } from "./math.js";
import { compileRegex, expandTemplate } from "./regex.js";
import { dropName, labelsKey, nameLabel, type Labels, type Sample, type SeriesSamples, type Value } from "./values.js";

/**
 * The functions Specta evaluates, with Prometheus' semantics (promql/functions.go). Functions
 * that are not in this table are refused by the parser by name.
 */

export interface FunctionSignature {
  argTypes: ValueType[];
  /** How many of the last arguments may be left out. */
  optional: number;
  returns: ValueType;
}

/** What a function sees: its evaluated arguments, the evaluation time, and its call (for the range and offset of a range argument). */
export interface CallContext {
  args: Value[];
  call: Call;
  /** Evaluation time, Unix ms. */
  t: number;
}

interface FunctionDef extends FunctionSignature {
  eval(ctx: CallContext): Value;
}

const vectorFn = (argTypes: ValueType[], evalFn: (ctx: CallContext) => Value, optional = 0): FunctionDef => ({
  argTypes,
  optional,
  returns: "vector",
  eval: evalFn,
});

/** An element-wise function of an instant vector (its other arguments scalars); drops the metric name. */
function elementWise(f: (value: number, ctx: CallContext) => number, extra: ValueType[] = [], optional = 0): FunctionDef {
  return vectorFn(
    ["vector", ...extra],
    (ctx) => ({ type: "vector", samples: vectorArg(ctx, 0).map((s) => ({ labels: dropName(s.labels), value: f(s.value, ctx) })) }),
    optional,
  );
}

/** A function of each series of a range vector; series without samples give nothing. Drops the metric name unless `keepName`. */
function overRange(
  f: (s: SeriesSamples, ctx: CallContext) => number | undefined,
  options: { keepName?: boolean; scalarFirst?: boolean } = {},
): FunctionDef {
  const matrixAt = options.scalarFirst ? 1 : 0;
  return vectorFn(options.scalarFirst ? ["scalar", "matrix"] : ["matrix"], (ctx) => {
    const out: Sample[] = [];
    for (const s of matrixArg(ctx, matrixAt)) {
      if (s.values.length === 0) continue;
      const value = f(s, ctx);
      if (value !== undefined) out.push({ labels: options.keepName ? s.labels : dropName(s.labels), value });
    }
    return { type: "vector", samples: out };
  });
}

function vectorArg(ctx: CallContext, i: number): Sample[] {
  const v = ctx.args[i]!;
  if (v.type !== "vector") throw new Error(`argument ${i} of ${ctx.call.func} is a ${v.type}, not a vector`);
  return v.samples;
}

function matrixArg(ctx: CallContext, i: number): SeriesSamples[] {
  const v = ctx.args[i]!;
  if (v.type !== "matrix") throw new Error(`argument ${i} of ${ctx.call.func} is a ${v.type}, not a matrix`);
  return v.series;
}

function scalarArg(ctx: CallContext, i: number): number {
  const v = ctx.args[i]!;
  if (v.type !== "scalar") throw new Error(`argument ${i} of ${ctx.call.func} is a ${v.type}, not a scalar`);
  return v.value;
}

function stringArg(ctx: CallContext, i: number): string {
  const v = ctx.args[i]!;
  if (v.type !== "string") throw new Error(`argument ${i} of ${ctx.call.func} is a ${v.type}, not a string`);
  return v.value;
}

/** The range and offset of the range selector that is a call's argument `i` (the parser guarantees one). */
function rangeOf(call: Call, i: number): { rangeMs: number; offsetMs: number } {
  const arg = call.args[i]!;
  if (arg.kind !== "matrix") throw new Error(`argument ${i} of ${call.func} is not a range selector`);
  return { rangeMs: arg.rangeMs, offsetMs: arg.selector.offsetMs };
}

/**
 * rate, increase and delta (Prometheus' extrapolatedRate): the change between the first and last
 * sample in the range (counter resets added back for counters), extrapolated to the range's ends
 * when the samples come close enough to them (within 1.1 average intervals), else by half an
 * interval; a counter is never extrapolated below zero.
 */
function extrapolatedRate(isCounter: boolean, isRate: boolean) {
  return (s: SeriesSamples, ctx: CallContext): number | undefined => {
    const n = s.values.length;
    if (n < 2) return undefined;
    const { rangeMs, offsetMs } = rangeOf(ctx.call, 0);
    const rangeEnd = ctx.t - offsetMs;
    const rangeStart = rangeEnd - rangeMs;
    const first = s.values[0]!;
    let result = s.values[n - 1]! - first;
    if (isCounter) {
      let prev = first;
      for (let i = 1; i < n; i++) {
        const v = s.values[i]!;
        if (v < prev) result += prev;
        prev = v;
      }
    }
    const firstT = s.times[0]!;
    const lastT = s.times[n - 1]!;
    let durationToStart = (firstT - rangeStart) / 1000;
    let durationToEnd = (rangeEnd - lastT) / 1000;
    const sampledInterval = (lastT - firstT) / 1000;
    const averageInterval = sampledInterval / (n - 1);
    const threshold = averageInterval * 1.1;
    if (durationToStart >= threshold) durationToStart = averageInterval / 2;
    if (isCounter) {
      // Counters start at zero: extrapolating further back than the zero point would invent increase.
      const durationToZero = result > 0 && first >= 0 ? sampledInterval * (first / result) : durationToStart;
      if (durationToZero < durationToStart) durationToStart = durationToZero;
    }
    if (durationToEnd >= threshold) durationToEnd = averageInterval / 2;
    let factor = (sampledInterval + durationToStart + durationToEnd) / sampledInterval;
    if (isRate) factor /= rangeMs / 1000;
    return result * factor;
  };
}

/** irate and idelta (Prometheus' instantValue): from the last two samples of the range. */
function instantValue(isRate: boolean) {
  return (s: SeriesSamples): number | undefined => {
    const n = s.values.length;
    if (n < 2) return undefined;
    const last = s.values[n - 1]!;
    const previous = s.values[n - 2]!;
    // A drop is a counter reset for irate: the last value is then the increase since it.
    const result = isRate && last < previous ? last : last - previous;
    const intervalMs = s.times[n - 1]! - s.times[n - 2]!;
    if (intervalMs === 0) return undefined;
    return isRate ? result / (intervalMs / 1000) : result;
  };
}

/**
 * The labels absent() gives its sample: the equality matchers of a selector argument, except the
 * metric name; a label matched twice, or by another kind of matcher, is left out (Prometheus'
 * createLabelsForAbsentFunction).
 */
function absentLabels(arg: Expr): Labels {
  const selector = arg.kind === "selector" ? arg : arg.kind === "matrix" ? arg.selector : undefined;
  if (!selector) return {};
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const m of selector.matchers) {
    if (m.label === nameLabel) continue;
    if (m.op === "=" && !seen.has(m.label)) {
      if (m.value !== "") out[m.label] = m.value;
      seen.add(m.label);
    } else delete out[m.label];
  }
  return out;
}

/** Go's math.Max and math.Min: NaN wins. */
const goMax = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b));
const goMin = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.min(a, b));

const labelNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function labelReplace(ctx: CallContext): Value {
  const [dst, replacement, src, pattern] = [1, 2, 3, 4].map((i) => stringArg(ctx, i)) as [string, string, string, string];
  let regex: RegExp;
  try {
    regex = compileRegex(pattern);
  } catch (err) {
    throw new EvaluationError(`invalid regular expression in label_replace(): ${pattern}: ${(err as Error).message}`);
  }
  if (!labelNamePattern.test(dst)) throw new EvaluationError(`invalid destination label name in label_replace(): ${dst}`);
  const out: Sample[] = [];
  const seen = new Set<string>();
  for (const s of vectorArg(ctx, 0)) {
    const match = regex.exec(s.labels[src] ?? "");
    let labels = s.labels;
    if (match) {
      const value = expandTemplate(replacement, match);
      const next: Record<string, string> = { ...s.labels };
      if (value === "") delete next[dst];
      else next[dst] = value;
      labels = next;
    }
    const key = labelsKey(labels);
    if (seen.has(key)) throw new EvaluationError("vector cannot contain metrics with the same labelset");
    seen.add(key);
    out.push({ labels, value: s.value });
  }
  return { type: "vector", samples: out };
}

const mathFunctions: Record<string, (v: number) => number> = {
  abs: Math.abs,
  ceil: Math.ceil,
  floor: Math.floor,
  sqrt: Math.sqrt,
  exp: Math.exp,
  ln: Math.log,
  log2: Math.log2,
  log10: Math.log10,
  sgn: (v) => (Number.isNaN(v) ? v : Math.sign(v)),
};

export const functions: Record<string, FunctionDef> = {
  ...Object.fromEntries(Object.entries(mathFunctions).map(([name, f]) => [name, elementWise((v) => f(v))])),
  round: elementWise(
    (v, ctx) => {
      const inverse = 1 / (ctx.args.length > 1 ? scalarArg(ctx, 1) : 1);
      return Math.floor(v * inverse + 0.5) / inverse;
    },
    ["scalar"],
    1,
  ),
  clamp_min: elementWise((v, ctx) => goMax(scalarArg(ctx, 1), v), ["scalar"]),
  clamp_max: elementWise((v, ctx) => goMin(scalarArg(ctx, 1), v), ["scalar"]),
  clamp: vectorFn(["vector", "scalar", "scalar"], (ctx) => {
    const [min, max] = [scalarArg(ctx, 1), scalarArg(ctx, 2)];
    if (max < min) return { type: "vector", samples: [] };
    return { type: "vector", samples: vectorArg(ctx, 0).map((s) => ({ labels: dropName(s.labels), value: goMax(min, goMin(max, s.value)) })) };
  }),
  time: { argTypes: [], optional: 0, returns: "scalar", eval: (ctx) => ({ type: "scalar", value: ctx.t / 1000 }) },
  vector: vectorFn(["scalar"], (ctx) => ({ type: "vector", samples: [{ labels: {}, value: scalarArg(ctx, 0) }] })),
  scalar: {
    argTypes: ["vector"],
    optional: 0,
    returns: "scalar",
    eval(ctx) {
      const samples = vectorArg(ctx, 0);
      return { type: "scalar", value: samples.length === 1 ? samples[0]!.value : Number.NaN };
    },
  },
  label_replace: vectorFn(["vector", "string", "string", "string", "string"], labelReplace),
  absent: vectorFn(["vector"], (ctx) =>
    vectorArg(ctx, 0).length > 0
      ? { type: "vector", samples: [] }
      : { type: "vector", samples: [{ labels: absentLabels(ctx.call.args[0]!), value: 1 }] },
  ),
  absent_over_time: vectorFn(["matrix"], (ctx) =>
    matrixArg(ctx, 0).some((s) => s.values.length > 0)
      ? { type: "vector", samples: [] }
      : { type: "vector", samples: [{ labels: absentLabels(ctx.call.args[0]!), value: 1 }] },
  ),
  histogram_quantile: vectorFn(["scalar", "vector"], histogramQuantile),

  rate: overRange(extrapolatedRate(true, true)),
  increase: overRange(extrapolatedRate(true, false)),
  delta: overRange(extrapolatedRate(false, false)),
  irate: overRange(instantValue(true)),
  idelta: overRange(instantValue(false)),
  resets: overRange((s) => {
    let resets = 0;
    for (let i = 1; i < s.values.length; i++) if (s.values[i]! < s.values[i - 1]!) resets++;
    return resets;
  }),
  changes: overRange((s) => {
    let changes = 0;
    for (let i = 1; i < s.values.length; i++) {
      const [prev, cur] = [s.values[i - 1]!, s.values[i]!];
      if (cur !== prev && !(Number.isNaN(cur) && Number.isNaN(prev))) changes++;
    }
    return changes;
  }),
  avg_over_time: overRange((s) => mean(s.values)),
  sum_over_time: overRange((s) => compensatedSum(s.values)),
  count_over_time: overRange((s) => s.values.length),
  min_over_time: overRange((s) => s.values.reduce((min, v) => (v < min || Number.isNaN(min) ? v : min))),
  max_over_time: overRange((s) => s.values.reduce((max, v) => (v > max || Number.isNaN(max) ? v : max))),
  // The one range function that keeps the metric name: its value is a sample of the series.
  last_over_time: overRange((s) => s.values[s.values.length - 1], { keepName: true }),
  quantile_over_time: overRange((s, ctx) => quantile(scalarArg(ctx, 0), Array.from(s.values)), { scalarFirst: true }),
  present_over_time: overRange(() => 1),
  stddev_over_time: overRange((s) => Math.sqrt(variance(s.values))),
  stdvar_over_time: overRange((s) => variance(s.values)),
  deriv: overRange((s) => (s.values.length < 2 ? undefined : linearRegression(s, s.times[0]!).slope)),
  predict_linear: vectorFn(["matrix", "scalar"], (ctx) => {
    const seconds = scalarArg(ctx, 1);
    const out: Sample[] = [];
    for (const s of matrixArg(ctx, 0)) {
      if (s.values.length < 2) continue;
      const { slope, intercept } = linearRegression(s, ctx.t);
      out.push({ labels: dropName(s.labels), value: slope * seconds + intercept });
    }
    return { type: "vector", samples: out };
  }),
  // Only an instant query's order shows; a range query's series are sorted by labels.
  sort: vectorFn(["vector"], (ctx) => ({ type: "vector", samples: byValue(vectorArg(ctx, 0), 1) })),
  sort_desc: vectorFn(["vector"], (ctx) => ({ type: "vector", samples: byValue(vectorArg(ctx, 0), -1) })),
};

/** Samples by value, ascending (1) or descending (-1), NaN last either way (Prometheus' funcSort, funcSortDesc). */
function byValue(samples: Sample[], direction: 1 | -1): Sample[] {
  return [...samples].sort((a, b) => {
    const [an, bn] = [Number.isNaN(a.value), Number.isNaN(b.value)];
    if (an || bn) return an === bn ? 0 : an ? 1 : -1;
    return direction * (a.value - b.value);
  });
}

/** The population variance of a range, with compensated running mean and sum of squares (Prometheus' stdvar_over_time). */
function variance(values: Float64Array): number {
  let mean = 0;
  let cMean = 0;
  let aux = 0;
  let cAux = 0;
  values.forEach((v, i) => {
    const delta = v - (mean + cMean);
    [mean, cMean] = kahanSumInc(delta / (i + 1), mean, cMean);
    [aux, cAux] = kahanSumInc(delta * (v - (mean + cMean)), aux, cAux);
  });
  return (aux + cAux) / values.length;
}

/**
 * Least-squares line through a range's samples, x in seconds from `interceptMs` (Prometheus'
 * linearRegression: compensated sums; a constant series has slope 0, NaN if it is infinite).
 */
function linearRegression(s: SeriesSamples, interceptMs: number): { slope: number; intercept: number } {
  const n = s.values.length;
  const first = s.values[0]!;
  let constant = true;
  let [sumX, cX, sumY, cY, sumXY, cXY, sumX2, cX2] = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const y = s.values[i]!;
    if (y !== first) constant = false;
    const x = (s.times[i]! - interceptMs) / 1000;
    [sumX, cX] = kahanSumInc(x, sumX, cX);
    [sumY, cY] = kahanSumInc(y, sumY, cY);
    [sumXY, cXY] = kahanSumInc(x * y, sumXY, cXY);
    [sumX2, cX2] = kahanSumInc(x * x, sumX2, cX2);
  }
  if (constant) return Number.isFinite(first) ? { slope: 0, intercept: first } : { slope: Number.NaN, intercept: Number.NaN };
  sumX += cX;
  sumY += cY;
  sumXY += cXY;
  sumX2 += cX2;
  const slope = (sumXY - (sumX * sumY) / n) / (sumX2 - (sumX * sumX) / n);
  return { slope, intercept: sumY / n - (slope * sumX) / n };
}

/**
 * histogram_quantile over classic histograms: the `le` buckets of each series group (its labels
 * but `le` and the metric name), as Prometheus' BucketQuantile interpolates them. Samples without
 * a numeric `le` are left out, as Prometheus does.
 */
function histogramQuantile(ctx: CallContext): Value {
  const q = scalarArg(ctx, 0);
  const groups = new Map<string, { labels: Labels; buckets: { upperBound: number; count: number }[] }>();
  for (const s of vectorArg(ctx, 1)) {
    const le = parseGoFloat(s.labels.le ?? "");
    if (le === undefined) continue;
    const { le: _, ...rest } = dropName(s.labels);
    const key = labelsKey(rest);
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { labels: rest, buckets: [] }));
    group.buckets.push({ upperBound: le, count: s.value });
  }
  return { type: "vector", samples: [...groups.values()].map((g) => ({ labels: g.labels, value: bucketQuantile(q, g.buckets) })) };
}

/** Go's strconv.ParseFloat for an `le` label: decimal, exponent, Inf/Infinity and NaN in any case; undefined when invalid. */
function parseGoFloat(text: string): number | undefined {
  const m = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (m) return /nan/i.test(m[2]!) ? Number.NaN : (m[1] === "-" ? -1 : 1) * Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) return undefined;
  return Number(text);
}
