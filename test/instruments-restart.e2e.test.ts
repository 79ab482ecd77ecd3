/**
 * Issue 15, item 5: /metrics shows the instruments as the store keeps them, across a restart of
 * the daemon (a real one: `specta daemon` stopped and started again on the same database), and
 * passes `promtool check metrics` (Debian's prometheus package) without a warning.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, RestartableDaemon, tempDir, testInstruments, writeConfigFile } from "./support/daemon.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";
import { parsePrometheus, sampleValue, type PromSample } from "./support/prometheus.js";

const promtool = "/usr/bin/promtool";
const instruments = ["page_ready_duration_seconds", "jobs_done_total", "queue_depth"];

let dir: ReturnType<typeof tempDir>;
let database: TestDatabase;
let daemon: RestartableDaemon;

beforeAll(async () => {
  dir = tempDir();
  database = await createTestDatabase();
  const dataDir = join(dir.path, "data");
  mkdirSync(dataDir);
  writeConfigFile(dataDir, { instruments: testInstruments });
  daemon = new RestartableDaemon(dataDir, await freePort(), { SPECTA_DATABASE_URL: database.url, SPECTA_ENVIRONMENT: "testing" });
  await daemon.start();
}, 90_000);

afterAll(async () => {
  await daemon?.stop();
  await database?.drop();
  dir?.remove();
});

async function record(kind: "Counter" | "Gauge" | "Histogram", metric: string, number: number, labels: Record<string, string> = {}): Promise<void> {
  const res = await fetch(`${daemon.url}/metrics.API/${kind}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ action: [{ metric, labels, number }] }),
  });
  expect(await res.text()).toBe('{"result":[{"status":"success"}]}');
}

async function metricsText(): Promise<string> {
  const res = await fetch(`${daemon.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The instruments' samples on /metrics, as "name{labels} value" lines, sorted. */
function instrumentLines(samples: PromSample[]): string[] {
  return samples
    .filter((s) => instruments.some((name) => s.name.startsWith(name)))
    .map((s) => `${s.name}${JSON.stringify(Object.fromEntries(Object.entries(s.labels).sort()))} ${s.value}`)
    .sort();
}

describe("the instruments on /metrics", () => {
  it("continue from what the store holds after a restart: histograms, counters and gauges", async () => {
    await record("Histogram", "page_ready_duration_seconds", 0.3);
    await record("Histogram", "page_ready_duration_seconds", 47);
    await record("Counter", "jobs_done_total", 3, { queue: "mail", priority: "high" });
    await record("Gauge", "queue_depth", 7, { queue: "video", transport: "json" });
    const before = parsePrometheus(await metricsText());
    expect(sampleValue(before, "page_ready_duration_seconds_count", { env: "testing" })).toBe(2);

    await daemon.stop();
    await daemon.start();
    const after = parsePrometheus(await metricsText());
    expect(instrumentLines(after)).toEqual(instrumentLines(before));
    const histogram = (s: PromSample[], name: string, labels: Record<string, string> = {}) =>
      sampleValue(s, `page_ready_duration_seconds_${name}`, { env: "testing", ...labels });
    expect([histogram(after, "count"), histogram(after, "bucket", { le: "0.5" }), histogram(after, "bucket", { le: "50" })]).toEqual([2, 1, 2]);
    expect(histogram(after, "sum")).toBeCloseTo(47.3, 9);
    expect(sampleValue(after, "jobs_done_total", { env: "testing", queue: "mail", priority: "high" })).toBe(3);
    expect(sampleValue(after, "queue_depth", { env: "testing", queue: "video", transport: "json" })).toBe(7);

    // Calls after the restart add to the restored state, as they add to the stored totals.
    await record("Histogram", "page_ready_duration_seconds", 0.2);
    await record("Counter", "jobs_done_total", 2, { queue: "mail", priority: "high" });
    const later = parsePrometheus(await metricsText());
    expect([histogram(later, "count"), histogram(later, "bucket", { le: "0.25" }), histogram(later, "bucket", { le: "+Inf" })]).toEqual([3, 1, 3]);
    expect(histogram(later, "sum")).toBeCloseTo(47.5, 9);
    expect(sampleValue(later, "jobs_done_total", { env: "testing", queue: "mail", priority: "high" })).toBe(5);
  });

  it.skipIf(!existsSync(promtool) && process.env.CI !== "true")("pass promtool check metrics without a warning", async () => {
    const text = await metricsText();
    expect(text).toContain("# TYPE page_ready_duration_seconds histogram");
    const check = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
    expect({ status: check.status, stdout: check.stdout, stderr: check.stderr }).toEqual({ status: 0, stdout: "", stderr: "" });
  });
});
