/**
 * The command console: pick an agent and a diagnostic, run it (commands.API/Submit) and watch
 * its state and result arrive (commands.API/Watch). Viewers see the console but cannot run.
 * Earlier runs stay listed (console-history.ts); one still running when the page was left is
 * followed again.
 */
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { CommandSchema, Severity, State, type Command, type DiagnosticSchema } from "../../../../gen/commands/commands_pb.js";
import { describeError, isCancel } from "../api.js";
import { forgetRuns, loadRuns, maxRuns, saveRuns, type Run } from "../console-history.js";
import { h, replace } from "../dom.js";
import { formatTime } from "../format.js";
import type { Page } from "../page.js";
import { statusNames } from "../../../shared/agent-status.js";

type Values = Record<string, string | boolean>;
type DiagnosticInit = MessageInitShape<typeof DiagnosticSchema>;

interface Field {
  name: string;
  label: string;
  type: "text" | "number" | "checkbox" | "select";
  value: string | boolean;
  options?: [string, string][];
  min?: number;
  max?: number;
}

/** Each diagnostic's form and how its values become the request's Diagnostic.kind. */
const diagnostics: Record<string, { label: string; fields: Field[]; kind(v: Values): DiagnosticInit["kind"] }> = {
  ping: {
    label: "ping",
    fields: [
      { name: "host", label: "Host", type: "text", value: "127.0.0.1" },
      { name: "count", label: "Count", type: "number", value: "3", min: 1, max: 20 },
    ],
    kind: (v) => ({ case: "ping", value: { host: String(v.host), count: Number(v.count) } }),
  },
  connect: {
    label: "TCP connect",
    fields: [
      { name: "host", label: "Host", type: "text", value: "127.0.0.1" },
      { name: "port", label: "Port", type: "number", value: "22", min: 1, max: 65535 },
    ],
    kind: (v) => ({ case: "tcpConnect", value: { host: String(v.host), port: Number(v.port) } }),
  },
  diskUsage: {
    label: "disk usage",
    fields: [
      { name: "path", label: "Path", type: "text", value: "/var" },
      { name: "top", label: "Top", type: "number", value: "10", min: 1, max: 1000 },
    ],
    kind: (v) => ({ case: "diskUsage", value: { path: String(v.path), top: Number(v.top) } }),
  },
  mounts: { label: "mounts", fields: [], kind: () => ({ case: "mounts", value: {} }) },
  logs: {
    label: "logs",
    fields: [
      {
        name: "severity",
        label: "At least",
        type: "select",
        value: String(Severity.WARNING),
        options: [
          Severity.EMERGENCY,
          Severity.ALERT,
          Severity.CRITICAL,
          Severity.ERROR,
          Severity.WARNING,
          Severity.NOTICE,
          Severity.INFO,
          Severity.DEBUG,
        ].map((s) => [String(s), Severity[s].toLowerCase()]),
      },
      { name: "minutes", label: "Last minutes", type: "number", value: "60", min: 1, max: 43_200 },
      { name: "limit", label: "Limit", type: "number", value: "100", min: 1, max: 10_000 },
      { name: "unit", label: "Unit (optional)", type: "text", value: "" },
    ],
    kind: (v) => ({
      case: "logs",
      value: {
        minSeverity: Number(v.severity),
        since: timestampFromMs(Date.now() - Number(v.minutes) * 60_000),
        limit: Number(v.limit),
        unit: String(v.unit),
      },
    }),
  },
  connections: {
    label: "connections",
    fields: [
      { name: "listening", label: "Listening", type: "checkbox", value: true },
      { name: "established", label: "Established", type: "checkbox", value: false },
    ],
    kind: (v) => ({ case: "connections", value: { listening: v.listening === true, established: v.established === true } }),
  },
  traceroute: {
    label: "traceroute",
    fields: [
      { name: "host", label: "Host", type: "text", value: "127.0.0.1" },
      { name: "maxHops", label: "Max hops", type: "number", value: "15", min: 1, max: 64 },
    ],
    kind: (v) => ({ case: "traceroute", value: { host: String(v.host), maxHops: Number(v.maxHops) } }),
  },
};

