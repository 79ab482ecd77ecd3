/**
 * The application's instruments: counters (per-second rate), gauges and histograms (p50, p90,
 * p99 from their buckets). Host metrics (those with a host label) live on each host's page.
 */
import { Aggregation, Kind, type MetricInfo } from "../../../../gen/metrics/metrics_pb.js";
import { TimeChart, formatValue, type Line, type Unit } from "../chart.js";
import { h, replace } from "../dom.js";
import { every, rangePicker, serially, statusLine, type Page } from "../page.js";
import { ask, rangeEndingNow, type Ask } from "../queries.js";

interface Instrument {
  name: string;
  kind: "counter" | "gauge" | "histogram";
  help: string;
  series: number;
  labels: { key: string; values: string[] }[];
}

/** Most lines one chart shows; the rest are named in a note. */
const maxLines = 8;
/**
 * The quantiles drawn, each with its own dash and point size: when they coincide (few
 * observations, one bucket) the larger points of the lower quantiles still show around the
 * higher ones, which are drawn on top.
 */
const quantiles = [
  { q: 0.5, name: "p50", dash: undefined, pointSize: 11 },
  { q: 0.9, name: "p90", dash: [8, 4], pointSize: 8 },
  { q: 0.99, name: "p99", dash: [2, 3], pointSize: 5 },
];

/** Instruments from metrics.API/List: histogram families folded into one, host metrics left out. */
export function instrumentsOf(metrics: MetricInfo[]): Instrument[] {
  const out = new Map<string, Instrument>();
  for (const m of metrics) {
    if (m.labels.some((l) => l.key === "host")) continue;
    const histogram = m.kind === Kind.HISTOGRAM;
    const name = histogram ? m.name.replace(/_(bucket|sum|count)$/, "") : m.name;
    let instrument = out.get(name);
    if (!instrument) {
      const kind = histogram ? "histogram" : m.kind === Kind.COUNTER ? "counter" : "gauge";
      out.set(name, (instrument = { name, kind, help: "", series: 0, labels: m.labels.filter((l) => l.key !== "le") }));
    }
    instrument.help ||= m.help;
    // A histogram has as many series as its _count (one per label set).
    if (!histogram || m.name.endsWith("_count")) instrument.series = Number(m.series);
  }
  return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
}

const labelText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ") || "all";

export const instrumentsPage: Page = (root, ctx) => {
  const list = h("div", { class: "instruments" });
  const problem = statusLine();
  const picker = rangePicker(ctx, () => void refresh());
  replace(root, h("div", { class: "toolbar" }, h("h1", {}, "Instruments"), picker.element), problem.element, list);

  const cards = new Map<string, { chart: TimeChart; latest: HTMLElement; element: HTMLElement }>();
  ctx.signal.addEventListener("abort", () => cards.forEach((c) => c.chart.destroy()), { once: true });

  const card = (instrument: Instrument) => {
    let entry = cards.get(instrument.name);
    if (!entry) {
      const unit: Unit = instrument.name.endsWith("_seconds") ? "seconds" : instrument.name.endsWith("_bytes") ? "bytes" : "number";
      const chart = new TimeChart(
        instrument.kind === "counter" ? "per second" : instrument.kind === "histogram" ? "quantiles" : "value",
        instrument.kind === "counter" ? "number" : unit,
        160,
        // A gauge keeps its value until it is set again: a step line, not a dot per setting.
        instrument.kind === "gauge",
      );
      const latest = h("p", { class: "latest" });
      const element = h(
        "article",
        { class: "instrument", "data-instrument": instrument.name, "data-kind": instrument.kind },
        h("h2", {}, instrument.name, " ", h("span", { class: `kind kind-${instrument.kind}` }, instrument.kind)),
        h("p", { class: "help" }, instrument.help || ""),
        h(
          "p",
          { class: "muted" },
          `${instrument.series} series · labels: ${instrument.labels.map((l) => `${l.key} (${l.values.slice(0, 5).join(", ")}${l.values.length > 5 ? ", …" : ""})`).join("; ") || "none"}`,
        ),
        latest,
        chart.element,
      );
      entry = { chart, latest, element };
      cards.set(instrument.name, entry);
    }
    return entry;
  };

  const draw = async (instrument: Instrument) => {
    const range = rangeEndingNow(picker.current());
    const { chart, latest } = card(instrument);
    let lines: Line[];
    if (instrument.kind === "histogram") {
      const results = await Promise.all(
        quantiles.map(({ q }) =>
          ask(ctx.api, { metric: instrument.name, aggregation: Aggregation.QUANTILE, quantile: q, groupBy: ["env"] }, range, ctx.signal),
        ),
      );
      // The environment is named only when there is more than one to tell apart.
      const envs = new Set(results.flatMap((series) => series.map((s) => s.labels.env ?? "")));
      lines = results.flatMap((series, i) => {
        const { name, dash, pointSize } = quantiles[i]!;
        return series.map((s) => ({ label: envs.size > 1 ? `${name} ${s.labels.env ?? ""}` : name, points: s.points, dash, pointSize }));
      });
    } else {
      const question: Ask =
        instrument.kind === "counter"
          ? { metric: instrument.name, aggregation: Aggregation.RATE }
          : { metric: instrument.name, aggregation: Aggregation.AVG };
      const now = Math.min(Date.now(), range.endMs);
      lines = (await ask(ctx.api, question, range, ctx.signal)).map((s) => ({
        label: labelText(s.labels),
        points: instrument.kind === "gauge" ? heldUntil(s.points, now) : s.points,
      }));
    }
    lines.sort((a, b) => a.label.localeCompare(b.label));
    chart.update(lines.slice(0, maxLines), range.startMs, range.endMs);
    const format = formatValue[instrument.kind === "counter" ? "number" : chart.unit];
    const latestValues = lines.flatMap((l) => {
      const last = l.points.at(-1);
      return last ? [`${l.label}: ${format(last.v)}${instrument.kind === "counter" ? "/s" : ""}`] : [];
    });
    latest.textContent = [
      latestValues.slice(0, maxLines).join(" · "),
      lines.length > maxLines ? `(${lines.length - maxLines} more lines not drawn)` : "",
    ]
      .filter(Boolean)
      .join(" ");
  };

  const refresh = serially(async () => {
    try {
      const { metrics } = await ctx.api.metrics.list({}, { signal: ctx.signal });
      const instruments = instrumentsOf(metrics);
      if (instruments.length === 0) {
        replace(
          list,
          h("p", { class: "summary" }, "No instrument has recorded a value yet. Record one with metrics.API/Counter, Gauge or Histogram."),
        );
      } else {
        replace(list, ...instruments.map((i) => card(i).element));
      }
      await Promise.all(instruments.map(draw));
      problem.clear();
    } catch (err) {
      problem.show(err);
    }
  });
  every(15_000, ctx.signal, refresh);
};

/** A gauge's points with its latest value held until `now`: it is still the gauge's value. */
export function heldUntil(points: Line["points"], now: number): Line["points"] {
  const last = points.at(-1);
  return last && last.t < now ? [...points, { t: now, v: last.v }] : points;
}
