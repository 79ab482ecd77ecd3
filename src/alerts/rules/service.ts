import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AlertSchema,
  AlertState,
  RuleHealth,
  RuleStatusSchema,
  StateChangeSchema,
  type API as AlertsAPI,
  type Rule,
} from "../../../gen/alerts/alerts_pb.js";
import { MatchOperator, type Matcher } from "../../../gen/metrics/metrics_pb.js";
import type { MatchOp } from "../../promql/ast.js";
import { compileRegex, matchesValue } from "../../promql/regex.js";
import type { Db } from "../../storage/database.js";
import { listLimit } from "../list-limit.js";
import { activeSilences, isSilenced } from "../notifications/silences.js";
import type { AlertRow, AlertStateName } from "../alerts.table.js";
import { activeCounts, allRules, currentAlerts, deleteRule, history, putRule, ruleStatuses } from "./repository.js";
import { defaultRules, RuleError, validateRule } from "./rules.js";

export interface RuleDeps {
  db: Db;
  /** The configuration file's rules (validated at start); none when unset. */
  configuredRules?: readonly Rule[];
}

/** The methods of alerts.API served from here. */
export type RuleMethods = "listRules" | "putRule" | "deleteRule" | "listAlerts" | "history";

/** ListAlerts' resolved_within at most (resolved rows are kept 15 minutes; inactive and resolved ones older are gone). */
const maxResolvedWithinMs = 7 * 86_400_000;

const stateEnum: Record<AlertStateName, AlertState> = {
  pending: AlertState.PENDING,
  firing: AlertState.FIRING,
  resolved: AlertState.RESOLVED,
  inactive: AlertState.INACTIVE,
};
const stateOrder: Record<AlertStateName, number> = { firing: 0, pending: 1, resolved: 2, inactive: 2 };

const ops: Record<number, MatchOp> = {
  [MatchOperator.EQUAL]: "=",
  [MatchOperator.NOT_EQUAL]: "!=",
  [MatchOperator.REGEX]: "=~",
  [MatchOperator.NOT_REGEX]: "!~",
};

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

/** metrics.Matchers as PromQL's, whose matching (anchored RE2-like regexes) is reused; invalid ones are the caller's mistake. */
function labelMatchers(matchers: Matcher[]) {
  return matchers.map((m) => {
    const op = ops[m.operator];
    if (m.label === "" || !op) invalid("a matcher needs a label name and an operator (MATCH_OPERATOR_EQUAL, _NOT_EQUAL, _REGEX or _NOT_REGEX)");
    if (op === "=~" || op === "!~") {
      try {
        compileRegex(m.value);
      } catch (err) {
        invalid(`matcher on ${m.label}: ${(err as Error).message}`);
      }
    }
    return { label: m.label, op, value: m.value };
  });
}

function alertMessage(row: AlertRow) {
  return create(AlertSchema, {
    fingerprint: row.fingerprint,
    rule: row.rule,
    labels: row.labels,
    annotations: row.annotations,
    state: stateEnum[row.state],
    value: row.value,
    activeSince: timestampFromDate(row.active_since),
    ...(row.fired_at ? { firedAt: timestampFromDate(row.fired_at) } : {}),
    ...(row.resolved_at ? { resolvedAt: timestampFromDate(row.resolved_at) } : {}),
    lastEvaluation: timestampFromDate(row.last_evaluation),
  });
}

/** When a row entered its current state, for "newest first". */
const since = (row: AlertRow) => (row.state === "firing" ? row.fired_at! : row.state === "pending" ? row.active_since : row.resolved_at!).getTime();

/** alerts.API's rules, alerts and history. */
export function ruleHandlers(deps: RuleDeps): Pick<ServiceImpl<typeof AlertsAPI>, RuleMethods> {
  const { db } = deps;
  const configured = deps.configuredRules ?? [];
  return {
    async listRules() {
      const [rules, statuses, counts] = await Promise.all([allRules(db, defaultRules, configured), ruleStatuses(db), activeCounts(db)]);
      return {
        rules: rules.map((rule) => {
          const status = statuses.get(rule.name);
          return create(RuleStatusSchema, {
            rule,
            health: !status ? RuleHealth.UNSPECIFIED : status.health === "ok" ? RuleHealth.OK : RuleHealth.ERROR,
            lastError: status?.last_error ?? "",
            ...(status
              ? { lastEvaluation: timestampFromDate(status.last_evaluation), evaluationDuration: durationFromMs(Math.round(status.duration_ms)) }
              : {}),
            activeAlerts: counts.get(rule.name) ?? 0,
          });
        }),
      };
    },

    async putRule(req) {
      let rule: Rule;
      try {
        rule = validateRule(req.rule);
      } catch (err) {
        if (err instanceof RuleError) invalid(err.message);
        throw err;
      }
      await putRule(db, rule);
      const listed = (await allRules(db, defaultRules, configured)).find((r) => r.name === rule.name)!;
      return { rule: listed };
    },

    async deleteRule(req) {
      if (req.name === "") invalid("name is required");
      if (await deleteRule(db, req.name)) return {};
      const where = defaultRules.some((r) => r.name === req.name)
        ? "a default rule"
        : configured.some((r) => r.name === req.name)
          ? "a rule of the configuration file"
          : undefined;
      if (where) {
        throw new ConnectError(
          `${req.name} is ${where} and has no override to delete: to turn it off, PutRule it with disabled set`,
          Code.FailedPrecondition,
        );
      }
      throw new ConnectError(`no rule named ${req.name}`, Code.NotFound);
    },

    async listAlerts(req) {
      const matchers = labelMatchers(req.matchers);
      const withinMs = req.resolvedWithin ? durationMs(req.resolvedWithin) : 0;
      if (!(withinMs >= 0 && withinMs <= maxResolvedWithinMs)) invalid("resolved_within must be between 0 and 7d");
      const now = new Date();
      const [rows, silences] = await Promise.all([
        currentAlerts(db, withinMs > 0 ? new Date(now.getTime() - withinMs) : undefined),
        activeSilences(db, now),
      ]);
      const alerts = rows
        .filter((row) => matchers.every((m) => matchesValue(m, row.labels[m.label] ?? "")))
        .sort((a, b) => stateOrder[a.state] - stateOrder[b.state] || since(b) - since(a))
        .map((row) => {
          const alert = alertMessage(row);
          alert.silenced = isSilenced(row.labels, silences);
          return alert;
        });
      return { alerts };
    },

    async history(req) {
      const limit = listLimit(req.limit);
      const start = req.start ? timestampDate(req.start) : undefined;
      const end = req.end ? timestampDate(req.end) : undefined;
      if (start && end && start > end) invalid("start is after end");
      const rows = await history(db, {
        limit,
        ...(req.rule ? { rule: req.rule } : {}),
        ...(req.fingerprint ? { fingerprint: req.fingerprint } : {}),
        ...(start ? { start } : {}),
        ...(end ? { end } : {}),
      });
      return {
        changes: rows.map((r) =>
          create(StateChangeSchema, {
            fingerprint: r.fingerprint,
            rule: r.rule,
            labels: r.labels,
            from: stateEnum[r.from_state],
            to: stateEnum[r.to_state],
            value: r.value,
            time: timestampFromDate(r.at),
          }),
        ),
      };
    },
  };
}