const ended = new Set([State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.EXPIRED, State.CANCELLED]);

/**
 * Watch streams open at once. Over plain HTTP the browser allows six connections to the daemon
 * and each stream holds one, so the rest of the commands are followed by polling Get.
 */
const maxWatches = 3;
const pollMs = 2_000;
const stateName = (s: State) => State[s].toLowerCase();

export const consolePage: Page = (root, ctx) => {
  const isAdmin = ctx.session.role === "admin";
  const agentSelect = h("select", { name: "agent", id: "agent", required: true });
  const diagnosticSelect = h(
    "select",
    { name: "diagnostic", id: "diagnostic" },
    ...Object.entries(diagnostics).map(([key, d]) => h("option", { value: key }, d.label)),
  );
  const fields = h("div", { class: "fields" });
  const timeout = h("input", { type: "number", name: "timeout", id: "timeout", value: "30", min: 1, max: 600 });
  const run = h("button", { type: "submit", disabled: !isAdmin }, "Run");
  const message = h("p", { class: "error", role: "alert", hidden: true });
  const results = h("div", { class: "results" });
  const runs: Run[] = loadRuns(ctx.session.name);

  const drawFields = () => {
    const d = diagnostics[diagnosticSelect.value]!;
    replace(
      fields,
      ...d.fields.map((f) => {
        const id = `field-${f.name}`;
        const input =
          f.type === "select"
            ? h(
                "select",
                { name: f.name, id },
                ...(f.options ?? []).map(([value, label]) => h("option", { value, selected: value === f.value }, label)),
              )
            : h("input", {
                type: f.type,
                name: f.name,
                id,
                value: f.type === "checkbox" ? false : String(f.value),
                checked: f.type === "checkbox" && f.value === true,
                min: f.min,
                max: f.max,
              });
        return h("label", { for: id, class: f.type === "checkbox" ? "check" : "" }, f.label, input);
      }),
    );
  };
  diagnosticSelect.addEventListener("change", drawFields);
  drawFields();

  const form = h(
    "form",
    { class: "console" },
    h("label", { for: "agent" }, "Agent", agentSelect),
    h("label", { for: "diagnostic" }, "Diagnostic", diagnosticSelect),
    fields,
    h("label", { for: "timeout" }, "Timeout (s)", timeout),
    run,
  );
  const notice = isAdmin
    ? null
    : h("p", { class: "notice", role: "note" }, "Viewer tokens cannot run commands: sign in with an admin token to run diagnostics.");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!isAdmin) return;
    const values: Values = {};
    for (const element of Array.from(fields.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input, select"))) {
      values[element.name] = element instanceof HTMLInputElement && element.type === "checkbox" ? element.checked : element.value.trim();
    }
    const definition = diagnostics[diagnosticSelect.value]!;
    void submit(agentSelect.value, definition.label, { kind: definition.kind(values) }, Number(timeout.value) * 1000);
  });

  const hostnames = new Map<string, string>();
  let watches = 0;
  const submit = async (agentId: string, label: string, diagnostic: DiagnosticInit, timeoutMs: number) => {
    message.hidden = true;
    run.disabled = true;
    try {
      const { commands } = await ctx.api.commands.submit(
        { target: { case: "agent", value: agentId }, diagnostic, timeout: durationFromMs(timeoutMs) },
        { signal: ctx.signal },
      );
      run.disabled = false;
      forget.hidden = false;
      for (const submitted of commands) {
        const run: Run = {
          title: `${label} on ${hostnames.get(submitted.agentId) ?? submitted.agentId}`,
          timeline: [],
          command: create(CommandSchema, { id: submitted.commandId, agentId: submitted.agentId, state: State.QUEUED }),
        };
        runs.unshift(run);
        // Beyond the bound, the oldest panel goes with its stored run.
        runs.splice(maxRuns);
        while (results.children.length >= maxRuns) results.lastElementChild?.remove();
        void follow(run, submitted.agentOnline);
      }
    } catch (err) {
      run.disabled = false;
      message.textContent = describeError(err);
      message.hidden = false;
    }
  };

  /** One result panel, updated by Watch until the command ends; a stored run is shown as it was left, then followed if unfinished. */
  const follow = async (run: Run, online: boolean, stored = false) => {
    const commandId = run.command.id;
    const badge = h("span", { class: "state" }, "queued");
    const timeline = h("ol", { class: "timeline" });
    const body = h("div", { class: "output" });
    const panel = h(
      "article",
      { class: "result", "data-command": commandId, "data-state": "queued", "data-stored": stored },
      h("h2", {}, run.title, " ", badge),
      online ? null : h("p", { class: "notice" }, "The agent is not connected: the command waits for it until its ttl."),
      timeline,
      body,
    );
    if (stored) results.append(panel);
    else results.prepend(panel);
    for (const line of run.timeline) timeline.append(h("li", {}, line));
    const seen = new Set<string>(run.timeline.map((line) => line.split(" · ")[0]!));
    const show = (command: Command) => {
      const name = stateName(command.state);
      panel.dataset.state = name;
      badge.textContent = name;
      badge.className = `state state-${name}`;
      if (!seen.has(name)) {
        seen.add(name);
        const line = `${name} · ${command.updated ? formatTime(timestampMs(command.updated)) : ""}`;
        run.timeline.push(line);
        timeline.append(h("li", {}, line));
      }
      if (ended.has(command.state)) drawOutput(body, command);
      run.command = command;
      if (runs.includes(run)) saveRuns(ctx.session.name, runs);
    };
    if (stored) {
      show(run.command);
      if (ended.has(run.command.state)) return;
    }
    let last: Command | undefined;
    const update = (command: Command | undefined) => {
      if (!command) return;
      last = command;
      show(command);
    };
    const done = () => last !== undefined && ended.has(last.state);
    try {
      if (watches < maxWatches) {
        watches++;
        try {
          for await (const change of ctx.api.commands.watch({ commandId }, { signal: ctx.signal })) {
            update(change.command);
            if (done()) break;
          }
        } finally {
          watches--;
        }
      }
      // Polling: too many streams open, or the stream ended (a daemon restart, a proxy) before the command did.
      while (!done()) {
        await new Promise((resolve) => setTimeout(resolve, pollMs));
        if (ctx.signal.aborted) return;
        update((await ctx.api.commands.get({ commandId }, { signal: ctx.signal })).command);
      }
    } catch (err) {
      if (!isCancel(err)) body.append(h("p", { class: "error" }, `Lost the command's updates: ${describeError(err)}`));
    }
  };

  const forget = h(
    "button",
    {
      type: "button",
      class: "forget",
      hidden: runs.length === 0,
      onclick: () => {
        forgetRuns();
        runs.length = 0;
        replace(results);
        forget.hidden = true;
      },
    },
    "Clear earlier runs",
  );
  replace(root, h("div", { class: "toolbar" }, h("h1", {}, "Console"), forget), notice, form, message, results);
  for (const run of runs) void follow(run, true, true);

  void (async () => {
    try {
      const { agents } = await ctx.api.agents.list({}, { signal: ctx.signal });
      const wanted = ctx.params.get("agent");
      for (const a of agents) hostnames.set(a.id, a.host?.hostname ?? a.id);
      replace(
        agentSelect,
        ...agents.map((a) => h("option", { value: a.id, selected: a.id === wanted }, `${a.host?.hostname ?? a.id} (${statusNames[a.status]})`)),
      );
      if (agents.length === 0) {
        message.textContent = "No agent is enrolled yet.";
        message.hidden = false;
      }
    } catch (err) {
      message.textContent = describeError(err);
      message.hidden = false;
    }
  })();
};

function drawOutput(body: HTMLElement, command: Command): void {
  const output = command.output;
  replace(
    body,
    output?.error ? h("p", { class: "error" }, output.error) : null,
    output?.text ? h("pre", { class: "text" }, output.text) : null,
    output?.truncated ? h("p", { class: "muted" }, "The output was cut at the agent's cap.") : null,
    output?.data ? h("details", {}, h("summary", {}, "Structured data"), h("pre", {}, JSON.stringify(output.data, null, 2))) : null,
    !output?.error && !output?.text ? h("p", { class: "muted" }, `No output (${stateName(command.state)}).`) : null,
  );
}
