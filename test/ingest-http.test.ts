/**
 * Remote-write (/api/v1/write) and OTLP/HTTP (/v1/metrics) on a real daemon, as a sender sees
 * them: what is stored and read back through PromQL, idempotent re-sends, the status of every
 * refusal (400/413/415 not to be retried, 401/403 for credentials), limits checked before the body
 * is read or decoded, an agent's host label, staleness markers, and partial_success for what OTLP
 * points Specta does not store.
 */
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  type ExportMetricsServiceRequest,
} from "../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { AggregationTemporality } from "../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { API as TokensAPI, Role } from "../gen/tokens/tokens_pb.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { createLogger } from "../src/shared/log.js";
import { staleMarker } from "../src/promql/values.js";
import { stopEmbeddedPostgres } from "../src/storage/embedded.js";
import { startTestDaemon, useDaemon, type TestDaemon } from "./support/daemon.js";
import { postChunked } from "./support/http.js";
import { enrolAgent } from "./support/fake-agent.js";
import { remoteWriteBody, remoteWriteHeaders } from "./support/remote-write.js";
import { bearer } from "./support/rpc.js";

const daemon = useDaemon();
let viewerToken = "";
const now = Math.floor(Date.now() / 1000) * 1000;

beforeAll(async () => {
  const transport = createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", interceptors: [bearer(daemon().adminToken())] });
  viewerToken = (await createClient(TokensAPI, transport).create({ role: Role.VIEWER, name: "reader" })).token;
});

async function write(
  body: Uint8Array,
  headers: Record<string, string> = remoteWriteHeaders(daemon().adminToken()),
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${daemon().url}/api/v1/write`, { method: "POST", headers, body });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** An instant PromQL query at `time` (ms): each result's labels and value. */
async function query(expr: string, time = now): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${daemon().url}/api/v1/query?${new URLSearchParams({ query: expr, time: String(time / 1000) })}`, {
    headers: { authorization: `Bearer ${viewerToken}` },
  });
  const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  expect(res.status).toBe(200);
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

