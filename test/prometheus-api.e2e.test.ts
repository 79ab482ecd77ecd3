/**
 * Prometheus' HTTP API on a real daemon: samples pushed through metrics.API/Push, read back over
 * /api/v1/* with Prometheus' JSON, its errors and status codes, and by promtool (Debian's
 * `prometheus` package) as a client nobody here wrote.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { API as MetricsAPI, Kind, SeriesSchema, type Series } from "../gen/metrics/metrics_pb.js";
import { API as TokensAPI, Role } from "../gen/tokens/tokens_pb.js";
import { useDaemon } from "./support/daemon.js";
import { postChunked } from "./support/http.js";
import { bearer } from "./support/rpc.js";

const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing" } });

const stepMs = 15_000;
/** An hour of samples every 15 s, ending on a whole minute before now. */
const end = Math.floor(Date.now() / 60_000) * 60_000 - 60_000;
const start = end - 3_600_000;
const times = Array.from({ length: (end - start) / stepMs + 1 }, (_, i) => start + i * stepMs);
const modes = ["idle", "user", "system", "iowait"];
const cpus = Array.from({ length: 16 }, (_, i) => String(i));

/** Per-second rate of each CPU counter: steady, so rate() over any window is exactly it. */
const rateOf = (cpu: number, mode: number) => 0.01 * (cpu + 1) * (mode + 1);

function counters(): Series[] {
  const out: Series[] = [];
  cpus.forEach((cpu, c) =>
    modes.forEach((mode, m) =>
      out.push(
        create(SeriesSchema, {
          metric: "node_cpu_seconds_total",
          labels: { cpu, mode, instance: "host-a" },
          kind: Kind.COUNTER,
          times,
          values: times.map((t) => 1000 + (rateOf(c, m) * (t - start)) / 1000),
        }),
      ),
    ),
  );
  // A classic histogram whose buckets grow by 1, 3 and 4 per second: its median is 0.3.
  for (const [le, perSecond] of [
    ["0.1", 1],
    ["0.5", 3],
    ["+Inf", 4],
  ] as const) {
    out.push(
      create(SeriesSchema, {
        metric: "latency_seconds_bucket",
        labels: { le },
        kind: Kind.HISTOGRAM,
        times,
        values: times.map((t) => (perSecond * (t - start)) / 1000),
      }),
    );
  }
  return out;
}

let viewerToken = "";

beforeAll(async () => {
  const transport = createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", interceptors: [bearer(daemon().adminToken())] });
  const pushed = await createClient(MetricsAPI, transport).push({ series: counters() });
  expect(pushed.refused).toBe(0);
  viewerToken = (await createClient(TokensAPI, transport).create({ role: Role.VIEWER, name: "grafana" })).token;
});

function auth(token = viewerToken): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

