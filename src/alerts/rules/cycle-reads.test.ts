import { describe, expect, it } from "vitest";
import { instantQuery } from "../../promql/engine.js";
import { QueryLimitError } from "../../promql/errors.js";
import { parsePromql } from "../../promql/parse.js";
import type { LabelMatcher, MetricSummary, PointArrays, Points, PointsQuery, SelectedSeries, TsdbReads } from "../../tsdb/index.js";
import { cycleReads, maxBatchSeries } from "./cycle-reads.js";

/** A store of metrics m0, m1, … with `perMetric` series each (ids from 1), recording its calls and how many run at once. */
function fakeStore(perMetric: number) {
  const calls = { select: 0, points: [] as PointsQuery[], samples: [] as { ids: number[]; from: number; to: number }[], mostAtOnce: 0 };
  let running = 0;
  const tracked = async <T>(work: () => T): Promise<T> => {
    calls.mostAtOnce = Math.max(calls.mostAtOnce, ++running);
    await new Promise((r) => setTimeout(r, 1));
    running--;
    return work();
  };
  const idsOf = (metric: string) => Array.from({ length: perMetric }, (_, j) => Number(metric.slice(1)) * perMetric + j + 1);
  const series = {
    list: (prefix: string): Promise<MetricSummary[]> => tracked(() => [{ metric: `${prefix}0`, kind: 2, series: perMetric, labels: [] }]),
    select: (metric: string, _matchers: LabelMatcher[]): Promise<SelectedSeries[]> =>
      tracked(() => {
        calls.select++;
        return idsOf(metric).map((id) => ({ id, labels: { n: String(id) }, kind: 2 }));
      }),
  };
  const store = {
    series,
    readPoints: (q: PointsQuery): Promise<Points> =>
      tracked(() => {
        calls.points.push(q);
        return {
          tier: "raw",
          series: new Map(
            q.seriesIds.map((id) => [id, [{ time: 0, min: id, max: id, sum: id, count: 1, last: id, increase: 0, deltas: 0, spanMs: 0 }]]),
          ),
        };
      }),
    readSamples: (ids: number[], from: number, to: number): Promise<Map<number, PointArrays>> =>
      tracked(() => {
        calls.samples.push({ ids, from, to });
        return new Map(ids.map((id) => [id, { times: Float64Array.of(from), values: Float64Array.of(id), n: 1 }]));
      }),
  };
  // Evaluation reads through select, list, readPoints and readSamples only.
  return { tsdb: store as unknown as TsdbReads, calls };
}

const points = (ids: number[], startMs = 0): PointsQuery => ({
  seriesIds: ids,
  startMs,
  endMs: startMs + 60_000,
  stepMs: 6_000,
  increase: false,
  last: false,
});

describe("one evaluation cycle's reads", () => {
  it("reads the points of one range for every rule in one call, and gives each rule its series", async () => {
    const { tsdb, calls } = fakeStore(10);
    const { store } = cycleReads(tsdb);
    const asked = Array.from({ length: 50 }, (_, i) => [i + 1, i + 100]);
    const [results, other] = await Promise.all([
      Promise.all(asked.map((ids) => store.readPoints(points(ids), 1))),
      store.readPoints(points([1], 60_000), 1),
    ]);
    expect(calls.points.map((q) => [q.startMs, q.seriesIds.length, q.last])).toEqual([
      [0, 100, true],
      [60_000, 1, true],
    ]);
    results.forEach((r, i) => {
      for (const id of asked[i]!) expect(r.series.get(id)![0]!.last).toBe(id);
    });
    expect(other.series.get(1)).toBeDefined();
  });

  it("waits for the selections in flight, so that the reads after them join one batch; at most 4 store calls at once", async () => {
    const { tsdb, calls } = fakeStore(3);
    const { store } = cycleReads(tsdb);
    const rule = async (metric: string) => {
      const selected = await store.series.select(metric, []);
      return store.readSamples(
        selected.map((s) => s.id),
        0,
        1_000,
      );
    };
    const metrics = Array.from({ length: 20 }, (_, i) => `m${i}`);
    // Two rules per metric: one selection each metric, one read for all.
    const read = await Promise.all([...metrics, ...metrics].map(rule));
    expect(calls.select).toBe(20);
    expect(calls.samples.map((c) => c.ids.length)).toEqual([60]);
    expect([...read[19]!.keys()]).toEqual(expect.arrayContaining([58, 59, 60]));
    expect(calls.mostAtOnce).toBe(4);
  });

  it(`splits a batch at ${maxBatchSeries} series`, async () => {
    const { tsdb, calls } = fakeStore(1);
    const { store } = cycleReads(tsdb);
    const half = maxBatchSeries / 2 + 1;
    const reads = await Promise.all(
      [0, 1, 2].map((k) =>
        store.readSamples(
          Array.from({ length: half }, (_, i) => k * half + i + 1),
          0,
          10,
        ),
      ),
    );
    expect(calls.samples.map((c) => c.ids.length)).toEqual([half, half, half]);
    expect(reads[2]!.get(3 * half)!.values[0]).toBe(3 * half);
  });

  it("fails every rule that shares a failed read, and sends nothing once the cycle is stopped", async () => {
    const { tsdb, calls } = fakeStore(1);
    tsdb.readSamples = () => Promise.reject(new Error("connection lost"));
    const { store } = cycleReads(tsdb);
    const both = await Promise.allSettled([store.readSamples([1], 0, 10), store.readSamples([2], 0, 10)]);
    expect(both.map((r) => r.status === "rejected" && (r.reason as Error).message)).toEqual(["connection lost", "connection lost"]);

    const stop = new AbortController();
    const other = fakeStore(1);
    const stopped = cycleReads(other.tsdb, stop.signal).store.readPoints(points([1]), 1);
    stop.abort();
    await expect(stopped).rejects.toThrow("the evaluation cycle was stopped");
    expect([calls.samples, other.calls.points]).toEqual([[], []]);
  });

  it("reads a PromQL selector once for the rules that share it, and charges it to each rule's limits", async () => {
    const { tsdb, calls } = fakeStore(5);
    const { promql } = cycleReads(tsdb);
    const [a, b] = await Promise.all([instantQuery(promql, parsePromql("m0 > 3"), 500), instantQuery(promql, parsePromql("sum(m0)"), 500)]);
    expect([calls.select, calls.samples.length]).toEqual([1, 1]);
    expect(a.value).toMatchObject({ type: "vector", samples: [{ value: 4 }, { value: 5 }] });
    expect(b.value).toMatchObject({ type: "vector", samples: [{ value: 15 }] });
    expect(a.read).toEqual({ series: 5, samples: 5 });
    expect(b.read).toEqual({ series: 5, samples: 5 });
    // Read already, and still over this query's limit.
    await expect(instantQuery(promql, parsePromql("m0"), 500, { limits: { maxSeries: 4 } })).rejects.toThrow(QueryLimitError);
    expect(calls.samples.length).toBe(1);
  });
});