describe("remote-write 1.0 at /api/v1/write", () => {
  const series = [
    {
      labels: { __name__: "rw_requests_total", job: "api", instance: "a:1" },
      samples: [0, 1, 2].map((k) => ({ timestamp: now - 30_000 + k * 15_000, value: 10 + k * 15 })),
    },
    { labels: { __name__: "rw_temperature", job: "api", instance: "a:1" }, samples: [{ timestamp: now, value: 21.5 }] },
  ];

  it("stores a WriteRequest (204), readable through PromQL, and a re-sent one changes nothing", async () => {
    for (let i = 0; i < 2; i++) expect((await write(remoteWriteBody(series))).status).toBe(204);
    expect(await query("irate(rw_requests_total[1m])")).toEqual([{ metric: { instance: "a:1", job: "api" }, value: 1 }]);
    expect(await query("count_over_time(rw_requests_total[1m])")).toEqual([{ metric: { instance: "a:1", job: "api" }, value: 3 }]);
    expect(await query("rw_temperature")).toEqual([{ metric: { __name__: "rw_temperature", instance: "a:1", job: "api" }, value: 21.5 }]);
  });

  it("keeps NaN samples and ends a series at a staleness marker, as Prometheus does", async () => {
    const body = remoteWriteBody([
      {
        labels: { __name__: "rw_stale", job: "api" },
        samples: [
          { timestamp: now - 20_000, value: 1 },
          { timestamp: now - 10_000, value: staleMarker },
        ],
      },
      { labels: { __name__: "rw_nan", job: "api" }, samples: [{ timestamp: now - 10_000, value: Number.NaN }] },
    ]);
    expect((await write(body)).status).toBe(204);
    expect(await query("rw_stale")).toEqual([]);
    expect(await query("rw_stale", now - 15_000)).toHaveLength(1);
    expect((await query("rw_nan"))[0]!.value).toBeNaN();
  });

  it("forces an agent's host label, as Push does", async () => {
    const { credential } = await enrolAgent(daemon().url, readEnrollToken(daemon().dataDir)!, "rw-host");
    const body = remoteWriteBody([{ labels: { __name__: "rw_agent_gauge", host: "someone-else" }, samples: [{ timestamp: now, value: 7 }] }]);
    expect((await write(body, remoteWriteHeaders(credential))).status).toBe(204);
    expect(await query("rw_agent_gauge")).toEqual([{ metric: { __name__: "rw_agent_gauge", host: "rw-host" }, value: 7 }]);
  });

  it("answers 400 for what a sender must not retry: not snappy, not a WriteRequest, invalid series", async () => {
    const notSnappy = await write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    expect(notSnappy.status).toBe(400);
    expect(notSnappy.text).toMatch(/not a snappy block/);
    const { compress } = await import("snappyjs");
    expect((await write(Buffer.from(compress(Buffer.from([0x0a, 0xff, 0xff]))))).status).toBe(400);
    const noName = await write(remoteWriteBody([{ labels: { job: "x" }, samples: [{ timestamp: now, value: 1 }] }]));
    expect([noName.status, noName.text]).toEqual([400, "timeseries[0] has no __name__ label\n"]);
    const badLabel = await write(remoteWriteBody([{ labels: { __name__: "ok", "bad-label": "x" }, samples: [{ timestamp: now, value: 1 }] }]));
    expect(badLabel.status).toBe(400);
    expect(badLabel.text).toMatch(/label key "bad-label"/);
    const tooOld = await write(remoteWriteBody([{ labels: { __name__: "ok" }, samples: [{ timestamp: 1000, value: 1 }] }]));
    expect(tooOld.status).toBe(400);
  });

  it("refuses a batch over Push's limits (413) and a body over its size before reading or decoding it", async () => {
    const many = Array.from({ length: 10_001 }, (_, i) => ({
      labels: { __name__: "rw_many", i: String(i) },
      samples: [{ timestamp: now, value: 1 }],
    }));
    const tooMany = await write(remoteWriteBody(many));
    expect(tooMany.status).toBe(413);
    expect(tooMany.text).toMatch(/at most 10000 series/);
    // A snappy block that declares 1 GiB: refused from its first bytes.
    const declared = await write(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x04, 0x00]));
    expect([declared.status, declared.text]).toEqual([413, "the body declares 1073741824 bytes uncompressed; remote-write takes at most 16777216\n"]);
    // Content-Length alone: the 17 MiB are never read (the connection may be closed on the rest).
    const res = await fetch(`${daemon().url}/api/v1/write`, {
      method: "POST",
      headers: remoteWriteHeaders(daemon().adminToken()),
      body: Buffer.alloc(17 * 1024 * 1024),
    }).catch((err: unknown) => err);
    if (res instanceof Response) expect(res.status).toBe(413);
    // Chunked, its size known only once read: refused at the limit, and the answer still reaches it.
    const chunked = await postChunked(`${daemon().url}/api/v1/write`, remoteWriteHeaders(daemon().adminToken()), Buffer.alloc(17 * 1024 * 1024));
    expect(chunked).toEqual({ status: 413, text: "the body is larger than 16777216 bytes, the most this endpoint takes\n" });
  });

  it("answers 415 without snappy, 405 for other methods, 401 and 403 for credentials", async () => {
    const body = remoteWriteBody(series);
    expect((await write(body, { ...remoteWriteHeaders(daemon().adminToken()), "content-encoding": "gzip" })).status).toBe(415);
    expect((await fetch(`${daemon().url}/api/v1/write`)).status).toBe(405);
    const anonymous = await write(body, { "content-type": "application/x-protobuf", "content-encoding": "snappy" });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Basic/);
    const viewer = await write(body, remoteWriteHeaders(viewerToken));
    expect([viewer.status, viewer.text]).toEqual([403, "a viewer credential may not call prometheus/api/v1/write\n"]);
    // Basic auth with the token as password, as remote_write's basic_auth sends it.
    const basic = `Basic ${Buffer.from(`prometheus:${daemon().adminToken()}`).toString("base64")}`;
    expect((await write(body, { ...remoteWriteHeaders(""), authorization: basic })).status).toBe(204);
  });

  it("refuses native histograms rather than storing part of a request", async () => {
    const { WriteRequestSchema } = await import("../gen/prometheus/remote_pb.js");
    const { compress } = await import("snappyjs");
    const request = create(WriteRequestSchema, { timeseries: [{ labels: [{ name: "__name__", value: "rw_native" }], histograms: [{}] }] });
    const res = await write(Buffer.from(compress(toBinary(WriteRequestSchema, request))));
    expect(res.status).toBe(400);
    expect(res.text).toMatch(/native histogram/);
  });
});

