/**
 * `specta query` and `specta metrics` as a user runs them: the built CLI (`npm run build`
 * first; `npm test` does it) in a child process, against a real daemon on a real PostgreSQL.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as MetricsAPI, Kind, ListResponseSchema, MetricInfoSchema, SeriesSchema } from "../../gen/metrics/metrics_pb.js";
import { repoRoot, runSpecta } from "../../test/support/daemon.js";
import { bearer } from "../../test/support/rpc.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { resolveDaemonConfig } from "../config/config.js";
import { createLogger } from "../shared/log.js";
import { startDaemon, type RunningDaemon } from "../server/daemon.js";
import { formatLabelValue, formatMetrics } from "./query.js";

const minute = 60_000;
const hour = 60 * minute;
// The samples lie in the hour that starts 3 to 4 hours ago.
const t0 = Math.floor((Date.now() - 3 * hour) / hour) * hour;
const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z");

beforeAll(() => {
  if (!existsSync(join(repoRoot, "dist", "src", "cli", "query.js"))) {
    throw new Error("dist/ lacks the query command: run `npm run build` before these tests (`npm test` does it)");
  }
});

describe.each(testServers())("specta query and specta metrics on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: RunningDaemon;
  let dataDir: string;
  /** The flags that point the CLI at the test daemon; the token comes from the data directory. */
  let at: string[];

  beforeAll(async () => {
    database = await createTestDatabase(server);
    dataDir = mkdtempSync(join(tmpdir(), "specta-cli-query-"));
    chmodSync(dataDir, 0o711);
    daemon = await startDaemon(resolveDaemonConfig({ addr: "127.0.0.1:0", dataDir, databaseUrl: database.url }, {}), createLogger("silent"));
    at = ["--server", daemon.url, "--data-dir", dataDir];

    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const client = createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
    const gauge = (host: string, points: [number, number][]) =>
      create(SeriesSchema, {
        metric: "test_cpu_usage",
        kind: Kind.GAUGE,
        labels: { host, dc: "x" },
        times: points.map(([s]) => t0 + s * 1000),
        values: points.map(([, v]) => v),
      });
    await client.push({
      series: [
        gauge("a", [
          [0, 1],
          [20, 3],
          [60, 5],
          [80, 7],
        ]),
        gauge("b", [
          [10, 10],
          [70, 20.25],
        ]),
      ],
    });
  });

  afterAll(async () => {
    await daemon?.stop();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const range = () => ["--since", iso(t0), "--until", iso(t0 + 119_000), "--step", "1m"];

  it("prints one block per series: its labels, then time and value rows", async () => {
    const run = await runSpecta(["query", "test_cpu_usage", ...range(), ...at]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `{dc="x", host="a"}\n  ${iso(t0)}  2\n  ${iso(t0 + minute)}  6\n\n` + `{dc="x", host="b"}\n  ${iso(t0)}  10\n  ${iso(t0 + minute)}  20.25\n`,
    );
  });

  it("prints the QueryResponse as JSON with --json, with matchers, aggregation and grouping", async () => {
    const run = await runSpecta([
      "query",
      "test_cpu_usage",
      "--match",
      "host=~a|b",
      "--match",
      "dc!=y",
      "--agg",
      "max",
      "--by",
      "dc",
      "--json",
      ...range(),
      ...at,
    ]);
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual({
      series: [
        {
          labels: { dc: "x" },
          points: [
            { time: iso(t0), value: 10 },
            { time: iso(t0 + minute), value: 20.25 },
          ],
        },
      ],
      step: "60s",
    });
    const one = await runSpecta(["query", "test_cpu_usage", "--match", "host!~a", "--agg", "count", "--json", ...range(), ...at]);
    expect(JSON.parse(one.stdout).series).toEqual([
      {
        labels: { dc: "x", host: "b" },
        points: [
          { time: iso(t0), value: 1 },
          { time: iso(t0 + minute), value: 1 },
        ],
      },
    ]);
  });

  it("evaluates a PromQL expression at each multiple of the step, as Prometheus' query_range", async () => {
    const run = await runSpecta(["query", "max by (dc) (test_cpu_usage)", ...range(), ...at]);
    expect(run.stderr).toBe("");
    // At t0 only host a has a sample within the 5-minute lookback; a minute later a has 5, b 10.
    expect(run.stdout).toBe(`{dc="x"}\n  ${iso(t0)}  1\n  ${iso(t0 + minute)}  10\n`);
    const bare = await runSpecta(["query", "test_cpu_usage", "--promql", "--json", ...range(), ...at]);
    expect(JSON.parse(bare.stdout).series[0]).toEqual({
      labels: { __name__: "test_cpu_usage", dc: "x", host: "a" },
      points: [
        { time: iso(t0), value: 1 },
        { time: iso(t0 + minute), value: 5 },
      ],
    });
  });

  it("refuses metric flags with an expression, and constructs Specta does not evaluate", async () => {
    const flags = await runSpecta(["query", "rate(test_cpu_usage[5m])", "--agg", "max", ...at]);
    expect(flags).toEqual({
      code: 1,
      stdout: "",
      stderr: "specta: --agg applies to a metric, not to a PromQL expression: write it in the expression\n",
    });
    const subquery = await runSpecta(["query", "max_over_time(test_cpu_usage[10m:1m])", ...at]);
    expect(subquery.code).toBe(1);
    expect(subquery.stderr).toMatch(/^specta: invalid_argument: a subquery is not supported by Specta/);
  });

  it("takes --since and --until as durations ago, and says so when nothing matches", async () => {
    const run = await runSpecta(["query", "test_cpu_usage", "--since", "30m", "--until", "1m", ...at]);
    expect(run).toEqual({ code: 0, stdout: "(no data)\n", stderr: "" });
    const json = await runSpecta(["query", "test_cpu_usage", "--since", "30m", "--json", ...at]);
    expect(JSON.parse(json.stdout)).toEqual({ step: "15s" });
  });

  it("lists metrics as a table and as JSON", async () => {
    const table = await runSpecta(["metrics", "--prefix", "test_", ...at]);
    expect(table).toEqual({
      code: 0,
      stdout: "NAME            KIND   SERIES  LABELS\ntest_cpu_usage  gauge  2       dc=x host=a,b\n",
      stderr: "",
    });
    const json = await runSpecta(["metrics", "--prefix", "test_", "--json", ...at]);
    expect(JSON.parse(json.stdout)).toEqual({
      metrics: [
        {
          name: "test_cpu_usage",
          kind: "KIND_GAUGE",
          series: "2",
          labels: [
            { key: "dc", values: ["x"] },
            { key: "host", values: ["a", "b"] },
          ],
        },
      ],
    });
  });

  it("finds the server, the token and the data directory in SPECTA_SERVER, SPECTA_TOKEN and SPECTA_DATA_DIR", async () => {
    const fromDataDir = await runSpecta(["metrics", "--prefix", "test_"], { SPECTA_SERVER: daemon.url, SPECTA_DATA_DIR: dataDir });
    expect(fromDataDir.stdout).toMatch(/^test_cpu_usage +gauge +2 /m);
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const fromToken = await runSpecta(["metrics", "--prefix", "test_"], {
      SPECTA_SERVER: daemon.url,
      SPECTA_TOKEN: token,
      SPECTA_DATA_DIR: "/nonexistent",
    });
    expect(fromToken.stdout).toBe(fromDataDir.stdout);
  });

  it("reports errors as one line and exits 1", async () => {
    const badToken = await runSpecta(["metrics", "--server", daemon.url], { SPECTA_TOKEN: "wrong" });
    expect(badToken).toEqual({
      code: 1,
      stdout: "",
      stderr: "specta: unauthenticated: the credential is unknown or revoked (token from SPECTA_TOKEN)\n",
    });
    const noToken = await runSpecta(["metrics", "--server", daemon.url, "--data-dir", "/nonexistent"]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toBe(
      "specta: unauthenticated: metrics.API/List needs a credential: send 'Authorization: Bearer <token>' " +
        "(no --token or SPECTA_TOKEN given, and no readable admin token at /nonexistent/admin.token)\n",
    );
    const unreachable = await runSpecta(["query", "test_cpu_usage", "--server", "http://127.0.0.1:1", "--token", "t"]);
    expect(unreachable).toEqual({
      code: 1,
      stdout: "",
      stderr: "specta: unavailable: cannot reach the daemon at http://127.0.0.1:1: is it running?\n",
    });
    const badRegex = await runSpecta(["query", "test_cpu_usage", "--match", "host=~(", ...at]);
    expect(badRegex.code).toBe(1);
    expect(badRegex.stderr).toMatch(/^specta: invalid_argument: matcher host=~"\(": .*regular expression.*\n$/);
    const badQuantile = await runSpecta(["query", "test_cpu_usage", "--quantile", "2", ...at]);
    expect(badQuantile).toEqual({ code: 1, stdout: "", stderr: "specta: invalid_argument: quantile must be in [0, 1], got 2\n" });
    const badMatcher = await runSpecta(["query", "test_cpu_usage", "--match", "host~a", ...at]);
    expect(badMatcher).toEqual({
      code: 1,
      stdout: "",
      stderr: 'specta: --match "host~a" is not label=value, label!=value, label=~regex or label!~regex\n',
    });
    const badWhen = await runSpecta(["query", "test_cpu_usage", "--since", "yesterday", ...at]);
    expect(badWhen.stderr).toMatch(/^specta: --since "yesterday" is neither a duration ago/);
  });
});

describe("specta metrics: the table", () => {
  const info = (name: string, kind: Kind, series: number, labels: [string, string[]][]) =>
    create(MetricInfoSchema, { name, kind, series: BigInt(series), labels: labels.map(([key, values]) => ({ key, values })) });

  it("shows a histogram as one instrument: its _bucket, _sum and _count series in one row", () => {
    const response = create(ListResponseSchema, {
      metrics: [
        info("http_requests_total", Kind.COUNTER, 2, [["code", ["200", "500"]]]),
        info("page_ready_duration_seconds_bucket", Kind.HISTOGRAM, 24, [
          ["env", ["development"]],
          ["le", ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]],
          ["page", ["home", "cart"]],
        ]),
        info("page_ready_duration_seconds_count", Kind.HISTOGRAM, 2, [
          ["env", ["development"]],
          ["page", ["home", "cart"]],
        ]),
        info("page_ready_duration_seconds_sum", Kind.HISTOGRAM, 2, [
          ["env", ["development"]],
          ["page", ["home", "cart"]],
        ]),
        info("room_temperature_celsius", Kind.GAUGE, 1, [["room", ["lab"]]]),
      ],
    });
    expect(formatMetrics(response)).toBe(
      [
        "NAME                         KIND       SERIES  LABELS",
        "http_requests_total          counter    2       code=200,500",
        "page_ready_duration_seconds  histogram  2       env=development page=home,cart le=(12 values)",
        "room_temperature_celsius     gauge      1       room=lab",
        "",
      ].join("\n"),
    );
  });

  it("quotes label values that hold commas, spaces, quotes or nothing", () => {
    const response = create(ListResponseSchema, {
      metrics: [info("x", Kind.GAUGE, 2, [["path", ["/a,b", "/c d"]]])],
    });
    expect(formatMetrics(response)).toBe('NAME  KIND   SERIES  LABELS\nx     gauge  2       path="/a,b","/c d"\n');
    expect(["plain", "a,b", "a b", "", 'q"', "k=v"].map(formatLabelValue)).toEqual(["plain", '"a,b"', '"a b"', '""', '"q\\""', '"k=v"']);
  });
});
