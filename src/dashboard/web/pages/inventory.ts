/** The fleet: every agent with its status, its firing alerts and, at a glance, CPU, memory, fullest disk and uptime. */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Agent, Host } from "../../../../gen/agent/agent_pb.js";
import type { Alert } from "../../../../gen/alerts/alerts_pb.js";
import { statusNames } from "../../../shared/agent-status.js";
import { h, replace } from "../dom.js";
import { firingAlerts, firingBadge, isAbout } from "../firing-alerts.js";
import { formatAgo, formatBytes, formatDuration, formatPercent, plural } from "../format.js";
import { every, statusLine, type Page } from "../page.js";
import { fleetFigures, type HostFigures } from "../queries.js";

/** "Debian GNU/Linux 12". */
export const osText = (host: Host | undefined) => [host?.os, host?.osVersion].filter(Boolean).join(" ") || "–";

interface Row {
  agent: Agent;
  hostname: string;
  status: string;
  /** The alerts firing on the host. */
  firing: Alert[];
  figures: HostFigures;
  memory?: number;
  uptimeMs?: number;
  lastSeenMs?: number;
}

type Column = { key: string; label: string; value: (r: Row) => string | number | undefined; cell: (r: Row) => Node | string };

/** A share as a bar with its figure; red from 90 %. */
function meter(share: number | undefined, detail = ""): Node {
  if (share === undefined) return h("span", { class: "muted" }, "–");
  const bar = h("span", { class: "fill" });
  bar.style.width = `${Math.min(100, Math.max(0, share * 100)).toFixed(1)}%`;
  return h(
    "span",
    { class: `meter${share >= 0.9 ? " high" : ""}`, title: detail },
    h("span", { class: "bar" }, bar),
    h("span", {}, formatPercent(share)),
  );
}

const columns: Column[] = [
  {
    key: "hostname",
    label: "Host",
    value: (r) => r.hostname,
    // The alerts' mark beside the name: on phones, the hidden columns must not take it along.
    cell: (r) =>
      h("span", { class: "host-cell" }, h("a", { href: `#/hosts/${encodeURIComponent(r.agent.id)}` }, r.hostname), firingBadge(r.firing, r.hostname)),
  },
  { key: "status", label: "Status", value: (r) => r.status, cell: (r) => h("span", { class: `status status-${r.status}` }, r.status) },
  { key: "os", label: "OS", value: (r) => osText(r.agent.host), cell: (r) => `${osText(r.agent.host)} · ${r.agent.host?.arch ?? ""}` },
  { key: "uptime", label: "Uptime", value: (r) => r.uptimeMs, cell: (r) => (r.uptimeMs === undefined ? "–" : formatDuration(r.uptimeMs)) },
  {
    key: "cpu",
    label: "CPU",
    value: (r) => r.figures.cpu,
    cell: (r) => meter(r.figures.cpu, `${r.agent.host?.cpuCount ?? "?"} × ${r.agent.host?.cpuModel ?? ""}`),
  },
  {
    key: "memory",
    label: "Memory",
    value: (r) => r.memory,
    cell: (r) => meter(r.memory, formatBytes(r.figures.memoryTotal ?? Number(r.agent.host?.memoryBytes ?? 0n))),
  },
  {
    key: "disk",
    label: "Fullest disk",
    value: (r) => r.figures.disk?.used,
    cell: (r) => (r.figures.disk ? h("span", {}, meter(r.figures.disk.used), " ", h("span", { class: "muted" }, r.figures.disk.mountpoint)) : "–"),
  },
  { key: "seen", label: "Last seen", value: (r) => r.lastSeenMs, cell: (r) => (r.lastSeenMs === undefined ? "never" : formatAgo(r.lastSeenMs)) },
];

