/** The dashboard's questions to metrics.API/Query, and the host metrics' arithmetic. */
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Aggregation, MatchOperator, type SeriesPoints } from "../../../gen/metrics/metrics_pb.js";
import type { Api } from "./api.js";
import type { Line } from "./chart.js";

export interface Range {
  startMs: number;
  endMs: number;
  stepMs: number;
}

/** The ranges people pick from, by name. */
export const ranges: Record<string, number> = {
  "15m": 15 * 60_000,
  "1h": 3_600_000,
  "6h": 6 * 3_600_000,
  "24h": 24 * 3_600_000,
  "7d": 7 * 24 * 3_600_000,
};

/** About 240 points per line, and never a step shorter than the agents' 5 s collection interval. */
export function rangeEndingNow(name: string, now = Date.now()): Range {
  const spanMs = ranges[name] ?? ranges["1h"]!;
  const stepMs = Math.max(5_000, Math.ceil(spanMs / 240 / 5_000) * 5_000);
  const endMs = Math.ceil(now / stepMs) * stepMs;
  return { startMs: endMs - spanMs, endMs, stepMs };
}

export interface Ask {
  metric: string;
  labels?: Record<string, string>;
  /** Labels that must not match these regular expressions, e.g. device !~ "lo|veth.*". */
  notMatching?: Record<string, string>;
  aggregation: Aggregation;
  groupBy?: string[];
  quantile?: number;
  /** Keep a rate's step that is still filling: right for ratios of rates, such as CPU shares. */
  keepPartial?: boolean;
}

/** Interfaces that carry no traffic of their own: loopback and container plumbing (counted on the real NIC too). */
export const virtualInterfaces = "lo|veth.*|docker.*|br-.*|virbr.*|cni.*|flannel.*|cali.*|vxlan.*";

/**
 * One Query; points come back as {t, v} with times in ms. A rate or increase over the step that
 * is still filling would read low (its increase is divided by the whole step): that point is
 * left out.
 */
export async function ask(
  api: Api,
  question: Ask,
  range: Range,
  signal?: AbortSignal,
): Promise<{ labels: Record<string, string>; points: Line["points"] }[]> {
  const matchers = [
    ...Object.entries(question.labels ?? {}).map(([label, value]) => ({ label, value, operator: MatchOperator.EQUAL })),
    ...Object.entries(question.notMatching ?? {}).map(([label, value]) => ({ label, value, operator: MatchOperator.NOT_REGEX })),
  ];
  const response = await api.metrics.query(
    {
      metric: question.metric,
      matchers,
      aggregation: question.aggregation,
      groupBy: question.groupBy ?? [],
      quantile: question.quantile ?? 0,
      start: timestampFromMs(range.startMs),
      end: timestampFromMs(range.endMs),
      step: durationFromMs(range.stepMs),
    },
    { signal },
  );
  const perStep = !question.keepPartial && (question.aggregation === Aggregation.RATE || question.aggregation === Aggregation.INCREASE);
  const now = Date.now();
  return response.series.map(toPoints).map((s) => (perStep ? { ...s, points: s.points.filter((p) => p.t + range.stepMs <= now) } : s));
}

function toPoints(series: SeriesPoints): { labels: Record<string, string>; points: Line["points"] } {
  return { labels: series.labels, points: series.points.map((p) => ({ t: p.time ? timestampMs(p.time) : 0, v: p.value })) };
}

/**
 * CPU busy share per time from the per-mode rates of node_cpu_all_seconds_total: everything but
 * idle and iowait, over all modes. `modes` maps a mode to its points.
 */
export function cpuShares(modes: Map<string, Line["points"]>): { busy: Line["points"]; byMode: Map<string, Line["points"]> } {
  const totals = new Map<number, number>();
  for (const points of modes.values()) for (const p of points) totals.set(p.t, (totals.get(p.t) ?? 0) + p.v);
  const share = (points: Line["points"]) => points.flatMap((p) => (totals.get(p.t) ? [{ t: p.t, v: p.v / totals.get(p.t)! }] : []));
  const byMode = new Map([...modes].map(([mode, points]) => [mode, share(points)]));
  const idle = new Map<number, number>();
  for (const mode of ["idle", "iowait"]) for (const p of byMode.get(mode) ?? []) idle.set(p.t, (idle.get(p.t) ?? 0) + p.v);
  const busy = [...totals]
    .filter(([, total]) => total > 0)
    .map(([t]) => t)
    .sort((a, b) => a - b)
    .map((t) => ({ t, v: Math.max(0, 1 - (idle.get(t) ?? 0)) }));
  return { busy, byMode };
}

/** A filesystem's used share as df shows it: blocks reserved for root count as neither used nor available. */
export function diskShare(used: number, available: number): number {
  return used + available > 0 ? used / (used + available) : 0;
}

/** Combines two lines point by point (same times only). */
export function combine(a: Line["points"], b: Line["points"], f: (x: number, y: number) => number): Line["points"] {
  const other = new Map(b.map((p) => [p.t, p.v]));
  return a.flatMap((p) => (other.has(p.t) ? [{ t: p.t, v: f(p.v, other.get(p.t)!) }] : []));
}

