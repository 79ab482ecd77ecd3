/**
 * Alerts (alerts.API): what fires and what is pending with its host and value, the silences, the
 * rules with their last evaluation, and the latest state changes. Admins add and expire
 * silences and edit, turn off and on, revert or delete rules; viewers read, and are shown no
 * control they could not use (the daemon refuses their changes anyway: src/alerts/access.ts).
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AlertState,
  ConditionSchema,
  RuleHealth,
  RuleSchema,
  RuleSource,
  type Alert,
  type Rule,
  type RuleStatus,
  type Silence,
  type StateChange,
} from "../../../../gen/alerts/alerts_pb.js";
import { MatchOperator } from "../../../../gen/metrics/metrics_pb.js";
import { alertHost, comparisonSymbols, describeCondition, matchOperatorSymbols, matcherText } from "../../../shared/alert-text.js";
import { formatDuration as formatDurationSetting, parseDuration } from "../../../shared/duration.js";
import { h, replace } from "../dom.js";
import { formatAgo, formatDuration, formatNumber, formatTime } from "../format.js";
import { isAbout } from "../firing-alerts.js";
import { every, serially, statusLine, type Page } from "../page.js";

const stateNames: Record<AlertState, string> = {
  [AlertState.UNSPECIFIED]: "unknown",
  [AlertState.PENDING]: "pending",
  [AlertState.FIRING]: "firing",
  [AlertState.RESOLVED]: "resolved",
  [AlertState.INACTIVE]: "inactive",
};

const sourceNames: Record<RuleSource, string> = {
  [RuleSource.UNSPECIFIED]: "unknown",
  [RuleSource.DEFAULT]: "default",
  [RuleSource.CONFIG]: "config",
  [RuleSource.API]: "API",
};

/** Labels every alert row shows in columns of their own; the rest are listed beside them. */
const shownApart = new Set(["alertname", "host", "instance", "severity"]);

/** How many state changes the history shows. */
const historyLimit = 50;

const operators = [MatchOperator.EQUAL, MatchOperator.NOT_EQUAL, MatchOperator.REGEX, MatchOperator.NOT_REGEX];

