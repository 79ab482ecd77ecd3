import type { LabelMatcher, Tsdb } from "../tsdb/index.js";
import type { Matcher } from "./ast.js";
import { EvaluationError } from "./errors.js";
import type { ReadBudget, SeriesReader } from "./engine.js";
import { matchesValue } from "./regex.js";
import { nameLabel, type Labels, type SeriesSamples } from "./values.js";

/**
 * The evaluator's reads from Specta's store: label matchers are pushed down to the series index
 * (which evaluates them in PostgreSQL), raw samples come from the store's one read path.
 *
 * The index selects within one metric, so a selector without a metric name equality
 * (`{__name__=~"node_.*"}`, `{job="x"}`) first lists the metric names (by the pattern's literal
 * prefix where it has one) and filters them here, up to maxMetricsPerSelector.
 */

/** Metric names one selector may span. */
export const maxMetricsPerSelector = 500;
/**
 * How many samples one statement should return at most: a statement's result is in memory before
 * the budget sees it, so reads go in batches of series sized from the samples per series seen so
 * far, starting small (a long range holds many samples per series).
 */
const samplesPerRead = 500_000;
const firstBatch = 16;
const maxBatch = 1_024;

export function tsdbReader(tsdb: Pick<Tsdb, "series" | "readSamples">): SeriesReader {
  return {
    async read(matchers, fromMs, toMs, budget) {
      const selected = await selectSeries(tsdb, matchers, budget);
      return readSamples(tsdb, selected, Math.max(0, fromMs), Math.max(0, toMs), budget);
    },
  };
}

/** A series of the store, its labels with the metric name as `__name__`. */
export interface StoredSeries {
  id: number;
  labels: Labels;
}

/** The series matching every matcher, charged to the budget. */
export async function selectSeries(tsdb: Pick<Tsdb, "series">, matchers: Matcher[], budget: ReadBudget): Promise<StoredSeries[]> {
  const nameMatchers = matchers.filter((m) => m.label === nameLabel);
  const labelMatchers: LabelMatcher[] = matchers.filter((m) => m.label !== nameLabel);
  const metrics = await metricNames(tsdb, nameMatchers);
  const selected: StoredSeries[] = [];
  for (const metric of metrics) {
    budget.check();
    const series = await tsdb.series.select(metric, labelMatchers);
    budget.chargeSeries(series.length);
    for (const s of series) selected.push({ id: s.id, labels: { ...s.labels, [nameLabel]: metric } });
  }
  return selected;
}

async function readSamples(
  tsdb: Pick<Tsdb, "readSamples">,
  selected: StoredSeries[],
  fromMs: number,
  toMs: number,
  budget: ReadBudget,
): Promise<SeriesSamples[]> {
  const out: SeriesSamples[] = [];
  let samples = 0;
  let batchSize = firstBatch;
  for (let i = 0; i < selected.length; i += batchSize) {
    if (i > 0) batchSize = Math.max(1, Math.min(maxBatch, Math.floor(samplesPerRead / Math.max(1, samples / i))));
    budget.check();
    const batch = selected.slice(i, i + batchSize);
    const points = await tsdb.readSamples(
      batch.map((s) => s.id),
      fromMs,
      toMs,
    );
    for (const s of batch) {
      const p = points.get(s.id);
      if (!p) continue;
      samples += p.n;
      budget.chargeSamples(p.n);
      out.push({ labels: s.labels, times: p.times.subarray(0, p.n), values: p.values.subarray(0, p.n) });
    }
  }
  return out;
}

/** The metric names the `__name__` matchers select: the equality's value, or the listed names they match. */
async function metricNames(tsdb: Pick<Tsdb, "series">, matchers: Matcher[]): Promise<string[]> {
  const test = (name: string) => matchers.every((m) => matchesValue(m, name));
  const equal = matchers.find((m) => m.op === "=");
  if (equal) return test(equal.value) ? [equal.value] : [];
  const prefixes = matchers.filter((m) => m.op === "=~").map((m) => literalPrefix(m.value));
  const prefix = prefixes.reduce((longest, p) => (p.length > longest.length ? p : longest), "");
  const names = (await tsdb.series.list(prefix)).map((m) => m.metric).filter(test);
  if (names.length > maxMetricsPerSelector) {
    throw new EvaluationError(`a selector matches more than ${maxMetricsPerSelector} metric names: name the metric or narrow its __name__ pattern`);
  }
  return names;
}

/** The text every match of an anchored pattern starts with ("node_cpu" for "node_cpu.*"); "" when it has none. */
export function literalPrefix(pattern: string): string {
  if (hasTopLevelAlternation(pattern)) return "";
  const run = /^[a-zA-Z0-9_:]*/.exec(pattern)![0];
  // A quantifier after the run makes its last character optional.
  return /^[?*{]/.test(pattern.slice(run.length)) ? run.slice(0, -1) : run;
}

/** Whether `pattern` has a `|` outside every group and character class ("a|b", not "x(a|b)"). */
function hasTopLevelAlternation(pattern: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") i++;
    else if (inClass) inClass = c !== "]";
    else if (c === "[") inClass = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return true;
  }
  return false;
}
