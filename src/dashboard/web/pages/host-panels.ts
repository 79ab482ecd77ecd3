/**
 * What a host's agent collects besides the charts' figures, as lists of its newest run: the top
 * processes (processes collector, every 15 s), Docker containers (containers collector, 60 s)
 * and systemd services (services collector, 60 s). All arrive as series; each panel says so
 * when the agent reports none (no Docker socket it may open, not booted with systemd).
 */
import { h, replace } from "../dom.js";
import { formatBytes, formatPercent, formatRate, plural } from "../format.js";
import type { PageContext } from "../page.js";
import { latestRates, newestCollection } from "../queries.js";

/** A panel: a heading, a line about it and a table (in a box that scrolls, not the page). */
export function panel(kind: string, title: string): { element: HTMLElement; note: HTMLElement; table: HTMLTableElement } {
  const note = h("p", { class: "muted" }, "Loading…");
  const table = h("table", {});
  const element = h("section", { class: "panel", "data-panel": kind }, h("h2", {}, title), note, h("div", { class: "table-scroll" }, table));
  return { element, note, table };
}

function fill(table: HTMLTableElement, columns: [string, "number"?][], rows: (Node | string)[][]): void {
  const head = h("tr", {}, ...columns.map(([label, align]) => h("th", { scope: "col", class: align ?? false }, label)));
  const body = rows.map((cells) => h("tr", {}, ...cells.map((cell, i) => h("td", { class: columns[i]?.[1] ?? false }, cell))));
  replace(table, h("thead", {}, head), h("tbody", {}, ...body));
  table.hidden = rows.length === 0;
}

/** Docker's container states, the ones that matter most first. */
const stateOrder = ["running", "restarting", "paused", "created", "removing", "exited", "dead"];

/** Windows that hold at least one run of each collector (intervals 15 s and 60 s), with room for a late one. */
const processWindowMs = 45_000;
const minuteWindowMs = 150_000;

export function hostPanels(ctx: PageContext): { element: HTMLElement; refresh(hostname: string): Promise<void> } {
  const processes = panel("processes", "Top processes");
  const containers = panel("containers", "Containers");
  const services = panel("services", "Systemd services");
  const element = h("div", { class: "panels" }, processes.element, containers.element, services.element);

  const drawProcesses = async (host: string) => {
    const [cpu, memory] = await Promise.all([
      newestCollection(ctx.api, "node_top_process_cpu_usage_ratio", host, processWindowMs, ctx.signal),
      newestCollection(ctx.api, "node_top_process_resident_memory_bytes", host, processWindowMs, ctx.signal),
    ]);
    // The agent sends two top lists (by CPU and by memory): one row per process of either.
    const byPid = new Map<string, { pid: string; name: string; cpu?: number; memory?: number }>();
    const row = (labels: Record<string, string>) => {
      const pid = labels.pid ?? "";
      let r = byPid.get(pid);
      if (!r) byPid.set(pid, (r = { pid, name: labels.name ?? "" }));
      return r;
    };
    for (const s of cpu) row(s.labels).cpu = s.value;
    for (const s of memory) row(s.labels).memory = s.value;
    const rows = [...byPid.values()].sort((a, b) => (b.cpu ?? -1) - (a.cpu ?? -1) || (b.memory ?? 0) - (a.memory ?? 0));
    processes.note.textContent =
      rows.length === 0
        ? "The agent has reported no processes yet (it lists the top 5 by CPU and by memory every 15 s)."
        : "The 5 busiest and the 5 largest processes at the agent's last look; CPU in cores (100 % = one core).";
    fill(
      processes.table,
      [["Process"], ["PID", "number"], ["CPU", "number"], ["Memory", "number"]],
      rows.map((r) => [r.name, r.pid, r.cpu === undefined ? "–" : formatPercent(r.cpu), r.memory === undefined ? "–" : formatBytes(r.memory)]),
    );
  };

  const drawContainers = async (host: string) => {
    const [states, memory, limits, cpu, rx, tx] = await Promise.all([
      newestCollection(ctx.api, "docker_containers", host, minuteWindowMs, ctx.signal),
      newestCollection(ctx.api, "container_memory_working_set_bytes", host, minuteWindowMs, ctx.signal),
      newestCollection(ctx.api, "container_spec_memory_limit_bytes", host, minuteWindowMs, ctx.signal),
      latestRates(ctx.api, "container_cpu_usage_seconds_total", host, "name", minuteWindowMs, ctx.signal),
      latestRates(ctx.api, "container_network_receive_bytes_total", host, "name", minuteWindowMs, ctx.signal),
      latestRates(ctx.api, "container_network_transmit_bytes_total", host, "name", minuteWindowMs, ctx.signal),
    ]);
    const limitOf = new Map(limits.map((s) => [s.labels.name ?? "", s.value]));
    const counts = states
      .filter((s) => s.value > 0)
      .sort((a, b) => stateOrder.indexOf(a.labels.state ?? "") - stateOrder.indexOf(b.labels.state ?? ""))
      .map((s) => `${s.value} ${s.labels.state}`);
    containers.note.textContent =
      states.length === 0
        ? "No containers reported: the agent reads Docker's socket (/var/run/docker.sock) when it may open it (docker group)."
        : `${plural(
            states.reduce((n, s) => n + s.value, 0),
            "container",
          )}${counts.length > 0 ? `: ${counts.join(", ")}` : ""}. Running ones below.`;
    const rows = memory
      .map((s) => ({ name: s.labels.name ?? "", image: s.labels.image ?? "", memory: s.value }))
      .sort((a, b) => a.name.localeCompare(b.name));
    fill(
      containers.table,
      [["Name"], ["Image"], ["CPU", "number"], ["Memory", "number"], ["Net in", "number"], ["Net out", "number"]],
      rows.map((r) => {
        const limit = limitOf.get(r.name);
        const cores = cpu.get(r.name);
        const rate = (m: Map<string, number>) => (m.has(r.name) ? formatRate(m.get(r.name)!) : "–");
        return [
          r.name,
          r.image,
          cores === undefined ? "–" : formatPercent(cores),
          `${formatBytes(r.memory)}${limit ? ` / ${formatBytes(limit)}` : ""}`,
          rate(rx),
          rate(tx),
        ];
      }),
    );
  };

  const order = ["failed", "activating", "deactivating", "reloading", "active", "inactive"];
  const drawServices = async (host: string) => {
    const units = (await newestCollection(ctx.api, "node_systemd_unit_state", host, minuteWindowMs, ctx.signal))
      .filter((s) => s.value === 1)
      .map((s) => ({ name: s.labels.name ?? "", state: s.labels.state ?? "" }))
      .sort((a, b) => rank(a.state) - rank(b.state) || a.name.localeCompare(b.name));
    const byState = new Map<string, number>();
    for (const u of units) byState.set(u.state, (byState.get(u.state) ?? 0) + 1);
    services.note.textContent =
      units.length === 0
        ? "No systemd services reported: the agent lists them with systemctl on hosts booted with systemd."
        : `${plural(units.length, "service")}: ${[...byState]
            .sort(([a], [b]) => rank(a) - rank(b))
            .map(([state, n]) => `${n} ${state}`)
            .join(", ")}.`;
    fill(
      services.table,
      [["Unit"], ["State"]],
      units.map((u) => [u.name, h("span", { class: `unit-${u.state}` }, u.state)]),
    );
  };
  const rank = (state: string) => (order.includes(state) ? order.indexOf(state) : 3);

  return {
    element,
    async refresh(hostname) {
      await Promise.all([drawProcesses(hostname), drawContainers(hostname), drawServices(hostname)]);
    },
  };
}