const nanos = (ms: number) => BigInt(ms) * 1_000_000n;

function otlpRequest(): ExportMetricsServiceRequest {
  const attributes = [{ key: "http.route", value: { value: { case: "stringValue" as const, value: "/a" } } }];
  return create(ExportMetricsServiceRequestSchema, {
    resourceMetrics: [
      {
        resource: {
          attributes: [
            { key: "service.name", value: { value: { case: "stringValue", value: "shop" } } },
            { key: "service.namespace", value: { value: { case: "stringValue", value: "prod" } } },
            { key: "service.instance.id", value: { value: { case: "stringValue", value: "pod-1" } } },
          ],
        },
        scopeMetrics: [
          {
            metrics: [
              {
                name: "http.requests",
                unit: "{request}",
                data: {
                  case: "sum",
                  value: {
                    isMonotonic: true,
                    aggregationTemporality: AggregationTemporality.CUMULATIVE,
                    dataPoints: [{ attributes, timeUnixNano: nanos(now), value: { case: "asInt", value: 42n } }],
                  },
                },
              },
              {
                name: "queue.size",
                unit: "By",
                data: { case: "gauge", value: { dataPoints: [{ timeUnixNano: nanos(now), value: { case: "asDouble", value: 512 } }] } },
              },
              {
                name: "http.duration",
                unit: "s",
                data: {
                  case: "histogram",
                  value: {
                    aggregationTemporality: AggregationTemporality.CUMULATIVE,
                    dataPoints: [
                      { attributes, timeUnixNano: nanos(now), count: 10n, sum: 2.5, explicitBounds: [0.1, 0.5], bucketCounts: [4n, 5n, 1n] },
                    ],
                  },
                },
              },
              {
                name: "delta.calls",
                data: {
                  case: "sum",
                  value: {
                    isMonotonic: true,
                    aggregationTemporality: AggregationTemporality.DELTA,
                    dataPoints: [
                      { timeUnixNano: nanos(now), value: { case: "asInt", value: 3n } },
                      { timeUnixNano: nanos(now), value: { case: "asInt", value: 1n } },
                    ],
                  },
                },
              },
              { name: "latency.exp", data: { case: "exponentialHistogram", value: { dataPoints: [{}] } } },
            ],
          },
        ],
      },
    ],
  });
}

