import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  API as MetricsAPI,
  Aggregation,
  Kind,
  MatchOperator,
  QueryRequestSchema,
  SeriesSchema,
  type QueryRequest,
  type QueryResponse,
} from "../../gen/metrics/metrics_pb.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { bearer } from "../../test/support/rpc.js";
import { resolveDaemonConfig } from "../config/config.js";
import { createLogger } from "../shared/log.js";
import { bucketQuantile } from "../promql/math.js";
import { startDaemon, type RunningDaemon } from "../server/daemon.js";
import { chooseTier, type TsdbRetention } from "../tsdb/index.js";
import { queryLimits } from "./query.js";

const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;
const day = 24 * hour;

// Every raw sample lies in the hour that starts 3 to 4 hours ago: within retention, in the past.
const t0 = Math.floor((Date.now() - 3 * hour) / hour) * hour;

/** A query of [t0 + fromS, t0 + toS] seconds with a step in seconds. */
function req(metric: string, fromS: number, toS: number, stepS: number, rest: MessageInitShape<typeof QueryRequestSchema> = {}): QueryRequest {
  return create(QueryRequestSchema, {
    metric,
    start: timestampFromMs(t0 + fromS * second),
    end: timestampFromMs(t0 + toS * second),
    step: durationFromMs(stepS * second),
    ...rest,
  });
}

/** Each output series as its labels and [seconds after t0, value] pairs. */
function simplify(res: QueryResponse): { labels: Record<string, string>; points: [number, number][] }[] {
  return res.series.map((s) => ({ labels: { ...s.labels }, points: s.points.map((p) => [(timestampMs(p.time!) - t0) / second, p.value]) }));
}

async function codeOf(call: Promise<unknown>): Promise<{ code: Code | "ok"; message: string }> {
  try {
    await call;
    return { code: "ok", message: "" };
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: ce.code, message: ce.rawMessage };
  }
}

/** gauge test_cpu_usage: [host, dc, [[seconds after t0, value], …]]; host d has no dc label. */
const cpu: [string, string | undefined, [number, number][]][] = [
  [
    "a",
    "x",
    [
      [0, 1],
      [20, 3],
      [60, 5],
      [80, 7],
    ],
  ],
  [
    "b",
    "x",
    [
      [10, 10],
      [70, 20],
    ],
  ],
  ["c", "y", [[30, 100]]],
  ["ab", "y", [[5, 8]]],
  ["d", undefined, [[0, 50]]],
];

describe("bucketQuantile (Prometheus histogram_quantile)", () => {
  const buckets = (counts: number[]) => [0.1, 0.5, 1, Infinity].map((upperBound, i) => ({ upperBound, count: counts[i]! }));
  it("interpolates within the bucket that holds the rank", () => {
    expect(bucketQuantile(0.5, buckets([10, 40, 90, 100]))).toBe(0.6);
    expect(bucketQuantile(0.05, buckets([10, 40, 90, 100]))).toBeCloseTo(0.05, 12);
  });
  it("answers the last finite bound when the rank falls in +Inf, NaN without observations or +Inf", () => {
    expect(bucketQuantile(0.99, buckets([10, 40, 90, 100]))).toBe(1);
    expect(bucketQuantile(0.5, buckets([0, 0, 0, 0]))).toBeNaN();
    expect(
      bucketQuantile(0.5, [
        { upperBound: 1, count: 3 },
        { upperBound: 2, count: 4 },
      ]),
    ).toBeNaN();
  });
});

