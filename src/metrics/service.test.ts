import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Registry } from "prom-client";
import { beforeAll, describe, expect, it } from "vitest";
import { ActionSchema, Aggregation, Kind, API as MetricsAPI, SeriesSchema, type Action } from "../../gen/metrics/metrics_pb.js";
import { testInstruments } from "../../test/support/daemon.js";
import { inMemoryClient, storagePerFile } from "../../test/support/in-memory.js";
import { codeOf } from "../../test/support/rpc.js";
import { createLogger } from "../shared/log.js";
import type { Principal } from "../tokens/tokens.js";
import { openTsdb, type Tsdb } from "../tsdb/index.js";
import { InstrumentStore } from "./instrument-store.js";
import { Instruments } from "./instruments.js";
import { maxActionsPerCall, metricsService, type MetricsDeps } from "./service.js";

const day = 86_400_000;
const now = Date.now();
const admin: Principal = { tokenId: randomUUID(), name: "admin", role: "admin", agentId: null, agentHostname: null };
const agent: Principal = { tokenId: randomUUID(), name: "web-1", role: "agent", agentId: randomUUID(), agentHostname: "web-1" };
const action = (metric: string, number: number, labels: Record<string, string> = {}): Action => create(ActionSchema, { metric, number, labels });
const range = { start: timestampFromMs(now - 3_600_000), end: timestampFromMs(now + 60_000), step: durationFromMs(3_660_000) };