async function otlp(body: Uint8Array | string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${daemon().url}/v1/metrics`, { method: "POST", headers: { authorization: `Bearer ${daemon().adminToken()}`, ...headers }, body });
}

describe("OTLP/HTTP at /v1/metrics", () => {
  it("stores protobuf, mapped by Prometheus' rules, and says in partial_success what it refused and why", async () => {
    const res = await otlp(toBinary(ExportMetricsServiceRequestSchema, otlpRequest()), { "content-type": "application/x-protobuf" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-protobuf");
    const answer = fromBinary(ExportMetricsServiceResponseSchema, new Uint8Array(await res.arrayBuffer()));
    expect(answer.partialSuccess?.rejectedDataPoints).toBe(3n);
    expect(answer.partialSuccess?.errorMessage).toMatch(
      /2 points of delta\.calls: delta temporality is not stored.*1 points of latency\.exp: exponential histograms are not stored/,
    );
    const target = { job: "prod/shop", instance: "pod-1" };
    expect(await query("http_requests_total")).toEqual([{ metric: { __name__: "http_requests_total", http_route: "/a", ...target }, value: 42 }]);
    expect(await query("queue_size_bytes")).toEqual([{ metric: { __name__: "queue_size_bytes", ...target }, value: 512 }]);
    expect(await query("http_duration_seconds_bucket")).toEqual(
      [
        ["0.1", 4],
        ["0.5", 9],
        ["+Inf", 10],
      ].map(([le, value]) => ({ metric: { __name__: "http_duration_seconds_bucket", http_route: "/a", le: String(le), ...target }, value })),
    );
    expect(await query("http_duration_seconds_sum / http_duration_seconds_count")).toEqual([
      { metric: { http_route: "/a", ...target }, value: 0.25 },
    ]);
  });

  it("takes JSON, gzip-compressed, and answers in JSON", async () => {
    const request = otlpRequest();
    request.resourceMetrics[0]!.scopeMetrics[0]!.metrics.splice(1);
    request.resourceMetrics[0]!.scopeMetrics[0]!.metrics[0]!.name = "json.requests";
    const json = JSON.stringify(toJson(ExportMetricsServiceRequestSchema, request));
    const res = await otlp(gzipSync(json), { "content-type": "application/json", "content-encoding": "gzip" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({});
    expect((await query("json_requests_total"))[0]!.value).toBe(42);
  });

  it("refuses malformed bodies with 400 and a google.rpc.Status, other media types with 415, bombs with 413", async () => {
    const bad = await otlp("{not json", { "content-type": "application/json" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 3, message: expect.stringMatching(/OTLP\/JSON/) });
    expect((await otlp("x", { "content-type": "text/plain" })).status).toBe(415);
    const bomb = await otlp(gzipSync(Buffer.alloc(40 * 1024 * 1024)), { "content-type": "application/x-protobuf", "content-encoding": "gzip" });
    expect(bomb.status).toBe(413);
    expect((await otlp("", { "content-type": "application/x-protobuf", authorization: `Bearer ${viewerToken}` })).status).toBe(403);
  });
});

describe("while the database is away", () => {
  let outage: TestDaemon | undefined;
  beforeAll(async () => {
    // Its own embedded PostgreSQL, which the test stops.
    outage = await startTestDaemon({ flags: { databaseUrl: undefined } });
  });
  afterAll(async () => {
    await outage?.stop();
  });

  it("answers 503 with Retry-After, which remote-write and OTLP senders retry, and stores again once it is back", async () => {
    const d = outage!;
    const body = remoteWriteBody([{ labels: { __name__: "rw_outage" }, samples: [{ timestamp: Date.now(), value: 1 }] }]);
    const post = (path: string, payload: Uint8Array, headers: Record<string, string>) =>
      fetch(`${d.url}${path}`, { method: "POST", headers, body: payload });
    expect((await post("/api/v1/write", body, remoteWriteHeaders(d.adminToken()))).status).toBe(204);
    await stopEmbeddedPostgres(d.dataDir, createLogger("silent"));
    const refused = await post(
      "/api/v1/write",
      remoteWriteBody([{ labels: { __name__: "rw_outage", n: "1" }, samples: [{ timestamp: Date.now(), value: 1 }] }]),
      remoteWriteHeaders(d.adminToken()),
    );
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).not.toBeNull();
    const otlpRefused = await post("/v1/metrics", toBinary(ExportMetricsServiceRequestSchema, otlpRequest()), {
      authorization: `Bearer ${d.adminToken()}`,
      "content-type": "application/x-protobuf",
    });
    expect(otlpRefused.status).toBe(503);
    // The daemon's supervisor starts its PostgreSQL again (a start of the test's own raced it:
    // two pg_ctl starts on one data directory, one of which fails on the lock file).
    await expect
      .poll(async () => (await post("/api/v1/write", body, remoteWriteHeaders(d.adminToken()))).status, { timeout: 15_000, interval: 500 })
      .toBe(204);
  });
});