describe("chooseTier", () => {
  const retention: TsdbRetention = { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day };
  const now = Date.UTC(2026, 10, 22);
  it("reads raw points for short, recent ranges and for steps finer than a rollup bucket", () => {
    expect(chooseTier(now - hour, now, 30 * second, retention, now)).toBe("raw");
    expect(chooseTier(now - day, now, hour, retention, now)).toBe("raw");
    expect(chooseTier(now - 40 * day, now - 39 * day, 30 * second, retention, now)).toBe("raw");
  });
  it("reads 5-minute rollups for ranges longer than a day or older than raw retention", () => {
    expect(chooseTier(now - 3 * day, now, 5 * minute, retention, now)).toBe("5m");
    expect(chooseTier(now - 40 * day, now - 39 * day, 5 * minute, retention, now)).toBe("5m");
    expect(chooseTier(now - 3 * day, now, minute, retention, now)).toBe("raw");
  });
  it("reads hourly rollups for ranges longer than 2 days or older than 5-minute retention", () => {
    expect(chooseTier(now - 3 * day, now, hour, retention, now)).toBe("1h");
    expect(chooseTier(now - 100 * day, now - 99 * day, hour, retention, now)).toBe("1h");
    expect(chooseTier(now - 31 * day, now, 30 * minute, retention, now)).toBe("5m");
  });
});

