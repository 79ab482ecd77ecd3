import { toJson } from "@bufbuild/protobuf";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import {
  AlertState,
  API as AlertsAPI,
  HistoryResponseSchema,
  ListAlertsResponseSchema,
  ListRulesResponseSchema,
  RuleHealth,
  RuleSource,
  type HistoryResponse,
  type ListAlertsResponse,
  type ListRulesResponse,
} from "../../gen/alerts/alerts_pb.js";
import { alertHost, describeCondition } from "../shared/alert-text.js";
import { parseDuration } from "../shared/duration.js";
import { formatAgo } from "./agents.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { formatTable } from "./util.js";

interface AlertsFlags extends ClientFlags {
  json?: boolean;
  resolved?: string;
}

interface HistoryFlags extends ClientFlags {
  json?: boolean;
  rule?: string;
  limit?: string;
}

/** `specta alerts [rules|history]`: the command-line face of alerts.API's ListAlerts, ListRules and History. */
export function alertsCommand(program: Command): void {
  const alerts = addClientOptions(
    program
      .command("alerts")
      .description("list the firing and pending alerts with their hosts and values (alerts.API/ListAlerts)")
      .option("--resolved <duration>", "also list alerts resolved within this long, e.g. 15m")
      .option("--json", "print the ListAlertsResponse as JSON"),
  ).action((flags: AlertsFlags) =>
    runClient(flags, async (connection) => {
      const withinMs = flags.resolved === undefined ? 0 : parseDuration(flags.resolved);
      if (withinMs === undefined) throw new ClientError(`--resolved "${flags.resolved}" is not a duration such as 15m or 1h`);
      const response = await daemonClient(AlertsAPI, connection).listAlerts(
        withinMs > 0 ? { resolvedWithin: { seconds: BigInt(Math.round(withinMs / 1000)) } } : {},
      );
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListAlertsResponseSchema, response)) + "\n" : formatAlerts(response, Date.now()));
    }),
  );

  addClientOptions(
    alerts
      .command("rules")
      .description("list every alert rule (defaults, configuration file, API) with its last evaluation (alerts.API/ListRules)")
      .option("--json", "print the ListRulesResponse as JSON"),
  ).action((flags: AlertsFlags) =>
    runClient(flags, async (connection) => {
      const response = await daemonClient(AlertsAPI, connection).listRules({});
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListRulesResponseSchema, response)) + "\n" : formatRules(response));
    }),
  );

  addClientOptions(
    alerts
      .command("history")
      .description("list the alerts' state changes, newest first (alerts.API/History)")
      .option("--rule <name>", "only this rule's alerts")
      .option("--limit <n>", "at most this many changes (1 to 1000)", "100")
      .option("--json", "print the HistoryResponse as JSON"),
  ).action((flags: HistoryFlags) =>
    runClient(flags, async (connection) => {
      const limit = Number(flags.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new ClientError(`--limit must be a whole number from 1 to 1000, got "${flags.limit}"`);
      const response = await daemonClient(AlertsAPI, connection).history({ limit, ...(flags.rule ? { rule: flags.rule } : {}) });
      process.stdout.write(flags.json ? JSON.stringify(toJson(HistoryResponseSchema, response)) + "\n" : formatHistory(response, Date.now()));
    }),
  );
}

const stateName = (s: AlertState) => (AlertState[s] ?? "unknown").toLowerCase();
/** The value as people read it: at most 6 significant digits. */
const formatValue = (v: number) => String(Number(v.toPrecision(6)));

/** A table: state, alert, host, value, since when, summary. */
export function formatAlerts(response: ListAlertsResponse, nowMs: number): string {
  if (response.alerts.length === 0) return "(no alerts)\n";
  const rows = [
    ["STATE", "ALERT", "HOST", "VALUE", "SINCE", "SUMMARY"],
    ...response.alerts.map((a) => {
      const since = a.state === AlertState.FIRING ? a.firedAt : a.state === AlertState.PENDING ? a.activeSince : a.resolvedAt;
      return [
        stateName(a.state),
        a.rule,
        alertHost(a.labels),
        formatValue(a.value),
        since ? formatAgo(timestampMs(since), nowMs) : "",
        a.annotations.summary ?? "",
      ];
    }),
  ];
  return formatTable(rows);
}

/** A table: name, source, on/off, health, active alerts, for, condition, last error. */
export function formatRules(response: ListRulesResponse): string {
  const rows = [
    ["NAME", "SOURCE", "ENABLED", "HEALTH", "ACTIVE", "FOR", "CONDITION", "ERROR"],
    ...response.rules.map(({ rule, health, activeAlerts, lastError }) => [
      rule!.name,
      (RuleSource[rule!.source] ?? "").toLowerCase() + (rule!.overrides ? " (override)" : ""),
      rule!.disabled ? "no" : "yes",
      health === RuleHealth.UNSPECIFIED ? "-" : (RuleHealth[health] ?? "").toLowerCase(),
      String(activeAlerts),
      `${(rule!.pendingFor ? durationMs(rule!.pendingFor) : 0) / 1000}s`,
      describeCondition(rule!.condition),
      lastError,
    ]),
  ];
  return formatTable(rows);
}

/** A table: when, alert, host, from → to, value. */
export function formatHistory(response: HistoryResponse, nowMs: number): string {
  if (response.changes.length === 0) return "(no state changes)\n";
  const rows = [
    ["TIME", "ALERT", "HOST", "CHANGE", "VALUE"],
    ...response.changes.map((c) => [
      c.time ? `${new Date(timestampMs(c.time)).toISOString()} (${formatAgo(timestampMs(c.time), nowMs)})` : "",
      c.rule,
      alertHost(c.labels),
      `${stateName(c.from)} -> ${stateName(c.to)}`,
      formatValue(c.value),
    ]),
  ];
  return formatTable(rows);
}
