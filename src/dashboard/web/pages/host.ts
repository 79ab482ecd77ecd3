/**
 * One host: its firing alerts, its inventory, charts of CPU, load, memory, network, disk I/O,
 * filesystems and temperatures updating live, its top processes, containers and systemd
 * services, and its installed packages.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Agent } from "../../../../gen/agent/agent_pb.js";
import { Aggregation } from "../../../../gen/metrics/metrics_pb.js";
import { TimeChart, type Line } from "../chart.js";
import { h, replace } from "../dom.js";
import { drawFiringBanner, firingAlerts } from "../firing-alerts.js";
import { formatAgo, formatBytes, formatDuration, formatPercent } from "../format.js";
import { every, rangePicker, serially, statusLine, type Page } from "../page.js";
import { ask, combine, cpuShares, diskShare, rangeEndingNow, virtualInterfaces, type Ask, type Range } from "../queries.js";
import { statusNames } from "../../../shared/agent-status.js";
import { packagesPanel } from "./host-packages.js";
import { hostPanels } from "./host-panels.js";
import { osText } from "./inventory.js";

export const hostPage: Page = (root, ctx) => {
  const agentId = ctx.path[0] ?? "";
  const facts = h("dl", { class: "facts" });
  const title = h("h1", {}, "Host");
  const problem = statusLine();
  const charts = {
    cpu: new TimeChart("CPU", "percent"),
    load: new TimeChart("Load average", "number"),
    memory: new TimeChart("Memory", "bytes"),
    network: new TimeChart("Network", "bytes/s"),
    diskIo: new TimeChart("Disk I/O", "bytes/s"),
    filesystems: new TimeChart("Filesystems used", "percent"),
    temperatures: new TimeChart("Temperatures", "celsius"),
  };
  const panels = hostPanels(ctx);
  const packages = packagesPanel();
  panels.element.append(packages.element);
  let packagesRead = false;
  const banner = h("div", { class: "alert-banner", role: "status", hidden: true });
  ctx.signal.addEventListener("abort", () => Object.values(charts).forEach((c) => c.destroy()), { once: true });
  const filesystems = h("table", { class: "filesystems" });
  let lastRefresh = 0;
  let lastPanels = 0;
  let unknown = false;
  const picker = rangePicker(ctx, () => {
    lastRefresh = Date.now();
    void refresh();
  });
  const isAdmin = ctx.session.role === "admin";
  const runLink = isAdmin ? h("a", { class: "button", href: `#/console?agent=${encodeURIComponent(agentId)}` }, "Run a diagnostic") : null;
  let shown: Agent | undefined;
  // Only admins may deregister (agent.API/Deregister): viewers see no button.
  const removeButton = isAdmin
    ? h(
        "button",
        {
          type: "button",
          class: "remove remove-agent",
          onclick: async () => {
            if (!shown) return;
            const name = shown.host?.hostname ?? shown.id;
            if (!confirm(`Remove ${name} from the fleet? Its agent's credential stops working at once; to bring it back, enrol it again.`)) return;
            try {
              await ctx.api.agents.deregister({ agentId: shown.id }, { signal: ctx.signal });
              location.hash = "#/";
            } catch (err) {
              problem.show(err);
            }
          },
        },
        "Remove",
      )
    : null;

  replace(
    root,
    h("div", { class: "toolbar" }, title, picker.element, runLink, removeButton),
    problem.element,
    banner,
    facts,
    h("div", { class: "charts" }, ...Object.values(charts).map((c) => c.element)),
    h("h2", {}, "Filesystems"),
    h("div", { class: "table-scroll" }, filesystems),
    panels.element,
  );

  const refresh = serially(async () => {
    if (unknown) return;
    try {
      // The inventory changes too (status, last seen): re-read it with the charts.
      const list = await ctx.api.agents.list({}, { signal: ctx.signal });
      const agent = list.agents.find((a) => a.id === agentId) ?? list.agents.find((a) => a.host?.hostname === agentId);
      if (!agent) {
        unknown = true;
        replace(
          root,
          h("h1", {}, "Unknown host"),
          h("p", {}, `No agent has the id or hostname "${agentId}". `, h("a", { href: "#/" }, "Back to the fleet")),
        );
        return;
      }
      shown = agent;
      drawFacts(agent);
      // The lists change at most every 15 s (the processes collector's interval).
      const panelsDue = Date.now() - lastPanels >= 15_000;
      if (panelsDue) lastPanels = Date.now();
      const hostname = agent.host?.hostname ?? "";
      await Promise.all([
        drawCharts(hostname, rangeEndingNow(picker.current())),
        panelsDue ? panels.refresh(hostname) : undefined,
        firingAlerts(ctx.api, ctx.signal).then((alerts) => drawFiringBanner(banner, alerts, hostname)),
        packagesRead ? undefined : drawPackages(agent),
      ]);
      problem.clear();
    } catch (err) {
      problem.show(err);
    }
  });

  // Read once a visit: the list changes nightly at most, and can hold thousands of packages. Only
  // agents with this one's labels are asked for theirs (List has no agent filter).
  const drawPackages = async (a: Agent) => {
    const { agents } = await ctx.api.agents.list({ labels: a.labels, withPackages: true }, { signal: ctx.signal });
    packages.draw(agents.find((x) => x.id === a.id)?.packages);
    packagesRead = true;
  };

  const drawFacts = (a: Agent) => {
    const host = a.host;
    const status = statusNames[a.status];
    title.replaceChildren(host?.hostname ?? a.id, " ", h("span", { class: `status status-${status}` }, status));
    const now = Date.now();
    const fact = (label: string, value: string) => [h("dt", {}, label), h("dd", {}, value || "–")];
    replace(
      facts,
      fact("OS", osText(host)),
      fact("Kernel", `${host?.kernel ?? ""} · ${host?.arch ?? ""}`),
      fact("CPU", `${host?.cpuCount ?? "?"} × ${host?.cpuModel ?? ""}`),
      fact("Memory", formatBytes(Number(host?.memoryBytes ?? 0n))),
      fact("Uptime", host?.bootTime ? formatDuration(now - timestampMs(host.bootTime)) : ""),
      fact("Last seen", a.lastSeen ? formatAgo(timestampMs(a.lastSeen), now) : "never"),
      fact("Agent", `${a.agentVersion} · ${a.id}`),
      fact(
        "Labels",
        Object.entries(a.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(" "),
      ),
    );
  };

  const drawCharts = async (hostname: string, range: Range) => {
    const host = { host: hostname };
    const q = (metric: string, aggregation: Aggregation, extra: Pick<Ask, "groupBy" | "notMatching" | "keepPartial"> = {}) =>
      ask(ctx.api, { metric, labels: host, aggregation, ...extra }, range, ctx.signal);
    const one = (series: Awaited<ReturnType<typeof q>>) => series[0]?.points ?? [];
    const [
      cpu,
      load1,
      load5,
      load15,
      memTotal,
      memAvailable,
      buffers,
      cached,
      swapTotal,
      swapFree,
      rx,
      tx,
      read,
      written,
      used,
      avail,
      size,
      zones,
      hwmon,
    ] = await Promise.all([
      q("node_cpu_all_seconds_total", Aggregation.RATE, { groupBy: ["mode"], keepPartial: true }),
      q("node_load1", Aggregation.AVG),
      q("node_load5", Aggregation.AVG),
      q("node_load15", Aggregation.AVG),
      q("node_memory_total_bytes", Aggregation.AVG),
      q("node_memory_available_bytes", Aggregation.AVG),
      q("node_memory_buffers_bytes", Aggregation.AVG),
      q("node_memory_cached_bytes", Aggregation.AVG),
      q("node_memory_swap_total_bytes", Aggregation.AVG),
      q("node_memory_swap_free_bytes", Aggregation.AVG),
      q("node_network_receive_bytes_total", Aggregation.RATE, { groupBy: ["host"], notMatching: { device: virtualInterfaces } }),
      q("node_network_transmit_bytes_total", Aggregation.RATE, { groupBy: ["host"], notMatching: { device: virtualInterfaces } }),
      q("node_disk_read_bytes_total", Aggregation.RATE, { groupBy: ["host"] }),
      q("node_disk_written_bytes_total", Aggregation.RATE, { groupBy: ["host"] }),
      q("node_filesystem_used_bytes", Aggregation.AVG, { groupBy: ["mountpoint", "fstype"] }),
      q("node_filesystem_avail_bytes", Aggregation.AVG, { groupBy: ["mountpoint", "fstype"] }),
      q("node_filesystem_size_bytes", Aggregation.AVG, { groupBy: ["mountpoint", "fstype"] }),
      q("node_thermal_zone_temp_celsius", Aggregation.AVG, { groupBy: ["zone", "type"] }),
      q("node_hwmon_temp_celsius", Aggregation.AVG, { groupBy: ["chip", "sensor", "label"] }),
    ]);
    const { startMs, endMs } = range;

    const { busy, byMode } = cpuShares(new Map(cpu.map((s) => [s.labels.mode ?? "", s.points])));
    charts.cpu.update(
      [{ label: "busy", points: busy }, ...["user", "system", "iowait", "steal"].map((mode) => ({ label: mode, points: byMode.get(mode) ?? [] }))],
      startMs,
      endMs,
    );
    charts.load.update(
      [
        { label: "1 min", points: one(load1) },
        { label: "5 min", points: one(load5) },
        { label: "15 min", points: one(load15) },
      ],
      startMs,
      endMs,
    );
    charts.memory.update(
      [
        { label: "used", points: combine(one(memTotal), one(memAvailable), (t, a) => t - a) },
        { label: "cache", points: combine(one(buffers), one(cached), (b, c) => b + c) },
        { label: "swap used", points: combine(one(swapTotal), one(swapFree), (t, f) => t - f) },
      ],
      startMs,
      endMs,
    );
    // The total is a ceiling, not a line: drawn as one, it squeezed used and cache to the bottom.
    charts.memory.setLimit(one(memTotal).at(-1)?.v, "total");
    charts.network.update(
      [
        { label: "received", points: one(rx) },
        { label: "sent", points: one(tx) },
      ],
      startMs,
      endMs,
    );
    charts.diskIo.update(
      [
        { label: "read", points: one(read) },
        { label: "written", points: one(written) },
      ],
      startMs,
      endMs,
    );

    const key = (labels: Record<string, string>) => labels.mountpoint ?? "";
    const availBy = new Map(avail.map((s) => [key(s.labels), s.points]));
    const sizeBy = new Map(size.map((s) => [key(s.labels), s.points]));
    const shares: Line[] = used
      .map((s) => ({ label: key(s.labels), points: combine(s.points, availBy.get(key(s.labels)) ?? [], diskShare) }))
      .sort((a, b) => a.label.localeCompare(b.label));
    charts.filesystems.update(shares, startMs, endMs);

    // Thermal zones by their type ("x86_pkg_temp"), hwmon sensors by their label or chip and sensor.
    const temperatures: Line[] = [
      ...zones.map((s) => ({ label: s.labels.type || `zone ${s.labels.zone ?? ""}`, points: s.points })),
      ...hwmon.map((s) => ({ label: s.labels.label || `${s.labels.chip ?? ""} ${s.labels.sensor ?? ""}`, points: s.points })),
    ].sort((a, b) => a.label.localeCompare(b.label));
    charts.temperatures.update(temperatures, startMs, endMs);
    if (temperatures.every((t) => t.points.length === 0))
      charts.temperatures.setEmpty(
        "No temperature sensor reported: the agent reads /sys/class/thermal and /sys/class/hwmon, which virtual machines rarely have.",
      );

    const rows = used
      .map((s) => {
        const mountpoint = key(s.labels);
        const last = (points: Line["points"] | undefined) => points?.at(-1)?.v ?? 0;
        return {
          mountpoint,
          fstype: s.labels.fstype ?? "",
          used: last(s.points),
          avail: last(availBy.get(mountpoint)),
          size: last(sizeBy.get(mountpoint)),
        };
      })
      .sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
    replace(
      filesystems,
      h("thead", {}, h("tr", {}, ...["Mount point", "Type", "Size", "Used", "Available", "Use %"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        ...rows.map((r) =>
          h(
            "tr",
            {},
            h("td", {}, r.mountpoint),
            h("td", {}, r.fstype),
            h("td", {}, formatBytes(r.size)),
            h("td", {}, formatBytes(r.used)),
            h("td", {}, formatBytes(r.avail)),
            h("td", {}, formatPercent(diskShare(r.used, r.avail))),
          ),
        ),
      ),
    );
  };

  // Live: as often as the agents collect (5 s) on short ranges, once a step on long ones; the
  // lists, whatever the range, every 15 s.
  every(5_000, ctx.signal, async () => {
    if (Date.now() - lastRefresh >= rangeEndingNow(picker.current()).stepMs) {
      lastRefresh = Date.now();
      await refresh();
    } else if (shown && !unknown && Date.now() - lastPanels >= 15_000) {
      lastPanels = Date.now();
      await panels.refresh(shown.host?.hostname ?? "").catch((err: unknown) => problem.show(err));
    }
  });
};