/** The fleet at a glance, one query per figure for every host at once (grouped by host). */
export interface HostFigures {
  cpu?: number;
  memoryAvailable?: number;
  memoryTotal?: number;
  /** The fullest filesystem: its mount point and used share. */
  disk?: { mountpoint: string; used: number };
}

export async function fleetFigures(api: Api, signal?: AbortSignal, now = Date.now()): Promise<Map<string, HostFigures>> {
  // Long enough for two CPU samples (5 s apart) and one disk sample (every 60 s).
  const recent: Range = { startMs: now - 120_000, endMs: now, stepMs: 120_000 };
  const disks: Range = { startMs: now - 300_000, endMs: now, stepMs: 300_000 };
  const [cpu, available, total, used, avail] = await Promise.all([
    ask(api, { metric: "node_cpu_all_seconds_total", aggregation: Aggregation.RATE, groupBy: ["host", "mode"], keepPartial: true }, recent, signal),
    ask(api, { metric: "node_memory_available_bytes", aggregation: Aggregation.LAST, groupBy: ["host"] }, recent, signal),
    ask(api, { metric: "node_memory_total_bytes", aggregation: Aggregation.LAST, groupBy: ["host"] }, recent, signal),
    ask(api, { metric: "node_filesystem_used_bytes", aggregation: Aggregation.LAST, groupBy: ["host", "mountpoint"] }, disks, signal),
    ask(api, { metric: "node_filesystem_avail_bytes", aggregation: Aggregation.LAST, groupBy: ["host", "mountpoint"] }, disks, signal),
  ]);
  const figures = new Map<string, HostFigures>();
  const of = (host: string | undefined) => {
    const key = host ?? "";
    let f = figures.get(key);
    if (!f) figures.set(key, (f = {}));
    return f;
  };
  const latest = (points: Line["points"]) => points.at(-1)?.v;

  const modesByHost = new Map<string, Map<string, Line["points"]>>();
  for (const s of cpu) {
    const host = s.labels.host ?? "";
    if (!modesByHost.has(host)) modesByHost.set(host, new Map());
    modesByHost.get(host)!.set(s.labels.mode ?? "", s.points);
  }
  for (const [host, modes] of modesByHost) of(host).cpu = latest(cpuShares(modes).busy);
  for (const s of available) of(s.labels.host).memoryAvailable = latest(s.points);
  for (const s of total) of(s.labels.host).memoryTotal = latest(s.points);
  const free = new Map(avail.map((s) => [`${s.labels.host}\u0000${s.labels.mountpoint}`, latest(s.points)]));
  for (const s of used) {
    const available = free.get(`${s.labels.host}\u0000${s.labels.mountpoint}`);
    const value = latest(s.points);
    if (available === undefined || value === undefined || value + available === 0) continue;
    const figure = of(s.labels.host);
    const share = diskShare(value, available);
    if (!figure.disk || share > figure.disk.used) figure.disk = { mountpoint: s.labels.mountpoint ?? "", used: share };
  }
  return figures;
}

/**
 * The series of a host's newest collection of `metric` (one agent run stamps all its samples
 * with one time), each with its latest value: lists that change between runs, such as the top
 * processes, without the ones that dropped out. `windowMs` covers at least one collection interval.
 */
export async function newestCollection(
  api: Api,
  metric: string,
  host: string,
  windowMs: number,
  signal?: AbortSignal,
  now = Date.now(),
): Promise<{ labels: Record<string, string>; value: number }[]> {
  // 1 s steps keep each run's own time; steps without data are left out, so this stays small.
  const series = await ask(
    api,
    { metric, labels: { host }, aggregation: Aggregation.LAST },
    { startMs: now - windowMs, endMs: now, stepMs: 1_000 },
    signal,
  );
  const newest = Math.max(-Infinity, ...series.map((s) => s.points.at(-1)?.t ?? -Infinity));
  return series.flatMap((s) => {
    const last = s.points.at(-1);
    return last && last.t === newest ? [{ labels: s.labels, value: last.v }] : [];
  });
}

/**
 * The per-second rate of a counter between its last two samples within `windowMs`, summed by
 * the values of `label` (a container's interfaces, say). Worked out from the samples themselves,
 * so that it is the rate of the agent's last interval whatever the step.
 */
export async function latestRates(
  api: Api,
  metric: string,
  host: string,
  label: string,
  windowMs: number,
  signal?: AbortSignal,
  now = Date.now(),
): Promise<Map<string, number>> {
  const series = await ask(
    api,
    { metric, labels: { host }, aggregation: Aggregation.LAST },
    { startMs: now - windowMs, endMs: now, stepMs: 1_000 },
    signal,
  );
  const rates = new Map<string, number>();
  for (const s of series) {
    const [before, last] = s.points.slice(-2);
    if (!before || !last || last.t <= before.t) continue;
    // A counter that went down was reset (a restarted container): it counted up from zero since.
    const increase = last.v >= before.v ? last.v - before.v : last.v;
    const key = s.labels[label] ?? "";
    rates.set(key, (rates.get(key) ?? 0) + increase / ((last.t - before.t) / 1000));
  }
  return rates;
}