export const inventoryPage: Page = (root, ctx) => {
  const filter = h("input", {
    type: "search",
    placeholder: "Filter: host, OS or label (role=db)",
    "aria-label": "filter",
    value: ctx.params.get("q") ?? "",
  });
  const statusSelect = h(
    "select",
    { "aria-label": "status" },
    h("option", { value: "" }, "any status"),
    ...["online", "stale", "offline"].map((s) => h("option", { value: s, selected: ctx.params.get("status") === s }, s)),
  );
  const table = h("table", { class: "inventory" });
  const summary = h("p", { class: "summary" });
  const problem = statusLine();
  let sort = { key: ctx.params.get("sort") ?? "hostname", descending: ctx.params.get("desc") === "1" };
  let rows: Row[] = [];
  // Only admins may deregister (agent.API/Deregister): viewers see no button.
  const canRemove = ctx.session.role === "admin";

  const remove = async (r: Row) => {
    if (!confirm(`Remove ${r.hostname} from the fleet? Its agent's credential stops working at once; to bring it back, enrol it again.`)) return;
    try {
      await ctx.api.agents.deregister({ agentId: r.agent.id }, { signal: ctx.signal });
      rows = rows.filter((x) => x !== r);
      problem.clear();
      draw();
    } catch (err) {
      problem.show(err);
    }
  };

  const draw = () => {
    const text = filter.value.trim().toLowerCase();
    const wanted = statusSelect.value;
    const shown = rows.filter((r) => {
      if (wanted && r.status !== wanted) return false;
      if (!text) return true;
      const labels = Object.entries(r.agent.labels).map(([k, v]) => `${k}=${v}`);
      return [r.hostname, r.agent.host?.os, r.agent.host?.osVersion, r.agent.host?.kernel, ...labels].some((f) => f?.toLowerCase().includes(text));
    });
    const column = columns.find((c) => c.key === sort.key) ?? columns[0]!;
    shown.sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      if (x === undefined || y === undefined) return x === y ? 0 : x === undefined ? 1 : -1; // unknowns last
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return sort.descending ? -order : order;
    });
    const head = h(
      "tr",
      {},
      ...columns.map((c) =>
        h(
          "th",
          { scope: "col", "data-column": c.key, "aria-sort": c.key === sort.key ? (sort.descending ? "descending" : "ascending") : false },
          h(
            "button",
            {
              type: "button",
              onclick: () => {
                sort = { key: c.key, descending: c.key === sort.key ? !sort.descending : false };
                ctx.setParam("sort", sort.key);
                ctx.setParam("desc", sort.descending ? "1" : "0");
                draw();
              },
            },
            c.label,
          ),
        ),
      ),
      canRemove && h("th", { scope: "col", "aria-label": "actions" }),
    );
    const width = columns.length + (canRemove ? 1 : 0);
    // Agents exist but none passes the filters: say so rather than show an empty table.
    const nothing =
      rows.length > 0 && shown.length === 0
        ? h(
            "tr",
            {},
            h(
              "td",
              { class: "empty", colspan: width },
              `No agent matches ${[text && `“${filter.value.trim()}”`, wanted && `status ${wanted}`].filter(Boolean).join(" and ")}. `,
              h("button", { type: "button", onclick: clearFilters }, "Clear the filters"),
            ),
          )
        : null;
    const body = shown.map((r) =>
      h(
        "tr",
        { "data-agent": r.agent.id, "data-status": r.status },
        ...columns.map((c) => h("td", { "data-column": c.key }, c.cell(r))),
        canRemove &&
          h(
            "td",
            { "data-column": "actions" },
            h("button", { type: "button", class: "remove", title: `deregister ${r.hostname}`, onclick: () => void remove(r) }, "Remove"),
          ),
      ),
    );
    replace(table, h("thead", {}, head), h("tbody", {}, ...body, nothing));
    const counts = ["online", "stale", "offline"].map((s) => `${rows.filter((r) => r.status === s).length} ${s}`);
    summary.textContent =
      rows.length === 0
        ? "No agents yet: start one with `specta agent --server … --enroll-token …`."
        : `${plural(rows.length, "agent")}: ${counts.join(", ")}${shown.length < rows.length ? ` (${shown.length} shown)` : ""}`;
  };
  const clearFilters = () => {
    filter.value = "";
    statusSelect.value = "";
    ctx.setParam("q", "");
    ctx.setParam("status", "");
    draw();
  };
  filter.addEventListener("input", () => (ctx.setParam("q", filter.value), draw()));
  statusSelect.addEventListener("change", () => (ctx.setParam("status", statusSelect.value), draw()));

  replace(
    root,
    h("div", { class: "toolbar" }, h("h1", {}, "Fleet"), filter, statusSelect),
    summary,
    problem.element,
    h("div", { class: "table-scroll" }, table),
  );

  every(10_000, ctx.signal, async () => {
    try {
      const [list, figures, firing] = await Promise.all([
        ctx.api.agents.list({}, { signal: ctx.signal }),
        fleetFigures(ctx.api, ctx.signal),
        firingAlerts(ctx.api, ctx.signal),
      ]);
      const now = Date.now();
      rows = list.agents.map((agent) => {
        const hostname = agent.host?.hostname ?? agent.id;
        const f = figures.get(hostname) ?? {};
        const total = f.memoryTotal ?? Number(agent.host?.memoryBytes ?? 0n);
        return {
          agent,
          hostname,
          status: statusNames[agent.status] ?? "unknown",
          firing: firing.filter((a) => isAbout(a, hostname)),
          figures: f,
          memory: f.memoryAvailable !== undefined && total > 0 ? 1 - f.memoryAvailable / total : undefined,
          uptimeMs: agent.host?.bootTime ? now - timestampMs(agent.host.bootTime) : undefined,
          lastSeenMs: agent.lastSeen ? timestampMs(agent.lastSeen) : undefined,
        };
      });
      problem.clear();
      draw();
    } catch (err) {
      problem.show(err);
    }
  });
};