async function get(
  path: string,
  params: Record<string, string | string[]>,
  headers = auth(),
): Promise<{ status: number; body: Record<string, unknown> }> {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const value of [v].flat()) search.append(k, value);
  const res = await fetch(`${daemon().url}${path}?${search}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface VectorResult {
  resultType: string;
  result: { metric: Record<string, string>; value: [number, string] }[];
}
interface MatrixResult {
  resultType: string;
  result: { metric: Record<string, string>; values: [number, string][] }[];
}

describe("/api/v1/query", () => {
  it("answers an instant vector in Prometheus' shape, values as strings", async () => {
    const { status, body } = await get("/api/v1/query", { query: "sum(rate(node_cpu_seconds_total[5m]))", time: String(end / 1000) });
    expect(status).toBe(200);
    expect(body.status).toBe("success");
    const data = body.data as VectorResult;
    expect(data.resultType).toBe("vector");
    expect(data.result).toHaveLength(1);
    expect(data.result[0]!.metric).toEqual({});
    expect(data.result[0]!.value[0]).toBe(end / 1000);
    expect(Number(data.result[0]!.value[1])).toBeCloseTo(13.6, 9);
  });

  it("takes a form-encoded POST, and RFC 3339 times", async () => {
    const form = new URLSearchParams({ query: "histogram_quantile(0.5, rate(latency_seconds_bucket[5m]))", time: new Date(end).toISOString() });
    const res = await fetch(`${daemon().url}/api/v1/query`, {
      method: "POST",
      headers: { ...auth(), "content-type": "application/x-www-form-urlencoded" },
      body: form,
    });
    expect(res.status).toBe(200);
    const data = ((await res.json()) as { data: VectorResult }).data;
    expect(Number(data.result[0]!.value[1])).toBeCloseTo(0.3, 9);
  });

  it("refuses a form over 1 MiB with bad_data, whether it declares its length or not", async () => {
    const form = Buffer.from(`query=${"1".repeat(2 * 1024 * 1024)}`);
    const headers = { ...auth(), "content-type": "application/x-www-form-urlencoded" };
    const declared = await fetch(`${daemon().url}/api/v1/query`, { method: "POST", headers, body: form });
    const chunked = await postChunked(`${daemon().url}/api/v1/query`, headers, form);
    const refusal = { status: "error", errorType: "bad_data", error: "the form body is larger than 1048576 bytes" };
    expect([declared.status, await declared.json()]).toEqual([400, refusal]);
    expect([chunked.status, JSON.parse(chunked.text)]).toEqual([400, refusal]);
  });

  it("answers scalars and strings, with NaN and infinities as Prometheus writes them", async () => {
    const at = { time: "1700000000.5" };
    expect((await get("/api/v1/query", { query: "1/0", ...at })).body.data).toEqual({ resultType: "scalar", result: [1700000000.5, "+Inf"] });
    expect((await get("/api/v1/query", { query: "-1/0", ...at })).body.data).toEqual({ resultType: "scalar", result: [1700000000.5, "-Inf"] });
    expect((await get("/api/v1/query", { query: "0/0", ...at })).body.data).toEqual({ resultType: "scalar", result: [1700000000.5, "NaN"] });
    expect((await get("/api/v1/query", { query: "1e21 + time() - time()", ...at })).body.data).toEqual({
      resultType: "scalar",
      result: [1700000000.5, "1000000000000000000000"],
    });
    expect((await get("/api/v1/query", { query: '"text"', ...at })).body.data).toEqual({ resultType: "string", result: [1700000000.5, "text"] });
  });

  it("answers a range selector as a matrix, the metric name kept", async () => {
    const { body } = await get("/api/v1/query", { query: 'node_cpu_seconds_total{cpu="0",mode="idle"}[1m]', time: String(end / 1000) });
    const data = body.data as MatrixResult;
    expect(data.resultType).toBe("matrix");
    expect(data.result[0]!.metric).toEqual({ __name__: "node_cpu_seconds_total", cpu: "0", instance: "host-a", mode: "idle" });
    expect(data.result[0]!.values.map((v) => v[0])).toEqual([end - 45_000, end - 30_000, end - 15_000, end].map((t) => t / 1000));
  });

  it("selects metric names by regex and every matcher kind", async () => {
    const { body } = await get("/api/v1/query", {
      query: 'count({__name__=~"node_cpu_.*", mode!="idle", cpu=~"1.?", instance!~"host-[bc]"})',
      time: String(end / 1000),
    });
    // cpu 1 and 10–15, three modes each.
    expect((body.data as VectorResult).result[0]!.value[1]).toBe("21");
  });
});

describe("/api/v1/query_range", () => {
  it("evaluates at start, start + step, … end, series sorted by labels", async () => {
    const t0 = performance.now();
    const { status, body } = await get("/api/v1/query_range", {
      query: "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
      start: String((start + 300_000) / 1000),
      end: String(end / 1000),
      step: "60",
    });
    const ms = performance.now() - t0;
    expect(status).toBe(200);
    const data = body.data as MatrixResult;
    expect(data.resultType).toBe("matrix");
    expect(data.result.map((r) => r.metric.mode)).toEqual(["idle", "iowait", "system", "user"]);
    const idle = data.result[0]!;
    expect(idle.values).toHaveLength(56);
    expect(idle.values[0]![0]).toBe((start + 300_000) / 1000);
    for (const [, v] of idle.values) expect(Number(v)).toBeCloseTo(1.36, 9);
    console.log(`query_range sum by (mode) (rate(…[5m])) over 64 series, 55 min at 60 s: ${ms.toFixed(1)} ms`);
  });

  it("measures rate over 64 series for 1 h at a 15 s step", async () => {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const { body } = await get("/api/v1/query_range", {
        query: "rate(node_cpu_seconds_total[5m])",
        start: String(start / 1000),
        end: String(end / 1000),
        step: "15",
      });
      runs.push(performance.now() - t0);
      expect((body.data as MatrixResult).result).toHaveLength(64);
    }
    runs.sort((a, b) => a - b);
    console.log(
      `query_range rate(node_cpu_seconds_total[5m]), 64 series × 1 h at 15 s (241 steps): median ${runs[2]!.toFixed(1)} ms, min ${runs[0]!.toFixed(1)} ms`,
    );
  });

  it("answers a scalar expression as one series without labels", async () => {
    const { body } = await get("/api/v1/query_range", { query: "time()", start: "100", end: "130", step: "15s" });
    expect(body.data).toEqual({
      resultType: "matrix",
      result: [
        {
          metric: {},
          values: [
            [100, "100"],
            [115, "115"],
            [130, "130"],
          ],
        },
      ],
    });
  });
});

describe("metrics.API/Query with a PromQL expression", () => {
  it("answers what query_range answers at the multiples of the step", async () => {
    const query = "sum by (mode) (rate(node_cpu_seconds_total[5m]))";
    const transport = createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", interceptors: [bearer(viewerToken)] });
    const client = createClient(MetricsAPI, transport);
    const response = await client.query({
      expr: query,
      start: timestampFromMs(end - 600_000 + 1),
      end: timestampFromMs(end),
      step: durationFromMs(60_000),
    });
    const { body } = await get("/api/v1/query_range", { query, start: String((end - 600_000) / 1000), end: String(end / 1000), step: "60" });
    const viaHttp = (body.data as MatrixResult).result;
    expect(response.series.map((s) => s.labels.mode).sort()).toEqual(viaHttp.map((r) => r.metric.mode));
    for (const r of viaHttp) {
      const s = response.series.find((x) => x.labels.mode === r.metric.mode)!;
      expect(s.points.map((p) => [timestampMs(p.time!) / 1000, String(p.value)])).toEqual(r.values);
    }
    await expect(client.query({ expr: query, metric: "node_cpu_seconds_total" })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(client.query({ expr: "node_cpu_seconds_total + on(mode) node_cpu_seconds_total" })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
  });
});

describe("series, labels, label values, metadata, buildinfo", () => {
  it("lists the series of match[] selectors", async () => {
    const { body } = await get("/api/v1/series", {
      "match[]": ['node_cpu_seconds_total{cpu="3"}', "latency_seconds_bucket"],
      start: String(start / 1000),
      end: String(end / 1000),
    });
    const series = body.data as Record<string, string>[];
    expect(series).toHaveLength(4 + 3);
    expect(series).toContainEqual({ __name__: "node_cpu_seconds_total", cpu: "3", instance: "host-a", mode: "user" });
    expect(series).toContainEqual({ __name__: "latency_seconds_bucket", le: "+Inf" });
  });

  it("lists label names and values, with and without match[]", async () => {
    expect((await get("/api/v1/labels", {})).body.data).toEqual(expect.arrayContaining(["__name__", "cpu", "instance", "le", "mode"]));
    expect((await get("/api/v1/labels", { "match[]": "latency_seconds_bucket" })).body.data).toEqual(["__name__", "le"]);
    expect((await get("/api/v1/label/mode/values", {})).body.data).toEqual(["idle", "iowait", "system", "user"]);
    expect((await get("/api/v1/label/__name__/values", {})).body.data).toEqual(
      expect.arrayContaining(["latency_seconds_bucket", "node_cpu_seconds_total"]),
    );
    expect((await get("/api/v1/label/cpu/values", { "match[]": 'node_cpu_seconds_total{cpu=~"1[0-2]"}' })).body.data).toEqual(["10", "11", "12"]);
    expect(await get("/api/v1/label/cpu/values", { limit: "2" })).toMatchObject({
      body: { data: ["0", "1"], warnings: ["results truncated due to limit"] },
    });
  });

  it("gives metric families their types, and buildinfo", async () => {
    const { body } = await get("/api/v1/metadata", {});
    expect(body.data).toMatchObject({ node_cpu_seconds_total: [{ type: "counter", help: "", unit: "" }], latency_seconds: [{ type: "histogram" }] });
    const info = (await get("/api/v1/status/buildinfo", {})).body;
    expect(info).toMatchObject({ status: "success", data: { version: expect.stringMatching(/^\d+\.\d+\.\d+$/) } });
  });
});

describe("errors in Prometheus' format and status codes", () => {
  const cases: { name: string; path: string; params: Record<string, string>; status: number; type: string; message: RegExp }[] = [
    { name: "a syntax error", path: "query", params: { query: "sum(" }, status: 400, type: "bad_data", message: /parse error|unexpected/ },
    {
      name: "a subquery",
      path: "query",
      params: { query: "max_over_time(rate(x[5m])[1h:1m])" },
      status: 400,
      type: "bad_data",
      message: /subquery is not supported/,
    },
    {
      name: "an unsupported function",
      path: "query",
      params: { query: "mad_over_time(x[5m])" },
      status: 400,
      type: "bad_data",
      message: /function mad_over_time is not supported/,
    },
    { name: "the @ modifier", path: "query", params: { query: "x @ 100" }, status: 400, type: "bad_data", message: /@ modifier is not supported/ },
    { name: "a type error", path: "query", params: { query: "rate(x)" }, status: 400, type: "bad_data", message: /expected type range vector/ },
    {
      name: "a bad time",
      path: "query",
      params: { query: "1", time: "yesterday" },
      status: 400,
      type: "bad_data",
      message: /invalid parameter "time"/,
    },
    {
      name: "end before start",
      path: "query_range",
      params: { query: "1", start: "20", end: "10", step: "1" },
      status: 400,
      type: "bad_data",
      message: /end timestamp must not be before start time/,
    },
    {
      name: "a zero step",
      path: "query_range",
      params: { query: "1", start: "10", end: "20", step: "0" },
      status: 400,
      type: "bad_data",
      message: /zero or negative query resolution step/,
    },
    {
      name: "too many points",
      path: "query_range",
      params: { query: "1", start: "0", end: "100000", step: "1" },
      status: 400,
      type: "bad_data",
      message: /exceeded maximum resolution of 11,000 points/,
    },
    {
      name: "a range vector for query_range",
      path: "query_range",
      params: { query: "x[5m]", start: "0", end: "10", step: "1" },
      status: 400,
      type: "bad_data",
      message: /invalid expression type "range vector"/,
    },
    {
      name: "many-to-many matching",
      path: "query",
      params: { query: "node_cpu_seconds_total + on(mode) node_cpu_seconds_total", time: String(end / 1000) },
      status: 422,
      type: "execution",
      message: /many-to-many matching not allowed/,
    },
    { name: "series without match[]", path: "series", params: {}, status: 400, type: "bad_data", message: /no match\[\] parameter provided/ },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.status} ${c.type}`, async () => {
      const { status, body } = await get(`/api/v1/${c.path}`, c.params);
      expect(status).toBe(c.status);
      expect(body).toEqual({ status: "error", errorType: c.type, error: expect.stringMatching(c.message) });
    });
  }

  it("asks for credentials (401 with a basic challenge), refuses unknown ones, and takes the token as a basic-auth password", async () => {
    const none = await fetch(`${daemon().url}/api/v1/query?query=1`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Basic /);
    expect(await none.json()).toMatchObject({ status: "error", errorType: "unauthorized" });
    expect((await get("/api/v1/query", { query: "1" }, auth("specta_wrong"))).status).toBe(401);
    const basic = { authorization: `Basic ${Buffer.from(`grafana:${viewerToken}`).toString("base64")}` };
    expect((await get("/api/v1/query", { query: "1" }, basic)).status).toBe(200);
    expect((await get("/api/v1/query", { query: "1" }, auth(daemon().adminToken()))).status).toBe(200);
  });

  it("answers 404 for what is not an endpoint and leaves the daemon's other routes alone", async () => {
    expect((await get("/api/v1/nothing", {})).status).toBe(404);
    expect((await fetch(`${daemon().url}/health/live`)).status).toBe(200);
  });
});