const ms = (t: Timestamp | undefined) => (t ? timestampMs(t) : undefined);
const labelText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .filter(([k]) => !shownApart.has(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
const matchersText = (s: Silence) => s.matchers.map(matcherText).join(", ");
const table = (kind: string) => h("table", { class: `alerts-table ${kind}` });
const heads = (...labels: (string | false)[]) =>
  h("thead", {}, h("tr", {}, ...labels.map((label) => label !== false && h("th", { scope: "col" }, label))));
/** A row that says a list is empty, across the table. */
const emptyRow = (columns: number, text: string) => h("tr", {}, h("td", { class: "empty", colspan: columns }, text));

export const alertsPage: Page = (root, ctx) => {
  const isAdmin = ctx.session.role === "admin";
  const onlyHost = ctx.params.get("host") ?? "";
  const problem = statusLine();
  const summary = h("p", { class: "summary" }, "Loading…");
  const active = table("active");
  const silences = table("silences");
  const rules = table("rules");
  const history = table("history");
  /** Hostnames of the fleet, so that an alert's host links to its page only when there is one. */
  let hostnames = new Set<string>();

  const silenceForm = isAdmin ? newSilenceForm() : null;
  const ruleForm = isAdmin ? newRuleForm() : null;

  /** An admin's change: done, then everything re-read; a refusal is shown where it was made. */
  const change = async (where: ReturnType<typeof statusLine>, work: () => Promise<unknown>): Promise<boolean> => {
    try {
      await work();
      where.clear();
      await refresh();
      return true;
    } catch (err) {
      where.show(err);
      return false;
    }
  };

  replace(
    root,
    h("div", { class: "toolbar" }, h("h1", {}, "Alerts"), summary),
    problem.element,
    h("h2", {}, "Firing and pending"),
    onlyHost && h("p", { class: "host-filter" }, `Only the alerts on ${onlyHost}. `, h("a", { href: "#/alerts" }, "Show every host's")),
    h("div", { class: "table-scroll" }, active),
    h("h2", {}, "Silences"),
    silenceForm?.element,
    h("div", { class: "table-scroll" }, silences),
    h("h2", {}, "Rules"),
    ruleForm?.element,
    h("div", { class: "table-scroll" }, rules),
    h("h2", {}, `History (the latest ${historyLimit} changes)`),
    h("div", { class: "table-scroll" }, history),
  );

  const drawActive = (alerts: Alert[]) => {
    const shown = onlyHost ? alerts.filter((a) => isAbout(a, onlyHost)) : alerts;
    const firing = alerts.filter((a) => a.state === AlertState.FIRING).length;
    summary.textContent = `${firing} firing, ${alerts.length - firing} pending`;
    const now = Date.now();
    replace(
      active,
      heads("State", "Alert", "Host", "Labels", "Value", "Since", "Severity", "Summary", isAdmin && ""),
      h(
        "tbody",
        {},
        shown.length === 0 && emptyRow(isAdmin ? 9 : 8, onlyHost ? `No alert fires or is pending on ${onlyHost}.` : "No alert fires or is pending."),
        ...shown.map((a) => {
          const state = stateNames[a.state];
          const host = alertHost(a.labels);
          const since = ms(a.state === AlertState.FIRING ? a.firedAt : a.activeSince);
          return h(
            "tr",
            { "data-fingerprint": a.fingerprint, "data-state": state },
            h(
              "td",
              { "data-column": "state" },
              h("span", { class: `state state-${state}` }, state),
              a.silenced && h("span", { class: "state state-silenced", title: "a silence matches it: it is not notified" }, "silenced"),
            ),
            h("td", { "data-column": "alert" }, a.rule),
            h("td", { "data-column": "host" }, hostnames.has(host) ? h("a", { href: `#/hosts/${encodeURIComponent(host)}` }, host) : host || "–"),
            h("td", { "data-column": "labels", class: "muted" }, labelText(a.labels)),
            h("td", { "data-column": "value", class: "number" }, formatNumber(a.value)),
            h(
              "td",
              { "data-column": "since", title: since === undefined ? false : formatTime(since) },
              since === undefined ? "–" : formatAgo(since, now),
            ),
            h("td", { "data-column": "severity" }, a.labels.severity ?? "–"),
            h("td", { "data-column": "summary", class: "wrap" }, a.annotations.summary ?? ""),
            silenceForm && h("td", {}, h("button", { type: "button", class: "silence-alert", onclick: () => silenceForm.prefill(a) }, "Silence")),
          );
        }),
      ),
    );
  };

  const drawSilences = (list: Silence[]) => {
    const now = Date.now();
    replace(
      silences,
      heads("Matchers", "State", "Ends", "Comment", "Created by", isAdmin && ""),
      h(
        "tbody",
        {},
        list.length === 0 && emptyRow(isAdmin ? 6 : 5, "No silence is in force or due to start."),
        ...list.map((s) => {
          const starts = ms(s.starts) ?? 0;
          const ends = ms(s.ends) ?? 0;
          const state = starts > now ? "pending" : ends > now ? "active" : "expired";
          const expire = statusLine();
          return h(
            "tr",
            { "data-silence": s.id, "data-state": state },
            h("td", {}, h("code", {}, matchersText(s))),
            h("td", { title: starts > now ? `starts ${formatTime(starts)}` : false }, state),
            h("td", { title: formatTime(ends) }, ends > now ? `in ${formatDuration(ends - now)}` : formatAgo(ends, now)),
            h("td", { class: "wrap" }, s.comment),
            h("td", {}, s.createdBy),
            isAdmin &&
              h(
                "td",
                {},
                state !== "expired" &&
                  h(
                    "button",
                    {
                      type: "button",
                      class: "expire",
                      onclick: () => void change(expire, () => ctx.api.alerts.expireSilence({ id: s.id }, { signal: ctx.signal })),
                    },
                    "Expire",
                  ),
                expire.element,
              ),
          );
        }),
      ),
    );
  };

  /** The rules as last listed, by name: what the rule form saves its two fields onto. */
  const listedRules = new Map<string, Rule>();
  const drawRules = (list: RuleStatus[]) => {
    listedRules.clear();
    for (const { rule } of list) if (rule) listedRules.set(rule.name, rule);
    replace(
      rules,
      heads("Rule", "Source", "State", "Health", "Active", "For", "Condition", isAdmin && ""),
      h(
        "tbody",
        {},
        ...list.map(({ rule, health, lastError, lastEvaluation, activeAlerts }) => {
          if (!rule) return null;
          const evaluated = ms(lastEvaluation);
          const failed = statusLine();
          const put = (changed: Rule) => change(failed, () => ctx.api.alerts.putRule({ rule: changed }, { signal: ctx.signal }));
          return h(
            "tr",
            { "data-rule": rule.name, "data-disabled": String(rule.disabled), "data-health": health === RuleHealth.ERROR ? "error" : "ok" },
            h("td", {}, rule.name),
            h("td", {}, sourceNames[rule.source], rule.overrides && h("span", { class: "muted" }, " (overrides)")),
            h("td", {}, rule.disabled ? h("span", { class: "muted" }, "disabled") : "enabled"),
            h(
              "td",
              { class: "wrap", title: evaluated === undefined ? false : `evaluated ${formatAgo(evaluated)}` },
              health === RuleHealth.ERROR
                ? h("span", { class: "error" }, `error: ${lastError}`)
                : health === RuleHealth.OK
                  ? "ok"
                  : h("span", { class: "muted" }, "not evaluated yet"),
            ),
            h("td", { class: "number" }, activeAlerts),
            h("td", {}, rule.pendingFor ? formatDurationSetting(durationMs(rule.pendingFor)) : "–"),
            h("td", { class: "wrap" }, h("code", {}, describeCondition(rule.condition))),
            ruleForm &&
              h(
                "td",
                { class: "actions" },
                h("button", { type: "button", class: "edit-rule", onclick: () => ruleForm.edit(rule) }, "Edit"),
                h(
                  "button",
                  { type: "button", class: "toggle-rule", onclick: () => void put(create(RuleSchema, { ...rule, disabled: !rule.disabled })) },
                  rule.disabled ? "Enable" : "Disable",
                ),
                // An override goes, bringing its default or configuration rule back; an API rule is deleted.
                rule.source === RuleSource.API &&
                  h(
                    "button",
                    {
                      type: "button",
                      class: rule.overrides ? "revert-rule" : "remove delete-rule",
                      onclick: () => {
                        if (!rule.overrides && !confirm(`Delete the rule ${rule.name}? Its alerts resolve.`)) return;
                        void change(failed, () => ctx.api.alerts.deleteRule({ name: rule.name }, { signal: ctx.signal }));
                      },
                    },
                    rule.overrides ? "Revert" : "Delete",
                  ),
                failed.element,
              ),
          );
        }),
      ),
    );
  };

  const drawHistory = (changes: StateChange[]) => {
    const now = Date.now();
    replace(
      history,
      heads("When", "Alert", "Host", "Change", "Value"),
      h(
        "tbody",
        {},
        changes.length === 0 && emptyRow(5, "No alert has changed state yet."),
        ...changes.map((c) => {
          const when = ms(c.time) ?? 0;
          return h(
            "tr",
            {},
            h("td", { title: formatTime(when) }, formatAgo(when, now)),
            h("td", {}, c.rule),
            h("td", {}, alertHost(c.labels) || "–"),
            h("td", {}, `${stateNames[c.from]} → `, h("span", { class: `state state-${stateNames[c.to]}` }, stateNames[c.to])),
            h("td", { class: "number" }, formatNumber(c.value)),
          );
        }),
      ),
    );
  };

  const refresh = serially(async () => {
    try {
      const options = { signal: ctx.signal };
      const [alerts, silenced, ruleList, changes, agents] = await Promise.all([
        ctx.api.alerts.listAlerts({}, options),
        ctx.api.alerts.listSilences({}, options),
        ctx.api.alerts.listRules({}, options),
        ctx.api.alerts.history({ limit: historyLimit }, options),
        ctx.api.agents.list({}, options),
      ]);
      hostnames = new Set(agents.agents.map((a) => a.host?.hostname ?? ""));
      drawActive(alerts.alerts);
      drawSilences(silenced.silences);
      drawRules(ruleList.rules);
      drawHistory(changes.changes);
      problem.clear();
    } catch (err) {
      problem.show(err);
    }
  });
  every(10_000, ctx.signal, refresh);

  /** The admin's form for a new silence: matchers (label, operator, value), how long, and why. */
  function newSilenceForm() {
    const matchers = h("div", { class: "matchers" });
    /** Each matcher's row and how to read it. */
    let rows: { element: HTMLElement; read(): { label: string; operator: MatchOperator; value: string } }[] = [];
    const addMatcher = (label = "", operator = MatchOperator.EQUAL, value = "") => {
      const labelInput = h("input", {
        name: "label",
        "aria-label": "label",
        placeholder: "label",
        value: label,
        required: true,
        pattern: "[a-zA-Z_][a-zA-Z0-9_]*",
      });
      const operatorSelect = h(
        "select",
        { name: "operator", "aria-label": "operator" },
        ...operators.map((o) => h("option", { selected: o === operator }, matchOperatorSymbols[o])),
      );
      const valueInput = h("input", { name: "value", "aria-label": "value", placeholder: "value", value });
      const row = {
        element: h("div", { class: "matcher" }, labelInput, operatorSelect, valueInput),
        read: () => ({
          label: labelInput.value.trim(),
          operator: operators[operatorSelect.selectedIndex] ?? MatchOperator.EQUAL,
          value: valueInput.value,
        }),
      };
      const remove = () => {
        if (rows.length === 1) return; // a silence needs a matcher
        rows = rows.filter((r) => r !== row);
        row.element.remove();
      };
      row.element.append(h("button", { type: "button", "aria-label": "remove this matcher", onclick: remove }, "×"));
      rows.push(row);
      matchers.append(row.element);
    };
    const lasting = h("input", { name: "for", id: "silence-for", value: "1h", required: true, size: 6 });
    const comment = h("input", { name: "comment", id: "silence-comment", required: true, maxlength: 500, placeholder: "why, for people" });
    const failed = statusLine();
    const element = h(
      "form",
      { class: "silence-form" },
      h("span", { class: "muted" }, "Silence the alerts whose labels match all of:"),
      matchers,
      h(
        "div",
        { class: "fields" },
        h("button", { type: "button", onclick: () => addMatcher() }, "Add a matcher"),
        h("label", { for: "silence-for" }, "For (e.g. 30m, 2h, 1d)", lasting),
        h("label", { for: "silence-comment", class: "grow" }, "Comment", comment),
        h("button", { type: "submit" }, "Add silence"),
      ),
      failed.element,
    );
    addMatcher("alertname");
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      const forMs = parseDuration(lasting.value);
      if (forMs === undefined || forMs <= 0) {
        failed.show(new Error(`"${lasting.value}" is not a duration such as 30m, 2h or 1d`));
        return;
      }
      const now = Date.now();
      const silence = {
        matchers: rows.map((row) => row.read()),
        starts: timestampFromMs(now),
        ends: timestampFromMs(now + forMs),
        comment: comment.value.trim(),
      };
      void change(failed, () => ctx.api.alerts.createSilence({ silence }, { signal: ctx.signal })).then((done) => {
        if (done) comment.value = "";
      });
    });
    return {
      element,
      /** Fills the matchers in from an alert (its name and host), for the admin to say why. */
      prefill(alert: Alert) {
        matchers.replaceChildren();
        rows = [];
        addMatcher("alertname", MatchOperator.EQUAL, alert.rule);
        for (const label of ["host", "instance"]) if (alert.labels[label] !== undefined) addMatcher(label, MatchOperator.EQUAL, alert.labels[label]);
        comment.focus();
      },
    };
  }

  /**
   * The admin's form for a rule's threshold (or expression) and pending time. Saved with
   * PutRule: on a default or configuration rule that makes an override, which Revert removes.
   */
  function newRuleForm() {
    const title = h("h3", {});
    const fields = h("div", { class: "fields" });
    const failed = statusLine();
    /** The rule the form's fields make of the one being edited (or why they make none); unset while closed. */
    let readRule: (() => Rule | Error) | undefined;
    const element = h("form", { class: "rule-form", hidden: true }, title, fields, failed.element);
    const close = () => {
      element.hidden = true;
      readRule = undefined;
      failed.clear();
    };
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      const rule = readRule?.();
      if (!rule) return;
      if (rule instanceof Error) {
        failed.show(rule);
        return;
      }
      void change(failed, () => ctx.api.alerts.putRule({ rule }, { signal: ctx.signal })).then((done) => done && close());
    });
    return {
      element,
      edit(rule: Rule) {
        failed.clear();
        title.textContent = `Edit ${rule.name}${rule.source === RuleSource.API ? "" : ` (saved as an override of its ${sourceNames[rule.source]} rule)`}`;
        const condition = create(ConditionSchema, rule.condition);
        // A PromQL condition holds its threshold in its expression; a metric condition has its own.
        const conditionInput = condition.expr
          ? h("input", { name: "expr", value: condition.expr, required: true })
          : h("input", { name: "threshold", type: "number", step: "any", value: condition.threshold, required: true });
        const pendingInput = h("input", {
          name: "pendingFor",
          value: rule.pendingFor ? formatDurationSetting(durationMs(rule.pendingFor)) : "",
          size: 8,
        });
        readRule = () => {
          const pendingMs = pendingInput.value.trim() === "" ? 0 : parseDuration(pendingInput.value);
          if (pendingMs === undefined) return new Error(`"${pendingInput.value}" is not a duration such as 30s, 5m or 1h`);
          const changed = condition.expr
            ? create(ConditionSchema, { ...condition, expr: conditionInput.value.trim() })
            : create(ConditionSchema, { ...condition, threshold: conditionInput.valueAsNumber });
          // Onto the rule as listed now, so that a Disable or Enable clicked while the form was open stays.
          const current = listedRules.get(rule.name) ?? rule;
          return create(RuleSchema, { ...current, condition: changed, pendingFor: pendingMs > 0 ? durationFromMs(pendingMs) : undefined });
        };
        replace(
          fields,
          condition.expr
            ? h("label", { class: "grow" }, "Expression (PromQL; each series it returns is an alert)", conditionInput)
            : h("label", {}, `Threshold (value ${comparisonSymbols[condition.comparison]} threshold)`, conditionInput),
          h("label", {}, "Pending for (empty: fires at once)", pendingInput),
          h("button", { type: "submit" }, "Save"),
          h("button", { type: "button", onclick: close }, "Cancel"),
        );
        element.hidden = false;
        element.scrollIntoView({ block: "nearest" });
      },
    };
  }
};
