import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { API as AlertsAPI, Comparison, RuleSchema, RuleSource } from "../../../gen/alerts/alerts_pb.js";
import { Aggregation, MatchOperator } from "../../../gen/metrics/metrics_pb.js";
import { repoRoot } from "../../../test/support/daemon.js";
import { inMemoryClient, storagePerFile } from "../../../test/support/in-memory.js";
import { codeOf } from "../../../test/support/rpc.js";
import { ConfigError, resolveDaemonConfig } from "../../config/config.js";
import type { Principal } from "../../tokens/tokens.js";
import { alertsService } from "../service.js";
import type { AlertTables } from "../alerts.table.js";
import { configuredRules } from "./configured.js";

const admin: Principal = { tokenId: randomUUID(), name: "admin", role: "admin", agentId: null, agentHostname: null };
const metricRule = {
  name: "HighLoad",
  condition: { metric: "node_load1", groupBy: ["host"], comparison: Comparison.GREATER, threshold: 4 },
} satisfies MessageInitShape<typeof RuleSchema>;

describe("alerts.API's rules, in memory", () => {
  const storage = storagePerFile();
  const configured = configuredRules([{ name: "FromConfig", condition: { expr: "node_load5 > 8" }, pendingFor: "300s" }]);
  const api = () => inMemoryClient(AlertsAPI, alertsService({ db: storage().db, configuredRules: configured }), admin);
  const put = (rule: MessageInitShape<typeof RuleSchema>) => api().putRule({ rule: create(RuleSchema, rule) });
  const messageOf = async (call: Promise<unknown>) => {
    try {
      await call;
      return "ok";
    } catch (err) {
      return `${Code[ConnectError.from(err).code]}: ${ConnectError.from(err).rawMessage}`;
    }
  };

  it("lists the defaults, the configuration's and the API's rules; an override takes its rule's place until deleted", async () => {
    await put(metricRule);
    const names = async () =>
      (await api().listRules({})).rules.map((r) => `${r.rule!.name}:${RuleSource[r.rule!.source]}${r.rule!.overrides ? "*" : ""}`);
    expect(await names()).toEqual([
      "AgentOffline:DEFAULT",
      "FilesystemAlmostFull:DEFAULT",
      "MemoryLow:DEFAULT",
      "CpuBusy:DEFAULT",
      "SystemdUnitFailed:DEFAULT",
      "DatabaseUnreachable:DEFAULT",
      "FromConfig:CONFIG",
      "HighLoad:API",
    ]);
    const defaults = (await api().listRules({})).rules.map((r) => r.rule!);
    const memory = defaults.find((r) => r.name === "MemoryLow")!;
    const { rule } = await put({ ...memory, disabled: true });
    expect([rule!.disabled, RuleSource[rule!.source], rule!.overrides]).toEqual([true, "API", true]);
    await put({ name: "FromConfig", condition: { expr: "node_load5 > 16" } });
    expect((await names()).filter((n) => n.endsWith("*"))).toEqual(["MemoryLow:API*", "FromConfig:API*"]);
    await api().deleteRule({ name: "MemoryLow" });
    await api().deleteRule({ name: "FromConfig" });
    await api().deleteRule({ name: "HighLoad" });
    expect((await names()).filter((n) => n.includes("API"))).toEqual([]);
    expect((await api().listRules({})).rules.find((r) => r.rule!.name === "MemoryLow")!.rule!.disabled).toBe(false);
  });

  it("refuses to delete what is not there (NOT_FOUND) and a default or configuration rule without an override (FAILED_PRECONDITION)", async () => {
    expect(await codeOf(api().deleteRule({ name: "NoSuchRule" }))).toBe(Code.NotFound);
    expect(await messageOf(api().deleteRule({ name: "CpuBusy" }))).toBe(
      "FailedPrecondition: CpuBusy is a default rule and has no override to delete: to turn it off, PutRule it with disabled set",
    );
    expect(await codeOf(api().deleteRule({ name: "FromConfig" }))).toBe(Code.FailedPrecondition);
  });

  it("validates every part of a rule with a clear INVALID_ARGUMENT", async () => {
    const cond = metricRule.condition;
    const cases: [MessageInitShape<typeof RuleSchema>, string][] = [
      [{ ...metricRule, name: "" }, 'name "" must be 1 to 100 characters of [A-Za-z0-9_:.-]'],
      [{ ...metricRule, name: "has space" }, 'name "has space" must be 1 to 100 characters of [A-Za-z0-9_:.-]'],
      [{ ...metricRule, name: "x".repeat(101) }, `name "${"x".repeat(100)}" must be 1 to 100 characters of [A-Za-z0-9_:.-]`],
      [{ name: "A" }, "condition is required"],
      [{ name: "A", condition: {} }, "condition needs a metric (or an expr)"],
      [{ name: "A", condition: { ...cond, metric: "1bad" } }, 'condition.metric "1bad" must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$'],
      [
        { name: "A", condition: { ...cond, expr: "up == 0" } },
        "condition: expr replaces metric, matchers, aggregation, group_by, window, comparison, threshold and quantile: set either expr or those",
      ],
      [{ name: "A", condition: { expr: "up ==" } }, "condition.expr: "],
      [{ name: "A", condition: { expr: "sum(rate(x[5m])" } }, "condition.expr: "],
      [{ name: "A", condition: { expr: "1 > bool 0" } }, "condition.expr must give an instant vector (each series an alert), not a scalar"],
      [{ name: "A", condition: { ...cond, comparison: Comparison.UNSPECIFIED } }, "condition.comparison must be one of"],
      [{ name: "A", condition: { ...cond, comparison: 42 as Comparison } }, "condition.comparison must be one of"],
      [{ name: "A", condition: { ...cond, threshold: Number.NaN } }, "condition.threshold must be a finite number"],
      [{ name: "A", condition: { ...cond, aggregation: 99 as Aggregation } }, "condition.aggregation 99 is unknown"],
      [{ name: "A", condition: { ...cond, quantile: 0.5 } }, "condition.quantile is only for AGGREGATION_QUANTILE"],
      [{ name: "A", condition: { ...cond, aggregation: Aggregation.QUANTILE, quantile: 2 } }, "condition.quantile must be in [0, 1], got 2"],
      [{ name: "A", condition: { ...cond, groupBy: ["bad-label"] } }, 'condition.group_by: "bad-label" is not a label name'],
      [{ name: "A", condition: { ...cond, matchers: [{ label: "host", value: "x" }] } }, "condition.matchers: matcher on host: operator must be"],
      [
        { name: "A", condition: { ...cond, matchers: [{ label: "host", operator: MatchOperator.REGEX, value: "(" }] } },
        "condition.matchers: matcher on host: /(/ is not a usable regular expression",
      ],
      [{ name: "A", condition: { ...cond, window: { seconds: -5n } } }, "condition.window must not be negative"],
      [{ name: "A", condition: { ...cond, window: durationFromMs(10) } }, "condition.window must be at least 1s (or unset: 5m)"],
      [{ ...metricRule, pendingFor: { seconds: -1n } }, "pending_for must not be negative"],
      [{ ...metricRule, keepFiringFor: durationFromMs(8 * 86_400_000) }, "keep_firing_for must be at most 7d, got 691200 s"],
      [{ ...metricRule, labels: { alertname: "x" } }, 'labels: "alertname" is the rule\'s name and cannot be set'],
      [{ ...metricRule, labels: { "9x": "y" } }, 'labels: "9x" is not a label name'],
      [{ ...metricRule, labels: { team: "" } }, "labels.team must be 1 to 1000 characters"],
      [
        { ...metricRule, annotations: { summary: "{{ .Labels.host }}" } },
        'annotations.summary: "{{ .Labels.host }}" is not {{ $value }} or {{ $labels.<name> }}',
      ],
      [{ ...metricRule, annotations: { summary: "{{ $labels.host" } }, "annotations.summary: has an unmatched {{ or }}"],
      [{ ...metricRule, annotations: { summary: "{{ $labels.host | exec }}" } }, "annotations.summary: "],
    ];
    for (const [rule, message] of cases) {
      const got = await messageOf(put(rule));
      expect(
        got.startsWith(`InvalidArgument: ${message}`),
        `${JSON.stringify(rule, (_, v) => (typeof v === "bigint" ? String(v) : v))}: ${got}`,
      ).toBe(true);
    }
    expect(await messageOf(put({ ...metricRule, annotations: { summary: "{{$labels.host}} at {{ $value }}" } }))).toBe("ok");
  });

  it("validates the configuration file's rules as PutRule does, naming the rule; specta.example.json's are valid", () => {
    const example = resolveDaemonConfig({ config: join(repoRoot, "specta.example.json"), dataDir: "/nonexistent" }, {});
    expect(configuredRules(example.alerts.rules).map((r) => r.name)).toEqual(["QueueBacklog", "HostLoadHigh"]);
    expect([example.alerts.evaluationIntervalMs, example.alerts.ruleTimeoutMs]).toEqual([15_000, 10_000]);
    expect(() => configuredRules([{ name: "X", condition: { expr: "up >" } }])).toThrow(ConfigError);
    expect(() => configuredRules([{ name: "X", condition: { expr: "up == 0" }, pendingFor: "soon" }])).toThrow(/^alerts.rules\[0\]: /);
    expect(() => configuredRules([{ name: "CpuBusy", condition: { expr: "up == 0" } }])).toThrow(
      "alerts.rules[0]: CpuBusy is already the name of a default or an earlier rule (change a default with PutRule)",
    );
  });

  it("checks ListAlerts' matchers and History's limits", async () => {
    expect(await codeOf(api().listAlerts({ matchers: [{ label: "host", operator: MatchOperator.REGEX, value: "(" }] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(api().listAlerts({ matchers: [{ label: "", operator: MatchOperator.EQUAL, value: "x" }] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(api().history({ limit: 1001 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(api().history({ start: { seconds: 100n }, end: { seconds: 50n } }))).toBe(Code.InvalidArgument);
    expect((await api().listAlerts({})).alerts).toEqual([]);
  });

  it("marks the alerts an active silence matches, and only those", async () => {
    const now = new Date();
    const alert = (host: string) => ({
      fingerprint: `fp-${host}`,
      rule: "HighLoad",
      labels: JSON.stringify({ alertname: "HighLoad", host }),
      annotations: "{}",
      state: "firing" as const,
      value: 5,
      active_since: now,
      fired_at: now,
      resolved_at: null,
      last_evaluation: now,
      last_active: now,
    });
    await storage()
      .db.withTables<AlertTables>()
      .insertInto("alerts")
      .values([alert("web1"), alert("web2")])
      .execute();
    await api().createSilence({
      silence: {
        matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: "web1" }],
        ends: timestampFromDate(new Date(now.getTime() + 3_600_000)),
        comment: "maintenance",
      },
    });
    const silenced = Object.fromEntries((await api().listAlerts({})).alerts.map((a) => [a.labels.host, a.silenced]));
    expect(silenced).toEqual({ web1: true, web2: false });
  });
});