const promtool = "/usr/bin/promtool";
const run = promisify(execFile);

describe.skipIf(!existsSync(promtool) && process.env.CI !== "true")("promtool as a client", () => {
  /** The server URL with the token as the basic-auth password, which Go's HTTP client sends. */
  const server = () => daemon().url.replace("http://", `http://promtool:${viewerToken}@`);

  it("runs an instant query", async () => {
    const { stdout } = await run(promtool, [
      "query",
      "instant",
      `--time=${end / 1000}`,
      server(),
      "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    ]);
    const values = Object.fromEntries([...stdout.matchAll(/\{mode="(\w+)"\} => (\S+) @\[/g)].map((m) => [m[1]!, Number(m[2])]));
    expect(Object.keys(values).sort()).toEqual(["idle", "iowait", "system", "user"]);
    expect(values.idle).toBeCloseTo(1.36, 9);
    expect(values.iowait).toBeCloseTo(5.44, 9);
  });

  it("runs a range query", async () => {
    const { stdout } = await run(promtool, [
      "query",
      "range",
      `--start=${(end - 120_000) / 1000}`,
      `--end=${end / 1000}`,
      "--step=1m",
      server(),
      'sum(rate(node_cpu_seconds_total{mode="user"}[5m]))',
    ]);
    const values = [...stdout.matchAll(/(\S+) @\[/g)].map((m) => Number(m[1]));
    expect(values).toHaveLength(3);
    for (const v of values) expect(v).toBeCloseTo(2.72, 9);
  });

  it("lists series and label values", async () => {
    const series = await run(promtool, ["query", "series", "--match=latency_seconds_bucket", server()]);
    expect(series.stdout).toContain('le="0.5"');
    const labels = await run(promtool, ["query", "labels", server(), "mode"]);
    expect(labels.stdout.split("\n").filter(Boolean)).toEqual(["idle", "iowait", "system", "user"]);
  });
});
