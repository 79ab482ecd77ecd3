/**
 * Debian's Prometheus as a real remote-write sender: it scrapes one Specta daemon's /metrics
 * every second and remote-writes what it scraped into another Specta daemon; promtool reads it
 * back from the second one, and a table of PromQL expressions is evaluated by Specta (over the
 * remote-written samples) and by Prometheus (over its own TSDB, the same scrape) at the same
 * time: they must agree within floating-point tolerance.
 *
 * Skipped (with a message) when /usr/bin/prometheus is missing, except in CI (CI=true), where it
 * fails: .ci/run installs the package.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as TokensAPI } from "../gen/tokens/tokens_pb.js";
import { freePort, tempDir, useDaemon } from "./support/daemon.js";
import { bearer } from "./support/rpc.js";

const prometheusBinary = "/usr/bin/prometheus";
const promtool = "/usr/bin/promtool";
const missing = [prometheusBinary, promtool].filter((file) => !existsSync(file));
const inCI = process.env.CI === "true";
const run = promisify(execFile);

if (missing.length > 0) {
  const message = `remote-write interop needs ${missing.join(" and ")} (Debian package prometheus; .ci/run installs it)`;
  if (inCI) throw new Error(`${message} (CI=true: not skipping)`);
  console.warn(`SKIPPED: ${message}`);
}

let prometheus: ChildProcess | undefined;
let prometheusUrl = "";
/** Calls on the scraped daemon, so that its RPC counters and histograms move while it is scraped. */
let traffic: NodeJS.Timeout | undefined;
/** The evaluation time of the comparisons: a whole second both stores have every sample up to. */
let evalTime = 0;

type Result = Map<string, number>;