describe("metrics.API's handlers, in memory", () => {
  const storage = storagePerFile();
  let deps: MetricsDeps;
  const as = (caller: Principal | undefined) => inMemoryClient(MetricsAPI, metricsService(deps), caller);
  /** The largest value of `metric`'s series over the last hour, by their labels. */
  const largest = async (metric: string) => {
    const res = await as(admin).query({ metric, aggregation: Aggregation.MAX, ...range });
    return res.series.map((s) => ({ labels: s.labels, value: s.points.at(-1)?.value }));
  };

  beforeAll(async () => {
    const tsdb: Tsdb = await openTsdb(storage().pool, {
      limits: { perMetric: 5, perAgent: 4 },
      retention: { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day },
      log: createLogger("silent"),
    });
    const instruments = new Instruments(testInstruments, "testing", new Registry());
    deps = { instruments, instrumentStore: new InstrumentStore(tsdb, instruments), push: { tsdb, retentionMs: 30 * day }, tsdb };
  });

  it("answers each action of an instrument call with its own result: a refused one fails alone, with its reason", async () => {
    const res = await as(undefined).counter({
      action: [
        action("jobs_done_total", 2, { queue: "mail", priority: "high" }),
        action("no_such_metric_total", 1),
        action("jobs_done_total", 1, { queue: "fax", priority: "high" }),
        action("jobs_done_total", -1, { queue: "mail", priority: "high" }),
        action("queue_depth", 1, { queue: "mail", transport: "json" }),
      ],
    });
    expect(res.result.map((r) => [r.status, r.reason?.kind])).toEqual([
      ["success", undefined],
      ["failure", "undeclared_metric"],
      ["failure", "undeclared_label"],
      ["failure", "invalid_number"],
      ["failure", "wrong_kind"],
    ]);
    // Only the accepted action moved the total.
    expect(await largest("jobs_done_total")).toEqual([{ labels: { queue: "mail", priority: "high", env: "testing" }, value: 2 }]);
  });

  it("takes 1 to 100 actions a call", async () => {
    expect(await codeOf(as(undefined).gauge({ action: [] }))).toBe(Code.InvalidArgument);
    const many = Array.from({ length: maxActionsPerCall + 1 }, () => action("queue_depth", 1, { queue: "video", transport: "grpc" }));
    expect(await codeOf(as(undefined).gauge({ action: many }))).toBe(Code.InvalidArgument);
    expect((await as(undefined).gauge({ action: many.slice(1) })).result).toHaveLength(maxActionsPerCall);
  });

  it("keeps a counter's running total and a histogram's buckets, sum and count across calls", async () => {
    await as(undefined).counter({ action: [action("jobs_done_total", 3, { queue: "video", priority: "low" })] });
    await as(undefined).counter({ action: [action("jobs_done_total", 4, { queue: "video", priority: "low" })] });
    expect(await largest("jobs_done_total")).toContainEqual({ labels: { queue: "video", priority: "low", env: "testing" }, value: 7 });
    await as(undefined).histogram({
      action: [action("upload_size_bytes", 2048, { kind: "image" }), action("upload_size_bytes", 10, { kind: "image" })],
    });
    expect(await largest("upload_size_bytes_count")).toEqual([{ labels: { kind: "image", env: "testing" }, value: 2 }]);
    expect(await largest("upload_size_bytes_sum")).toEqual([{ labels: { kind: "image", env: "testing" }, value: 2058 }]);
    const buckets = Object.fromEntries((await largest("upload_size_bytes_bucket")).map((s) => [s.labels.le, s.value]));
    expect(buckets).toEqual({ "1024": 1, "1048576": 2, "+Inf": 2 });
  });

  it("writes an agent's series under its registered hostname, whatever host label it sends", async () => {
    const series = create(SeriesSchema, {
      metric: "node_load1",
      kind: Kind.GAUGE,
      labels: { host: "somebody-else" },
      times: [now - 1000],
      values: [0.5],
    });
    expect(await as(agent).push({ series: [series] })).toMatchObject({ accepted: 1, refused: 0 });
    expect(await largest("node_load1")).toEqual([{ labels: { host: "web-1" }, value: 0.5 }]);
    // An admin's batch keeps the labels it has.
    await as(admin).push({ series: [create(SeriesSchema, { ...series, labels: { host: "imported" }, values: [0.7] })] });
    expect((await as(admin).list({ prefix: "node_load1" })).metrics[0]?.labels).toMatchObject([{ key: "host", values: ["imported", "web-1"] }]);
  });

  it("counts a re-sent batch once, and refuses a batch with one malformed series whole", async () => {
    const counter = (metric: string) =>
      create(SeriesSchema, { metric, kind: Kind.COUNTER, labels: {}, times: [now - 2000, now - 1000], values: [1, 2] });
    const batch = [counter("retried_total")];
    for (let i = 0; i < 3; i++) expect(await as(admin).push({ series: batch })).toMatchObject({ accepted: 2, refused: 0 });
    const counted = await as(admin).query({ metric: "retried_total", aggregation: Aggregation.COUNT, ...range });
    expect(counted.series[0]?.points.reduce((n, p) => n + p.value, 0)).toBe(2);

    const malformed = [counter("kept_out"), counter("0-not-a-name")];
    expect(await codeOf(as(admin).push({ series: malformed }))).toBe(Code.InvalidArgument);
    expect((await as(admin).list({ prefix: "kept_out" })).metrics).toEqual([]);
  });

  it("refuses new series over the per-metric limit with a reason per series, and keeps the others", async () => {
    const series = Array.from({ length: 7 }, (_, i) =>
      create(SeriesSchema, { metric: "crowded", kind: Kind.GAUGE, labels: { n: String(i) }, times: [now - 1000], values: [i] }),
    );
    const res = await as(admin).push({ series });
    expect(res).toMatchObject({ accepted: 5, refused: 2 });
    expect(res.refusals.map((r) => r.points)).toEqual([1, 1]);
  });

  it("refuses a query without a metric or with a reversed range, and answers an unknown metric with no series", async () => {
    expect(await codeOf(as(admin).query({ ...range }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(admin).query({ metric: "node_load1", start: range.end, end: range.start }))).toBe(Code.InvalidArgument);
    expect((await as(admin).query({ metric: "never_written", ...range })).series).toEqual([]);
  });

  it("lists metrics with their kind, series count and a declared instrument's help", async () => {
    const { metrics } = await as(admin).list({ prefix: "upload_size_bytes" });
    expect(metrics.map((m) => [m.name, m.kind, m.series])).toEqual([
      ["upload_size_bytes_bucket", Kind.HISTOGRAM, 3n],
      ["upload_size_bytes_count", Kind.HISTOGRAM, 1n],
      ["upload_size_bytes_sum", Kind.HISTOGRAM, 1n],
    ]);
    expect(new Set(metrics.map((m) => m.help))).toEqual(new Set(["Size of uploads."]));
  });
});
