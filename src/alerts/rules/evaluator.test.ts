import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { sql } from "kysely";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AlertState, API as AlertsAPI, Comparison, RuleHealth, RuleSchema } from "../../../gen/alerts/alerts_pb.js";
import { Aggregation } from "../../../gen/metrics/metrics_pb.js";
import { inMemoryClient, storagePerFile } from "../../../test/support/in-memory.js";
import { insertAgent } from "../../fleet/inventory.js";
import { lastSeenSeries } from "../../fleet/last-seen-series.js";
import { AgentLiveness } from "../../fleet/liveness.js";
import { createLogger } from "../../shared/log.js";
import { seriesKey } from "../../shared/series-key.js";
import type { Principal } from "../../tokens/tokens.js";
import { openTsdb, SeriesKind, type SeriesKindNumber, type Tsdb } from "../../tsdb/index.js";
import { alertsService } from "../service.js";
import { alertRefreshMs, evaluateCycle, type EvaluatorOptions } from "./evaluator.js";

const day = 86_400_000;
const s = 1_000;
const minute = 60_000;
const admin: Principal = { tokenId: randomUUID(), name: "admin", role: "admin", agentId: null, agentHostname: null };

describe("the alert evaluation, on the store and PostgreSQL", () => {
  const storage = storagePerFile();
  let tsdb: Tsdb;
  const log = createLogger("silent");
  const api = () => inMemoryClient(AlertsAPI, alertsService({ db: storage().db }), admin);
  const options = (extra: Partial<EvaluatorOptions> = {}): EvaluatorOptions => ({ db: storage().db, tsdb, log, configured: [], ...extra });

  /** Writes points [time, value] of one series. */
  async function write(metric: string, labels: Record<string, string>, points: [number, number][], kind: SeriesKindNumber = SeriesKind.gauge) {
    const key = seriesKey(metric, labels);
    const resolved = await tsdb.series.resolve(new Map([[key, { metric, labels, kind }]]), { unlimited: true });
    const r = resolved.get(key)!;
    if (!("id" in r)) throw new Error(r.refused);
    await tsdb.append([{ id: r.id, times: points.map((p) => p[0]), values: points.map((p) => p[1]) }]);
  }
  const every = (from: number, to: number, stepMs: number, value: (t: number) => number): [number, number][] => {
    const out: [number, number][] = [];
    for (let t = from; t <= to; t += stepMs) out.push([t, value(t)]);
    return out;
  };
  const history = async (rule: string) =>
    (await api().history({ rule })).changes.map((c) => [AlertState[c.from], AlertState[c.to], c.labels.host ?? ""]).reverse();
  const alertsOf = async (rule: string) => (await api().listAlerts({ resolvedWithin: durationFromMs(day) })).alerts.filter((a) => a.rule === rule);

  /** Turns every default rule but `keep` off, so that tests see only their own rule's alerts. */
  async function onlyDefault(keep: string) {
    for (const { rule } of (await api().listRules({})).rules) {
      if (rule!.name !== keep && rule!.source === 1) await api().putRule({ rule: create(RuleSchema, { ...rule!, disabled: true }) });
    }
  }

  beforeAll(async () => {
    tsdb = await openTsdb(storage().pool, {
      limits: { perMetric: 10_000, perAgent: 10_000 },
      retention: { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day },
      log,
    });
  });
  beforeEach(async () => {
    await sql`TRUNCATE alert_rules, alert_rule_status, alerts, alert_history`.execute(storage().db);
  });

  it("takes an alert from pending to firing after pending_for, keeps it firing for keep_firing_for, then resolves it, with one history row per change", async () => {
    await onlyDefault("");
    const t0 = Math.floor((Date.now() - 20 * minute) / s) * s;
    const rule = create(RuleSchema, {
      name: "DiskBusy",
      condition: {
        metric: "test_disk_busy",
        aggregation: Aggregation.LAST,
        groupBy: ["host"],
        window: durationFromMs(30 * s),
        comparison: Comparison.GREATER,
        threshold: 90,
      },
      pendingFor: durationFromMs(30 * s),
      keepFiringFor: durationFromMs(20 * s),
      labels: { severity: "page" },
      annotations: { summary: "{{ $labels.host }} is {{ $value }} % busy" },
    });
    await api().putRule({ rule });
    // web-1 is busy from t0 to t0+60s, quiet after; web-2 stays quiet.
    await write(
      "test_disk_busy",
      { host: "web-1" },
      every(t0 - 60 * s, t0 + 3 * minute, 5 * s, (t) => (t >= t0 && t < t0 + 60 * s ? 95.5 : 10)),
    );
    await write(
      "test_disk_busy",
      { host: "web-2" },
      every(t0 - 60 * s, t0 + 3 * minute, 5 * s, () => 10),
    );

    const states = [];
    for (let t = t0; t <= t0 + 120 * s; t += 15 * s) {
      await evaluateCycle(options(), t);
      states.push([(t - t0) / s, (await alertsOf("DiskBusy")).map((a) => AlertState[a.state]).join()]);
    }
    expect(states).toEqual([
      [0, "PENDING"],
      [15, "PENDING"],
      [30, "FIRING"],
      [45, "FIRING"],
      // Quiet from 60 s on: kept firing until 20 s after it was last active (at 45 s).
      [60, "FIRING"],
      [75, "RESOLVED"],
      [90, "RESOLVED"],
      [105, "RESOLVED"],
      [120, "RESOLVED"],
    ]);
    const [alert] = await alertsOf("DiskBusy");
    expect(alert!.labels).toEqual({ alertname: "DiskBusy", host: "web-1", severity: "page" });
    expect(alert!.annotations).toEqual({ summary: "web-1 is 95.5 % busy" });
    expect(Number(alert!.firedAt!.seconds) * 1000 - Number(alert!.activeSince!.seconds) * 1000).toBe(30 * s);
    expect(Number(alert!.resolvedAt!.seconds) * 1000).toBe(t0 + 75 * s);
    expect(await history("DiskBusy")).toEqual([
      ["INACTIVE", "PENDING", "web-1"],
      ["PENDING", "FIRING", "web-1"],
      ["FIRING", "RESOLVED", "web-1"],
    ]);
    // Active again: the same alert (fingerprint) goes back to pending.
    await write("test_disk_busy", { host: "web-1" }, [[t0 + 135 * s, 99]]);
    await evaluateCycle(options(), t0 + 135 * s);
    const again = await alertsOf("DiskBusy");
    expect(again.map((a) => [a.fingerprint, AlertState[a.state]])).toEqual([[alert!.fingerprint, "PENDING"]]);
    expect((await history("DiskBusy")).at(-1)).toEqual(["RESOLVED", "PENDING", "web-1"]);
    expect((await api().listRules({})).rules.find((r) => r.rule!.name === "DiskBusy")).toMatchObject({ health: RuleHealth.OK, activeAlerts: 1 });
  });

  it(`rewrites an alert that keeps its state only every ${alertRefreshMs / 1000} s; a daemon that takes over goes on from the rows as written`, async () => {
    await onlyDefault("");
    const t0 = Math.floor((Date.now() - 20 * minute) / s) * s;
    await api().putRule({
      rule: create(RuleSchema, {
        name: "Warm",
        condition: {
          metric: "test_warm",
          aggregation: Aggregation.LAST,
          groupBy: ["host"],
          window: durationFromMs(30 * s),
          comparison: Comparison.GREATER,
          threshold: 50,
        },
        annotations: { summary: "{{ $value }}" },
      }),
    });
    // A value that changes at every cycle.
    await write(
      "test_warm",
      { host: "w-1" },
      every(t0 - minute, t0 + 2 * minute, 5 * s, (t) => 60 + (t - t0) / s),
    );
    const row = async () =>
      (
        await sql<{ version: string; value: number; last_evaluation: Date; state: string }>`
          SELECT xmin::text AS version, value, last_evaluation, state FROM alerts WHERE rule = 'Warm'`.execute(storage().db)
      ).rows;
    await evaluateCycle(options(), t0);
    const [fired] = await row();
    expect(fired).toMatchObject({ value: 60, state: "firing" });
    for (let t = t0 + 15 * s; t < t0 + alertRefreshMs; t += 15 * s) {
      // Each cycle as a daemon of its own: nothing but the rows carries over.
      await evaluateCycle(options(), t);
      expect(await row()).toEqual([fired]);
      expect((await api().listRules({})).rules.find((r) => r.rule!.name === "Warm")!.lastEvaluation!.seconds).toBe(BigInt(t / s));
    }
    await evaluateCycle(options(), t0 + alertRefreshMs);
    expect(await row()).toEqual([
      expect.objectContaining({ value: 60 + alertRefreshMs / s, state: "firing", last_evaluation: new Date(t0 + alertRefreshMs) }),
    ]);
    expect((await alertsOf("Warm"))[0]!.annotations).toEqual({ summary: String(60 + alertRefreshMs / s) });
    expect(await history("Warm")).toEqual([["INACTIVE", "FIRING", "w-1"]]);
  });

  it("marks a failing rule as erroring and evaluates the others; its alerts keep their state", async () => {
    await onlyDefault("");
    const t0 = Math.floor((Date.now() - 10 * minute) / s) * s;
    await write(
      "test_queue_len",
      { host: "q-1" },
      every(t0 - minute, t0 + minute, 5 * s, () => 500),
    );
    const good = create(RuleSchema, {
      name: "QueueLong",
      condition: { metric: "test_queue_len", groupBy: ["host"], comparison: Comparison.GREATER, threshold: 100 },
    });
    // rate() of a gauge: metrics.API/Query refuses it, so this rule's every evaluation fails.
    const bad = create(RuleSchema, {
      name: "QueueRate",
      condition: { metric: "test_queue_len", aggregation: Aggregation.RATE, comparison: Comparison.GREATER, threshold: 1 },
    });
    await api().putRule({ rule: bad });
    await api().putRule({ rule: good });
    const result = await evaluateCycle(options(), t0);
    expect(result.errors).toBe(1);
    const rules = (await api().listRules({})).rules.filter((r) => r.rule!.name.startsWith("Queue"));
    expect(rules.map((r) => [r.rule!.name, RuleHealth[r.health], r.lastError, r.activeAlerts])).toEqual([
      ["QueueRate", "ERROR", "metric test_queue_len is a gauge: rate and increase need a counter", 0],
      ["QueueLong", "OK", "", 1],
    ]);
    // A timeout counts as a failure too; the firing alert stays firing.
    await evaluateCycle(options({ ruleTimeoutMs: 0 }), t0 + 15 * s);
    const after = (await api().listRules({})).rules.find((r) => r.rule!.name === "QueueLong")!;
    expect([RuleHealth[after.health], after.lastError, after.activeAlerts]).toEqual(["ERROR", "the evaluation took longer than 0 s", 1]);
    expect((await alertsOf("QueueLong")).map((a) => AlertState[a.state])).toEqual(["FIRING"]);
  });

  it("resolves the alerts of a rule that is disabled or deleted", async () => {
    await onlyDefault("");
    const t0 = Math.floor((Date.now() - 10 * minute) / s) * s;
    await write(
      "test_temp",
      { host: "t-1" },
      every(t0 - minute, t0 + minute, 5 * s, () => 80),
    );
    const rule = create(RuleSchema, {
      name: "Hot",
      condition: { metric: "test_temp", groupBy: ["host"], comparison: Comparison.GREATER, threshold: 70 },
    });
    await api().putRule({ rule });
    await evaluateCycle(options(), t0);
    await api().putRule({ rule: create(RuleSchema, { ...rule, disabled: true }) });
    await evaluateCycle(options(), t0 + 15 * s);
    expect((await alertsOf("Hot")).map((a) => AlertState[a.state])).toEqual(["RESOLVED"]);
    await api().putRule({ rule });
    await evaluateCycle(options(), t0 + 30 * s);
    await api().deleteRule({ name: "Hot" });
    await evaluateCycle(options(), t0 + 45 * s);
    expect(await history("Hot")).toEqual([
      ["INACTIVE", "FIRING", "t-1"],
      ["FIRING", "RESOLVED", "t-1"],
      ["RESOLVED", "FIRING", "t-1"],
      ["FIRING", "RESOLVED", "t-1"],
    ]);
  });

  describe("Specta's default rules fire on what the agents and daemons write", () => {
    /** Evaluates at each time and returns the states of the rule's alerts after the last. */
    async function cycles(rule: string, times: number[]) {
      for (const t of times) await evaluateCycle(options(), t);
      return (await alertsOf(rule)).map((a) => [a.labels.host ?? a.labels.instance, AlertState[a.state], a.annotations.summary]);
    }

    it("AgentOffline: an agent not seen for more than 2 minutes, through the fleet's last-seen series", async () => {
      await onlyDefault("AgentOffline");
      const inventory = { os: "linux", os_version: "12", kernel: "6.1", arch: "x64", cpu_model: "x", cpu_count: 2, memory_bytes: "1024" };
      const rest = { boot_time: null, labels: "{}", agent_version: "test", machine_id: null };
      const quiet = await insertAgent(storage().db, { hostname: "quiet-1", ...inventory, ...rest });
      await insertAgent(storage().db, { hostname: "busy-1", ...inventory, ...rest });
      await sql`UPDATE agents SET last_seen = now() - interval '3 minutes' WHERE id = ${quiet}`.execute(storage().db);
      await lastSeenSeries({ db: storage().db, tsdb, liveness: new AgentLiveness() }).ensure(new AbortController().signal);
      expect(await cycles("AgentOffline", [Date.now()])).toEqual([["quiet-1", "FIRING", "Agent quiet-1 is offline"]]);
    });

    it("FilesystemAlmostFull: a filesystem over 90 % used for 5 minutes", async () => {
      await onlyDefault("FilesystemAlmostFull");
      const t0 = Math.floor((Date.now() - 15 * minute) / s) * s;
      for (const [mountpoint, used] of [
        ["/", 95],
        ["/boot", 50],
      ] as const) {
        const labels = { host: "db-1", mountpoint, device: "/dev/sda1", fstype: "ext4" };
        await write(
          "node_filesystem_size_bytes",
          labels,
          every(t0 - minute, t0 + 6 * minute, 15 * s, () => 1000),
        );
        await write(
          "node_filesystem_used_bytes",
          labels,
          every(t0 - minute, t0 + 6 * minute, 15 * s, () => used * 10),
        );
      }
      expect(await cycles("FilesystemAlmostFull", [t0])).toEqual([["db-1", "PENDING", "/ on db-1 is 95 % full"]]);
      expect(await cycles("FilesystemAlmostFull", [t0 + 5 * minute])).toEqual([["db-1", "FIRING", "/ on db-1 is 95 % full"]]);
    });

    it("MemoryLow: less than 10 % of the memory available for 5 minutes", async () => {
      await onlyDefault("MemoryLow");
      const t0 = Math.floor((Date.now() - 15 * minute) / s) * s;
      await write(
        "node_memory_total_bytes",
        { host: "app-1" },
        every(t0 - minute, t0 + 6 * minute, 15 * s, () => 8e9),
      );
      await write(
        "node_memory_available_bytes",
        { host: "app-1" },
        every(t0 - minute, t0 + 6 * minute, 15 * s, () => 4e8),
      );
      expect(await cycles("MemoryLow", [t0, t0 + 5 * minute])).toEqual([["app-1", "FIRING", "app-1 has 5 % of its memory available"]]);
    });

    it("CpuBusy: CPU over 90 % busy for 10 minutes, from the all-cores counters", async () => {
      await onlyDefault("CpuBusy");
      const t0 = Math.floor((Date.now() - 25 * minute) / s) * s;
      // 2 cores: per second 1.9 s user, 0.06 s idle, 0.04 s iowait: 95 % busy.
      for (const [mode, perSecond] of [
        ["user", 1.9],
        ["idle", 0.06],
        ["iowait", 0.04],
      ] as const) {
        await write(
          "node_cpu_all_seconds_total",
          { host: "cpu-1", mode },
          every(t0 - 3 * minute, t0 + 11 * minute, 5 * s, (t) => ((t - t0 + 3 * minute) / 1000) * perSecond),
          SeriesKind.counter,
        );
      }
      expect(await cycles("CpuBusy", [t0])).toEqual([["cpu-1", "PENDING", "cpu-1's CPU has been 95 % busy for 10 minutes"]]);
      expect(await cycles("CpuBusy", [t0 + 10 * minute])).toEqual([["cpu-1", "FIRING", "cpu-1's CPU has been 95 % busy for 10 minutes"]]);
    });

    it("SystemdUnitFailed: a unit in the failed state, and resolved once it is not", async () => {
      await onlyDefault("SystemdUnitFailed");
      const t0 = Math.floor((Date.now() - 15 * minute) / s) * s;
      const state = (name: string, failedUntil: number) =>
        write(
          "node_systemd_unit_state",
          { host: "web-1", name, state: "failed" },
          every(t0 - minute, t0 + 5 * minute, 15 * s, (t) => (t < failedUntil ? 1 : 0)),
        );
      await state("nginx.service", t0 + 2 * minute);
      await state("cron.service", t0 - 10 * minute);
      expect(await cycles("SystemdUnitFailed", [t0])).toEqual([["web-1", "FIRING", "nginx.service failed on web-1"]]);
      expect(await cycles("SystemdUnitFailed", [t0 + 4 * minute])).toEqual([["web-1", "RESOLVED", "nginx.service failed on web-1"]]);
    });

    it("DatabaseUnreachable: a daemon whose /metrics says its database does not answer", async () => {
      await onlyDefault("DatabaseUnreachable");
      const t0 = Math.floor((Date.now() - 15 * minute) / s) * s;
      await write(
        "specta_database_up",
        { instance: "daemon-a:7777" },
        every(t0 - minute, t0 + 2 * minute, 15 * s, () => 0),
      );
      await write(
        "specta_database_up",
        { instance: "daemon-b:7777" },
        every(t0 - minute, t0 + 2 * minute, 15 * s, () => 1),
      );
      expect(await cycles("DatabaseUnreachable", [t0, t0 + minute])).toEqual([
        ["daemon-a:7777", "FIRING", "The Specta daemon daemon-a:7777 cannot reach its database"],
      ]);
    });
  });
});
