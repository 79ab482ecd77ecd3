import { describe, expect, it } from "vitest";
import type { LabelMatcher, MetricSummary, PointArrays, SelectedSeries, Tsdb } from "../tsdb/index.js";
import { defaultLimits, instantQuery, ReadBudget } from "./engine.js";
import { EvaluationError, QueryCanceled, QueryLimitError, QueryTimeout } from "./errors.js";
import { parsePromql } from "./parse.js";
import { literalPrefix, maxMetricsPerSelector, tsdbReader } from "./tsdb-reader.js";

/** A store of `metrics` × `perMetric` series with `samples` points each, recording what it is asked. */
function fakeStore(metrics: string[], perMetric: number, samples: number) {
  const calls = { list: [] as string[], select: [] as { metric: string; matchers: LabelMatcher[] }[], reads: [] as number[] };
  const ids = new Map<string, number[]>(metrics.map((m, i) => [m, Array.from({ length: perMetric }, (_, j) => i * perMetric + j + 1)]));
  const series = {
    async list(prefix: string): Promise<MetricSummary[]> {
      calls.list.push(prefix);
      return metrics.filter((m) => m.startsWith(prefix)).map((metric) => ({ metric, kind: 2, series: perMetric, labels: [] }));
    },
    async select(metric: string, matchers: LabelMatcher[]): Promise<SelectedSeries[]> {
      calls.select.push({ metric, matchers });
      return (ids.get(metric) ?? []).map((id) => ({ id, labels: { n: String(id) }, kind: 2 }));
    },
  };
  const readSamples = async (seriesIds: number[]): Promise<Map<number, PointArrays>> => {
    calls.reads.push(seriesIds.length);
    const times = Float64Array.from({ length: samples }, (_, i) => i * 1000);
    return new Map(seriesIds.map((id) => [id, { times, values: new Float64Array(samples).fill(id), n: samples }]));
  };
  // The reader uses select, list and readSamples only.
  const tsdb = { series, readSamples } as unknown as Pick<Tsdb, "series" | "readSamples">;
  return { tsdb, calls };
}

const budget = (limits: Partial<typeof defaultLimits> = {}) =>
  new ReadBudget({ ...defaultLimits, ...limits }, new AbortController().signal, Date.now() + 10_000);

describe("the store's reader", () => {
  it("pushes label matchers down and lists metric names by the pattern's literal prefix", async () => {
    const { tsdb, calls } = fakeStore(["node_cpu_seconds_total", "node_cpu_guest_seconds_total", "node_memory_bytes"], 2, 1);
    const matchers = [
      { label: "__name__", op: "=~", value: "node_cpu_.*_total" },
      { label: "mode", op: "!=", value: "idle" },
    ] as const;
    const series = await tsdbReader(tsdb).read([...matchers], 0, 10, budget());
    expect(calls.list).toEqual(["node_cpu_"]);
    expect(calls.select).toEqual([
      { metric: "node_cpu_seconds_total", matchers: [{ label: "mode", op: "!=", value: "idle" }] },
      { metric: "node_cpu_guest_seconds_total", matchers: [{ label: "mode", op: "!=", value: "idle" }] },
    ]);
    expect(series.map((s) => s.labels.__name__)).toEqual([
      "node_cpu_seconds_total",
      "node_cpu_seconds_total",
      "node_cpu_guest_seconds_total",
      "node_cpu_guest_seconds_total",
    ]);
  });

  it("refuses a name pattern that spans too many metrics", async () => {
    const { tsdb } = fakeStore(
      Array.from({ length: maxMetricsPerSelector + 1 }, (_, i) => `m${i}`),
      1,
      1,
    );
    await expect(tsdbReader(tsdb).read([{ label: "__name__", op: "=~", value: "m.*" }], 0, 10, budget())).rejects.toThrow(EvaluationError);
  });

  it("reads in batches sized from the samples per series, and stops at the budget", async () => {
    const { tsdb, calls } = fakeStore(["big"], 100, 10_000);
    await tsdbReader(tsdb).read([{ label: "__name__", op: "=", value: "big" }], 0, 10, budget());
    // 16 first; then 500,000 samples per statement at 10,000 per series.
    expect(calls.reads).toEqual([16, 50, 34]);
    const limited = fakeStore(["big"], 100, 10_000);
    const query = instantQuery(tsdbReader(limited.tsdb), parsePromql("big"), 10_000, { limits: { maxSamples: 200_000 } });
    await expect(query).rejects.toThrow(QueryLimitError);
    expect(limited.calls.reads).toEqual([16, 50]);
    await expect(
      instantQuery(tsdbReader(fakeStore(["big"], 100, 1).tsdb), parsePromql("big"), 10_000, { limits: { maxSeries: 99 } }),
    ).rejects.toThrow(/more than 99 series/);
  });

  it("gives up after the query's time, or when its client has gone", async () => {
    const slow = { read: () => new Promise<[]>((resolve) => setTimeout(() => resolve([]), 30)) };
    await expect(instantQuery(slow, parsePromql("x"), 0, { limits: { timeoutMs: 5 } })).rejects.toThrow(QueryTimeout);
    const gone = new AbortController();
    gone.abort();
    await expect(instantQuery(slow, parsePromql("x"), 0, { signal: gone.signal })).rejects.toThrow(QueryCanceled);
  });

  it.each([
    ["node_cpu.*", "node_cpu"],
    ["node_cpus?", "node_cpu"],
    ["node_(cpu|memory).*", "node_"],
    ["a|b", ""],
    ["node_cpu|x", ""],
    ["node_[|]", "node_"],
    [".*", ""],
  ])("takes %s's literal prefix as %j", (pattern, prefix) => {
    expect(literalPrefix(pattern)).toBe(prefix);
  });
});
