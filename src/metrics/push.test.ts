import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { API as MetricsAPI, Aggregation, Kind, SeriesSchema, type Series } from "../../gen/metrics/metrics_pb.js";
import { startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { createLogger } from "../shared/log.js";
import { startEmbeddedPostgres, stopEmbeddedPostgres } from "../storage/embedded.js";
import { pushLimits } from "./push.js";
import { bearer, codeOf } from "../../test/support/rpc.js";
import { enrolAgent } from "../../test/support/fake-agent.js";
import { readEnrollToken } from "../fleet/enroll-token.js";

function metricsClient(daemon: TestDaemon, token = readFileSync(join(daemon.dataDir, "admin.token"), "utf8").trim()) {
  return createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: token ? [bearer(token)] : [] }));
}

const now = Date.now();
const gauge = (labels: Record<string, string>, times: number[], metric = "test_temperature_celsius"): Series =>
  create(SeriesSchema, { metric, labels, kind: Kind.GAUGE, times, values: times.map((_, i) => 20 + i) });

describe.each(testServers())("metrics.API/Push on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: TestDaemon;
  let client: Client<typeof MetricsAPI>;
  let sql: pg.Client;
  /** Points stored for `metric` within an hour of now, through the store's read path (Query). */
  const stored = async (metric: string) => {
    const res = await client.query({
      metric,
      aggregation: Aggregation.COUNT,
      start: timestampFromMs(now - 3_600_000),
      end: timestampFromMs(now + 3_600_000),
      step: durationFromMs(7_200_000),
    });
    return res.series.reduce((n, s) => n + s.points.reduce((m, p) => m + p.value, 0), 0);
  };

  beforeAll(async () => {
    database = await createTestDatabase(server);
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url }, config: { limits: { seriesPerMetric: 5, seriesPerAgent: 4 } } });
    client = metricsClient(daemon);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
  });
  afterAll(async () => {
    await sql?.end();
    await daemon?.stop();
    await database?.drop();
  });

  it("stores a batch once, however often it is re-sent", async () => {
    const batch = [gauge({ room: "a" }, [now - 2000, now - 1000]), gauge({ room: "b" }, [now - 2000])];
    const before = await stored("test_temperature_celsius");
    for (let i = 0; i < 3; i++) {
      const res = await client.push({ series: batch });
      expect(res).toMatchObject({ accepted: 3, refused: 0 });
    }
    expect((await stored("test_temperature_celsius")) - before).toBe(3);
    const res = await client.query({
      metric: "test_temperature_celsius",
      aggregation: Aggregation.LAST,
      start: timestampFromMs(now - 2000),
      end: timestampFromMs(now - 1000),
      step: durationFromMs(1),
    });
    const points = res.series.flatMap((s) => s.points.map((p) => [s.labels.room, timestampMs(p.time!), p.value]));
    expect(points).toEqual([
      ["a", now - 2000, 20],
      ["a", now - 1000, 21],
      ["b", now - 2000, 20],
    ]);
  });

  it("refuses a malformed batch with InvalidArgument and writes none of it", async () => {
    const good = gauge({ room: "c" }, [now]);
    const bad: Series[] = [
      create(SeriesSchema, { metric: "", kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "bad name", kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "x".repeat(256), kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.UNSPECIFIED, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "ok", labels: { "bad-key": "v" }, kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "ok", labels: { __reserved: "v" }, kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "ok", labels: { k: "v".repeat(1025) }, kind: Kind.GAUGE, times: [now], values: [1] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [now, now + 1], values: [1] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [now], values: [Number.NaN] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [now], values: [Number.POSITIVE_INFINITY] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [now + 3_600_000], values: [1] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [now - 40 * 86_400_000], values: [1] }),
      create(SeriesSchema, { metric: "ok", kind: Kind.GAUGE, times: [Number.NaN], values: [1] }),
    ];
    const before = await stored("test_temperature_celsius");
    for (const series of bad) {
      expect(await codeOf(client.push({ series: [good, series] }))).toBe(Code.InvalidArgument);
    }
    expect(await stored("test_temperature_celsius")).toBe(before);
    expect(await stored("ok")).toBe(0);
  });

  it("refuses oversized batches with ResourceExhausted and writes none of it", async () => {
    const manySeries = Array.from({ length: pushLimits.maxSeries + 1 }, (_, i) => gauge({ i: String(i) }, [now], "too_many"));
    expect(await codeOf(client.push({ series: manySeries }))).toBe(Code.ResourceExhausted);
    const manyPoints = [
      gauge(
        {},
        Array.from({ length: pushLimits.maxPoints + 1 }, (_, i) => now - i),
        "too_many",
      ),
    ];
    expect(await codeOf(client.push({ series: manyPoints }))).toBe(Code.ResourceExhausted);
    // Over the 16 MiB message limit.
    const huge = [create(SeriesSchema, { metric: "huge", labels: { blob: "x".repeat(1000) }, kind: Kind.GAUGE, times: [now], values: [1] })];
    const bulky = Array.from({ length: 9000 }, (_, i) =>
      create(SeriesSchema, { ...huge[0]!, labels: { blob: "x".repeat(1000), b: "y".repeat(1000), i: String(i) } }),
    );
    // (A Node client refuses to queue that much itself unless its session memory is raised.)
    const roomy = createClient(
      MetricsAPI,
      createGrpcTransport({
        baseUrl: daemon.url,
        nodeOptions: { maxSessionMemory: 100 },
        interceptors: [bearer(readFileSync(join(daemon.dataDir, "admin.token"), "utf8").trim())],
      }),
    );
    expect(await codeOf(roomy.push({ series: bulky }))).toBe(Code.ResourceExhausted);
    expect(await stored("too_many")).toBe(0);
    expect(await stored("huge")).toBe(0);
  });

  it("refuses new series over the per-metric limit, and a kind that clashes, with reasons", async () => {
    const series = Array.from({ length: 7 }, (_, i) => gauge({ disk: `d${i}` }, [now], "test_disk_bytes"));
    const res = await client.push({
      series: [
        ...series,
        create(SeriesSchema, { metric: "test_temperature_celsius", labels: { room: "z" }, kind: Kind.COUNTER, times: [now], values: [1] }),
      ],
    });
    expect(res.accepted).toBe(5);
    expect(res.refused).toBe(3);
    expect(res.refusals.map((r) => r.reason).sort()).toEqual([
      "metric test_disk_bytes has reached its limit of 5 series",
      "metric test_disk_bytes has reached its limit of 5 series",
      "metric test_temperature_celsius is a gauge, not a counter",
    ]);
    // Existing series of a full metric still take new points.
    expect(await client.push({ series: [gauge({ disk: "d0" }, [now + 1], "test_disk_bytes")] })).toMatchObject({ accepted: 1, refused: 0 });
  });

  it("writes an agent's series under its registered hostname, within its own series limit", async () => {
    const { credential } = await enrolAgent(daemon.url, readEnrollToken(daemon.dataDir)!, "db-2");
    const agent = metricsClient(daemon, credential);
    const res = await agent.push({ series: Array.from({ length: 5 }, (_, i) => gauge({ host: "db-1", n: String(i) }, [now], "test_agent_owned")) });
    expect(res).toMatchObject({ accepted: 4, refused: 1 });
    expect(res.refusals.map((r) => r.reason)).toEqual(["this agent has reached its limit of 4 series"]);
    const { metrics } = await client.list({ prefix: "test_agent_owned" });
    expect(metrics[0]!.labels.find((l) => l.key === "host")!.values).toEqual(["db-2"]);
  });

  it("needs an agent or admin credential", async () => {
    expect(await codeOf(metricsClient(daemon, "").push({ series: [gauge({}, [now])] }))).toBe(Code.Unauthenticated);
    expect(await codeOf(metricsClient(daemon, "specta_wrong").push({ series: [gauge({}, [now])] }))).toBe(Code.Unauthenticated);
  });

  it("answers Counter, Gauge and Histogram with persisted running totals", async () => {
    for (const n of [2, 3]) {
      const res = await client.histogram({ action: [{ metric: "page_ready_duration_seconds", number: n }] });
      expect(res.result).toEqual([expect.objectContaining({ status: "success" })]);
    }
    const { rows: totals } = await sql.query(
      "SELECT s.metric, s.labels->>'le' AS le, t.total FROM instrument_totals t JOIN series s ON s.id = t.series_id WHERE s.metric LIKE 'page_ready%' AND (s.labels->>'le' IS NULL OR s.labels->>'le' IN ('2.5', '5', '+Inf')) ORDER BY 1, 2",
    );
    expect(totals).toEqual([
      { metric: "page_ready_duration_seconds_bucket", le: "+Inf", total: 2 },
      { metric: "page_ready_duration_seconds_bucket", le: "2.5", total: 1 },
      { metric: "page_ready_duration_seconds_bucket", le: "5", total: 2 },
      { metric: "page_ready_duration_seconds_count", le: null, total: 2 },
      { metric: "page_ready_duration_seconds_sum", le: null, total: 5 },
    ]);
  });
});