/** An instant query's result (labels as sorted JSON → value) from a Prometheus HTTP API. */
async function instant(base: string, token: string | undefined, expr: string, time: number): Promise<Result> {
  const res = await fetch(`${base}/api/v1/query?${new URLSearchParams({ query: expr, time: String(time) })}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: unknown } };
  if (body.status !== "success") throw new Error(`${base}: ${expr}: ${body.error}`);
  const { resultType, result } = body.data;
  if (resultType === "scalar") return new Map([["scalar", Number((result as [number, string])[1])]]);
  return new Map(
    (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => [
      JSON.stringify(Object.entries(r.metric).sort()),
      Number(r.value[1]),
    ]),
  );
}

/** A range query's points (labels → "t=value" list) from a Prometheus HTTP API. */
async function range(base: string, token: string | undefined, expr: string, start: number, end: number): Promise<Map<string, [number, number][]>> {
  const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: "1" });
  const res = await fetch(`${base}/api/v1/query_range?${params}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = (await res.json()) as { data: { result: { metric: Record<string, string>; values: [number, string][] }[] } };
  return new Map(
    body.data.result.map((r) => [JSON.stringify(Object.entries(r.metric).sort()), r.values.map(([t, v]) => [t, Number(v)] as [number, number])]),
  );
}

function agree(a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(missing.length > 0)("Prometheus remote-writes its scrape of a Specta daemon into another", () => {
  const scraped = useDaemon();
  const receiver = useDaemon();
  const dir = tempDir("specta-prom-");

  beforeAll(async () => {
    const scrapedTransport = createConnectTransport({ baseUrl: scraped().url, httpVersion: "1.1", interceptors: [bearer(scraped().adminToken())] });
    const tokens = createClient(TokensAPI, scrapedTransport);
    traffic = setInterval(() => void tokens.whoami({}).catch(() => undefined), 100);

    const port = await freePort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    const config = join(dir.path, "prometheus.yml");
    writeFileSync(
      config,
      JSON.stringify({
        global: { scrape_interval: "1s", scrape_timeout: "900ms" },
        scrape_configs: [{ job_name: "specta", static_configs: [{ targets: [scraped().address] }] }],
        remote_write: [
          {
            url: `${receiver().url}/api/v1/write`,
            authorization: { credentials: receiver().adminToken() },
            queue_config: { batch_send_deadline: "500ms", min_backoff: "50ms", max_backoff: "500ms" },
          },
        ],
      }),
    );
    prometheus = spawn(
      prometheusBinary,
      [`--config.file=${config}`, `--storage.tsdb.path=${join(dir.path, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
      { stdio: process.env.SPECTA_TEST_PROMETHEUS_LOG ? "inherit" : "ignore" },
    );
    // Caught up when Prometheus holds ten samples of up over the last minute (ten seconds of
    // scrapes once it runs) and Specta as many, at a time a little in the past.
    const samplesOfUp = async (base: string, token?: string) => [...(await instant(base, token, "count_over_time(up[1m])", evalTime)).values()][0];
    const deadline = Date.now() + 30_000;
    let last = "";
    while (Date.now() < deadline) {
      await sleep(500);
      evalTime = Math.floor(Date.now() / 1000) - 2;
      if (prometheus.exitCode !== null) throw new Error(`Prometheus exited (${prometheus.exitCode}) before it caught up`);
      // Not listening yet is "not caught up yet": its start (TSDB, WAL) can take seconds on a loaded machine.
      const theirs = await samplesOfUp(prometheusUrl).catch(() => undefined);
      const ours = await samplesOfUp(receiver().url, receiver().adminToken());
      if (theirs !== undefined && theirs >= 10 && theirs === ours) return;
      last = `Prometheus ${theirs}, Specta ${ours}`;
    }
    throw new Error(`Specta did not receive Prometheus' samples in time (samples of up: ${last})`);
  }, 45_000);

  afterAll(async () => {
    clearInterval(traffic);
    if (prometheus && prometheus.exitCode === null) {
      prometheus.kill("SIGTERM");
      await new Promise((resolve) => prometheus!.once("exit", resolve));
    }
    dir.remove();
  });

  it("stores every series Prometheus scraped, which promtool reads back", async () => {
    const server = receiver().url.replace("http://", `http://promtool:${receiver().adminToken()}@`);
    const { stdout } = await run(promtool, ["query", "instant", `--time=${evalTime}`, server, 'up{job="specta"}']);
    expect(stdout.trim()).toBe(`up{instance="${scraped().address}", job="specta"} => 1 @[${evalTime}]`);
    const series = await run(promtool, ["query", "series", "--match=process_cpu_seconds_total", server]);
    expect(series.stdout.trim()).toBe(`{__name__="process_cpu_seconds_total", instance="${scraped().address}", job="specta"}`);
    const names = await run(promtool, ["query", "labels", server, "__name__"]);
    expect(names.stdout).toContain("specta_rpc_duration_seconds_bucket");
    const ours = await instant(receiver().url, receiver().adminToken(), 'count({job="specta"})', evalTime);
    const theirs = await instant(prometheusUrl, undefined, 'count({job="specta"})', evalTime);
    expect(ours).toEqual(theirs);
  });

  // Each expression is evaluated by both at the same time over the same samples.
  const expressions = [
    "up",
    "count_over_time(up[10s])",
    "rate(process_cpu_seconds_total[10s])",
    "irate(process_cpu_seconds_total[10s])",
    "increase(specta_rpc_requests_total[10s])",
    "sum by (procedure) (rate(specta_rpc_requests_total[10s]))",
    "histogram_quantile(0.9, sum by (le) (rate(specta_rpc_duration_seconds_bucket[10s])))",
    "sum(rate(specta_rpc_duration_seconds_count[10s])) / sum(rate(specta_rpc_requests_total[10s]))",
    "avg_over_time(nodejs_heap_size_used_bytes[10s])",
    "max_over_time(process_resident_memory_bytes[10s]) - min_over_time(process_resident_memory_bytes[10s])",
    "delta(nodejs_heap_size_used_bytes[10s])",
    "deriv(process_resident_memory_bytes[10s])",
    "predict_linear(nodejs_heap_size_used_bytes[10s], 60)",
    "stddev_over_time(nodejs_heap_size_used_bytes[10s])",
    "quantile_over_time(0.5, scrape_duration_seconds[10s])",
    "changes(process_cpu_seconds_total[10s])",
    "resets(specta_rpc_requests_total[10s])",
    "topk(3, nodejs_heap_space_size_used_bytes)",
    'count by (job) ({__name__=~"nodejs_.+"})',
    "scrape_duration_seconds > bool 0",
    "nodejs_heap_size_used_bytes offset 3s",
    'label_replace(up, "port", "$1", "instance", ".*:(.*)")',
    "absent(no_such_metric)",
    "sum without (instance) (rate(nodejs_gc_duration_seconds_sum[10s]))",
  ];

  it.each(expressions)("agrees with Prometheus on %s", async (expr) => {
    const theirs = await instant(prometheusUrl, undefined, expr, evalTime);
    const ours = await instant(receiver().url, receiver().adminToken(), expr, evalTime);
    expect(theirs.size, "an empty result proves nothing").toBeGreaterThan(0);
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [labels, value] of theirs) {
      expect(agree(ours.get(labels)!, value), `${labels}: Specta ${ours.get(labels)}, Prometheus ${value}`).toBe(true);
    }
  });

  it("agrees on range queries too", async () => {
    for (const expr of [
      "rate(process_cpu_seconds_total[5s])",
      "histogram_quantile(0.5, sum by (le) (rate(specta_rpc_duration_seconds_bucket[5s])))",
    ]) {
      const theirs = await range(prometheusUrl, undefined, expr, evalTime - 6, evalTime);
      const ours = await range(receiver().url, receiver().adminToken(), expr, evalTime - 6, evalTime);
      expect(theirs.size).toBeGreaterThan(0);
      expect([...ours.keys()]).toEqual([...theirs.keys()]);
      for (const [labels, points] of theirs) {
        const mine = ours.get(labels)!;
        expect(mine.map(([t]) => t)).toEqual(points.map(([t]) => t));
        points.forEach(([t, v], i) => expect(agree(mine[i]![1], v), `${expr} ${labels} @${t}: Specta ${mine[i]![1]}, Prometheus ${v}`).toBe(true));
      }
    }
  });
});