describe.each(testServers())("metrics.API/Query and List on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: RunningDaemon;
  let dataDir: string;
  let client: Client<typeof MetricsAPI>;
  // A client, not a pool: pool.end() resolves before its sockets close, and dropping the
  // database right after would kill them mid-close.
  let sql: pg.Client;

  const push = async (metric: string, kind: Kind, labels: Record<string, string>, points: [number, number][]) => {
    const series = create(SeriesSchema, { metric, kind, labels, times: points.map(([s]) => t0 + s * second), values: points.map(([, v]) => v) });
    const res = await client.push({ series: [series] });
    expect(res.refused).toBe(0);
  };
  const query = async (r: QueryRequest) => simplify(await client.query(r));

  beforeAll(async () => {
    database = await createTestDatabase(server);
    dataDir = mkdtempSync(join(tmpdir(), "specta-query-"));
    chmodSync(dataDir, 0o711);
    daemon = await startDaemon(resolveDaemonConfig({ addr: "127.0.0.1:0", dataDir, databaseUrl: database.url }, {}), createLogger("silent"));
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    client = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(token)] }));
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();

    for (const [host, dc, points] of cpu) await push("test_cpu_usage", Kind.GAUGE, dc ? { host, dc } : { host }, points);
    // A counter with a sample before the range (the look-back) and two resets.
    await push("test_requests_total", Kind.COUNTER, { host: "a", job: "api" }, [
      [-15, 0],
      [0, 10],
      [15, 20],
      [30, 30],
      [45, 5],
      [60, 15],
      [75, 25],
      [90, 40],
      [105, 2],
    ]);
    await push("test_requests_total", Kind.COUNTER, { host: "b", job: "api" }, [
      [0, 1000],
      [30, 1010],
      [60, 1040],
    ]);
    // Histogram buckets (cumulative running totals) of two routes.
    const les = ["0.1", "0.5", "1", "+Inf"];
    const route = async (name: string, totals: [number, number[]][]) => {
      for (const [i, le] of les.entries()) {
        await push(
          "test_latency_seconds_bucket",
          Kind.HISTOGRAM,
          { route: name, le },
          totals.map(([s, counts]) => [s, counts[i]!]),
        );
      }
    };
    await route("/x", [
      [-30, [0, 0, 0, 0]],
      [30, [10, 40, 90, 100]],
      [90, [10, 50, 120, 130]],
    ]);
    await route("/y", [
      [-30, [0, 0, 0, 0]],
      [30, [0, 0, 10, 10]],
    ]);
  });

  afterAll(async () => {
    await sql?.end();
    await daemon?.stop();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("answers avg per series by default, each series with all its labels, empty steps left out", async () => {
    const res = await client.query(req("test_cpu_usage", 0, 119, 60));
    expect(durationMs(res.step!)).toBe(60_000);
    expect(simplify(res)).toEqual([
      // Ordered by label set (keys sorted): dc first.
      {
        labels: { host: "a", dc: "x" },
        points: [
          [0, 2],
          [60, 6],
        ],
      },
      {
        labels: { host: "b", dc: "x" },
        points: [
          [0, 10],
          [60, 20],
        ],
      },
      { labels: { host: "ab", dc: "y" }, points: [[0, 8]] },
      { labels: { host: "c", dc: "y" }, points: [[0, 100]] },
      { labels: { host: "d" }, points: [[0, 50]] },
    ]);
  });

  it("combines the series of each group_by group with every gauge aggregation", async () => {
    const byDc = (aggregation: Aggregation) => query(req("test_cpu_usage", 0, 119, 60, { aggregation, groupBy: ["dc"] }));
    // No dc: host d (50). dc=x: 1, 3, 10 in the first step, 5, 7, 20 in the second. dc=y: 8, 100.
    const expected: [Aggregation, number, [number, number][], [number, number][]][] = [
      [
        Aggregation.AVG,
        50,
        [
          [0, 14 / 3],
          [60, 32 / 3],
        ],
        [[0, 54]],
      ],
      [
        Aggregation.MIN,
        50,
        [
          [0, 1],
          [60, 5],
        ],
        [[0, 8]],
      ],
      [
        Aggregation.MAX,
        50,
        [
          [0, 10],
          [60, 20],
        ],
        [[0, 100]],
      ],
      [
        Aggregation.SUM,
        50,
        [
          [0, 14],
          [60, 32],
        ],
        [[0, 108]],
      ],
      [
        Aggregation.COUNT,
        1,
        [
          [0, 3],
          [60, 3],
        ],
        [[0, 2]],
      ],
      [
        Aggregation.LAST,
        50,
        [
          [0, 13],
          [60, 27],
        ],
        [[0, 108]],
      ],
    ];
    for (const [aggregation, none, x, y] of expected) {
      expect(await byDc(aggregation), Aggregation[aggregation]).toEqual([
        { labels: {}, points: [[0, none]] },
        { labels: { dc: "x" }, points: x },
        { labels: { dc: "y" }, points: y },
      ]);
    }
    expect(await query(req("test_cpu_usage", 0, 119, 60, { aggregation: Aggregation.MAX, groupBy: ["nobody"] }))).toEqual([
      {
        labels: {},
        points: [
          [0, 100],
          [60, 20],
        ],
      },
    ]);
  });

  it("selects series with each matcher operator; a missing label equals the empty string; regexes are anchored", async () => {
    const hosts = async (...matchers: [string, MatchOperator, string][]) =>
      (
        await client.query(req("test_cpu_usage", 0, 119, 60, { matchers: matchers.map(([label, operator, value]) => ({ label, operator, value })) }))
      ).series
        .map((s) => s.labels.host)
        .sort();
    expect(await hosts(["host", MatchOperator.EQUAL, "a"])).toEqual(["a"]);
    expect(await hosts(["host", MatchOperator.NOT_EQUAL, "a"])).toEqual(["ab", "b", "c", "d"]);
    expect(await hosts(["dc", MatchOperator.EQUAL, ""])).toEqual(["d"]);
    expect(await hosts(["dc", MatchOperator.NOT_EQUAL, ""])).toEqual(["a", "ab", "b", "c"]);
    expect(await hosts(["host", MatchOperator.REGEX, "b"])).toEqual(["b"]);
    expect(await hosts(["host", MatchOperator.REGEX, "a|c"])).toEqual(["a", "c"]);
    expect(await hosts(["host", MatchOperator.REGEX, "a.*"])).toEqual(["a", "ab"]);
    expect(await hosts(["host", MatchOperator.NOT_REGEX, "a.*"])).toEqual(["b", "c", "d"]);
    expect(await hosts(["host", MatchOperator.NOT_REGEX, "a.*"], ["dc", MatchOperator.EQUAL, "x"])).toEqual(["b"]);
    expect(await hosts(["nolabel", MatchOperator.REGEX, ""])).toEqual(["a", "ab", "b", "c", "d"]);

    const bad = await codeOf(
      client.query(req("test_cpu_usage", 0, 119, 60, { matchers: [{ label: "host", operator: MatchOperator.REGEX, value: "(" }] })),
    );
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.message).toMatch(/^matcher host=~"\(": .*regular expression/);
    // Also when no series has the metric, and when the pattern would escape the anchors.
    expect(
      (await codeOf(client.query(req("nothing_here", 0, 1, 1, { matchers: [{ label: "x", operator: MatchOperator.NOT_REGEX, value: "a)|(b" }] }))))
        .code,
    ).toBe(Code.InvalidArgument);
    expect(
      (await codeOf(client.query(req("test_cpu_usage", 0, 1, 1, { matchers: [{ label: "host", operator: MatchOperator.UNSPECIFIED, value: "a" }] }))))
        .code,
    ).toBe(Code.InvalidArgument);
  });

  it("computes increase and rate of counters across resets, using the sample before the range", async () => {
    // host a: deltas 10 (from the look-back sample), 10, 10, 5 (reset) | 10, 10, 15, 2 (reset).
    // host b: its first sample has nothing before it: 10 | 30.
    expect(await query(req("test_requests_total", 0, 119, 60, { aggregation: Aggregation.INCREASE }))).toEqual([
      {
        labels: { host: "a", job: "api" },
        points: [
          [0, 35],
          [60, 37],
        ],
      },
      {
        labels: { host: "b", job: "api" },
        points: [
          [0, 10],
          [60, 30],
        ],
      },
    ]);
    expect(await query(req("test_requests_total", 0, 119, 60, { aggregation: Aggregation.RATE, groupBy: ["job"] }))).toEqual([
      {
        labels: { job: "api" },
        points: [
          [0, 45 / 60],
          [60, 67 / 60],
        ],
      },
    ]);
    expect(
      await query(
        req("test_requests_total", 0, 119, 30, {
          aggregation: Aggregation.INCREASE,
          matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: "a" }],
        }),
      ),
    ).toEqual([
      {
        labels: { host: "a", job: "api" },
        points: [
          [0, 20],
          [30, 15],
          [60, 20],
          [90, 17],
        ],
      },
    ]);
    expect((await codeOf(client.query(req("test_cpu_usage", 0, 119, 60, { aggregation: Aggregation.RATE })))).code).toBe(Code.InvalidArgument);
  });

  it("reads the rate of the newest step, still filling, over the time its samples span", async () => {
    // A counter rising 0.5 a second, sampled every 10 s up to half a second ago. A step that
    // has run 20 s or more is chosen (a multiple of 10 s, so that every whole step holds as many
    // samples), so that the newest step holds samples: read over the whole step, its rate would be low.
    const now = Date.now();
    let stepMs = 60 * second;
    while (now % stepMs < 20 * second) stepMs += 10 * second;
    const times = Array.from({ length: 40 }, (_, k) => now - 500 - (39 - k) * 10 * second);
    const series = create(SeriesSchema, {
      metric: "test_filling_total",
      kind: Kind.COUNTER,
      labels: { host: "a" },
      times,
      values: times.map((t) => (t - times[0]!) / 2000),
    });
    expect((await client.push({ series: [series] })).refused).toBe(0);
    const ask = (aggregation: Aggregation) =>
      client.query({
        metric: "test_filling_total",
        aggregation,
        start: timestampFromMs(now - 5 * minute),
        end: timestampFromMs(now),
        step: durationFromMs(stepMs),
      });
    const [rate] = (await ask(Aggregation.RATE)).series;
    const points = rate!.points.map((p) => [timestampMs(p.time!), p.value] as const);
    const newest = points.at(-1)!;
    expect(newest[0]).toBe(Math.floor(now / stepMs) * stepMs);
    expect(newest[1]).toBeCloseTo(0.5, 9);
    // Every whole step before it reads the same rate; the newest step's increase is what it has counted so far.
    for (const [, value] of points.slice(1, -1)) expect(value).toBeCloseTo(0.5, 9);
    const increase = (await ask(Aggregation.INCREASE)).series[0]!.points.at(-1)!;
    const counted = times.filter((t) => t >= newest[0]);
    expect(increase.value).toBeCloseTo(counted.length * 5, 9);
  });

  it("answers the latest running total of counters and histogram series without an aggregation, the mean of gauges", async () => {
    // test_requests_total, host a: the last samples of [0, 60) and [60, 120) are 5 (at 45 s) and 2 (at 105 s).
    expect(await query(req("test_requests_total", 0, 119, 60, { matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: "a" }] }))).toEqual(
      [
        {
          labels: { host: "a", job: "api" },
          points: [
            [0, 5],
            [60, 2],
          ],
        },
      ],
    );
    // Three observations: the totals 1, 2 and 3 read back as 3, not as their mean 2.
    await push("test_observed_total", Kind.COUNTER, {}, [
      [10, 1],
      [20, 2],
      [30, 3],
    ]);
    expect(await query(req("test_observed_total", 0, 59, 60))).toEqual([{ labels: {}, points: [[0, 3]] }]);
    expect(
      await query(req("test_latency_seconds_bucket", 0, 119, 60, { matchers: [{ label: "le", operator: MatchOperator.EQUAL, value: "+Inf" }] })),
    ).toEqual([
      {
        labels: { le: "+Inf", route: "/x" },
        points: [
          [0, 100],
          [60, 130],
        ],
      },
      { labels: { le: "+Inf", route: "/y" }, points: [[0, 10]] },
    ]);
    // A gauge: the mean (see "answers avg per series by default").
    expect(await query(req("test_cpu_usage", 0, 59, 60, { matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: "a" }] }))).toEqual([
      { labels: { host: "a", dc: "x" }, points: [[0, 2]] },
    ]);
  });

  it("computes histogram quantiles from the per-step increases of the _bucket series", async () => {
    const quantile = (q: number, groupBy: string[] = []) =>
      query(req("test_latency_seconds", 0, 119, 60, { aggregation: Aggregation.QUANTILE, quantile: q, groupBy }));
    // /x, first step: increases 10, 40, 90, 100 → rank 50 lies in (0.5, 1]: 0.5 + 0.5 × (50 − 40) / (90 − 40) = 0.6.
    // /x, second step: increases 0, 10, 30, 30 → rank 15: 0.5 + 0.5 × (15 − 10) / (30 − 10) = 0.625.
    // /y: increases 0, 0, 10, 10 → rank 5: 0.5 + 0.5 × 5 / 10 = 0.75.
    expect(await quantile(0.5)).toEqual([
      {
        labels: { route: "/x" },
        points: [
          [0, 0.6],
          [60, 0.625],
        ],
      },
      { labels: { route: "/y" }, points: [[0, 0.75]] },
    ]);
    // Both routes summed by le: 10, 40, 100, 110 → rank 55: 0.5 + 0.5 × 15 / 60 = 0.625.
    expect((await quantile(0.5, ["env"]))[0]!.points[0]).toEqual([0, 0.625]);
    // The rank falls in +Inf: the last finite bound.
    expect((await quantile(0.99))[0]!.points[0]).toEqual([0, 1]);
    expect((await codeOf(client.query(req("test_latency_seconds", 0, 119, 60, { aggregation: Aggregation.QUANTILE, quantile: 1.5 })))).code).toBe(
      Code.InvalidArgument,
    );
    expect((await codeOf(client.query(req("test_cpu", 0, 119, 60, { aggregation: Aggregation.QUANTILE, quantile: 0.5 })))).code).toBe("ok");
  });

  it("applies the defaults: end now, start an hour before, step range / 120", async () => {
    const res = await client.query({ metric: "test_cpu_usage" });
    expect(durationMs(res.step!)).toBe(30_000);
    expect(res.series).toEqual([]);
    const zero = await client.query({ metric: "test_cpu_usage", start: timestampFromMs(t0), end: timestampFromMs(t0), step: durationFromMs(0) });
    expect(durationMs(zero.step!)).toBe(1_000);
  });

  it("answers an unknown metric with no series, and refuses a missing metric or a reversed range", async () => {
    expect((await client.query(req("no_such_metric", 0, 119, 60))).series).toEqual([]);
    const missing = await codeOf(client.query({}));
    expect(missing).toEqual({ code: Code.InvalidArgument, message: "metric is required" });
    expect((await codeOf(client.query(req("test_cpu_usage", 60, 0, 1)))).code).toBe(Code.InvalidArgument);
  });

  it("limits points per series, series per query and points per query", async () => {
    const tooFine = await codeOf(client.query(req("test_cpu_usage", 0, 4 * 3600, 1)));
    expect(tooFine.code).toBe(Code.InvalidArgument);
    expect(tooFine.message).toMatch(/14401 points per series, at most 11000/);
    expect((await codeOf(client.query(req("test_cpu_usage", 0, 10_999, 1)))).code).toBe("ok");

    await sql.query(
      `INSERT INTO series (metric, labels, kind, key) SELECT 'test_many', jsonb_build_object('i', g::text), 2, -g FROM generate_series(1, ${queryLimits.maxSeries}) g`,
    );
    const many = (stepS: number) => codeOf(client.query(req("test_many", 0, 3600, stepS)));
    expect((await many(30)).code).toBe("ok");
    const tooManyPoints = await many(1);
    expect(tooManyPoints.code).toBe(Code.ResourceExhausted);
    expect(tooManyPoints.message).toMatch(/10000 series × 3601 steps/);

    await sql.query(`INSERT INTO series (metric, labels, kind, key) VALUES ('test_many', '{"i": "extra"}', 2, -1000000)`);
    const tooMany = await many(30);
    expect(tooMany).toEqual({
      code: Code.ResourceExhausted,
      message: "the query selects more than 10000 series of metric test_many: narrow it with matchers",
    });
    expect(
      (await codeOf(client.query(req("test_many", 0, 3600, 30, { matchers: [{ label: "i", operator: MatchOperator.REGEX, value: "1.*" }] })))).code,
    ).toBe("ok");
  });

  it("lists metrics with kinds, series counts, label values and help", async () => {
    await client.histogram({ action: [{ metric: "page_ready_duration_seconds", number: 0.3 }] });
    const { metrics } = await client.list({ prefix: "test_" });
    const names = metrics.map((m) => m.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(["test_cpu_usage", "test_latency_seconds_bucket", "test_requests_total"]));
    expect(names.every((n) => n.startsWith("test_"))).toBe(true);

    const cpuInfo = metrics.find((m) => m.name === "test_cpu_usage")!;
    expect(cpuInfo).toMatchObject({ kind: Kind.GAUGE, help: "", series: 5n });
    expect(cpuInfo.labels.map((l) => ({ key: l.key, values: l.values }))).toEqual([
      { key: "dc", values: ["x", "y"] },
      { key: "host", values: ["a", "ab", "b", "c", "d"] },
    ]);
    expect(metrics.find((m) => m.name === "test_requests_total")).toMatchObject({ kind: Kind.COUNTER, series: 2n });
    const latency = metrics.find((m) => m.name === "test_latency_seconds_bucket")!;
    expect(latency).toMatchObject({ kind: Kind.HISTOGRAM, series: 8n });
    expect(latency.labels.find((l) => l.key === "le")!.values).toEqual(["+Inf", "0.1", "0.5", "1"]);

    // At most 1,000 values per key, the first in byte order.
    const many = (await client.list({ prefix: "test_many" })).metrics[0]!;
    expect(many.series).toBe(10_001n);
    const all = Array.from({ length: 10_000 }, (_, i) => String(i + 1))
      .concat("extra")
      .sort();
    expect(many.labels[0]!.values).toEqual(all.slice(0, 1000));

    // Declared instruments carry their help, on each series of a histogram.
    const page = (await client.list({ prefix: "page_ready" })).metrics;
    expect(page.map((m) => [m.name, m.kind, m.help])).toEqual(
      ["page_ready_duration_seconds_bucket", "page_ready_duration_seconds_count", "page_ready_duration_seconds_sum"].map((n) => [
        n,
        Kind.HISTOGRAM,
        "Time from navigation until a page is ready for the user, in seconds.",
      ]),
    );
    expect((await client.list({ prefix: "nothing_" })).metrics).toEqual([]);
  });
});