describe("metrics.API/Push during a database outage", () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    // Its own embedded PostgreSQL, which the test stops and starts again: the daemon's supervision,
    // which would restart it too (racing the test's start for its lock file), looks too late to.
    daemon = await startTestDaemon({ flags: { databaseUrl: undefined }, daemon: { embedded: { checkMs: 600_000 } } });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it("answers Unavailable while the database is down, reports not ready, and recovers", async () => {
    const client = metricsClient(daemon);
    expect(await client.push({ series: [gauge({}, [Date.now()])] })).toMatchObject({ accepted: 1 });

    await stopEmbeddedPostgres(daemon.dataDir, createLogger("silent"));

    expect(await codeOf(client.push({ series: [gauge({ n: "1" }, [Date.now()])] }))).toBe(Code.Unavailable);
    expect(await codeOf(client.histogram({ action: [{ metric: "page_ready_duration_seconds", number: 1 }] }))).not.toBe("ok");
    await expect.poll(async () => (await fetch(`${daemon.url}/health/ready`)).status, { timeout: 15_000, interval: 500 }).toBe(503);

    await startEmbeddedPostgres(daemon.dataDir, createLogger("silent"));
    await expect.poll(async () => (await fetch(`${daemon.url}/health/ready`)).status, { timeout: 15_000, interval: 500 }).toBe(200);
    expect(await client.push({ series: [gauge({ n: "2" }, [Date.now()])] })).toMatchObject({ accepted: 1 });
  });
});
