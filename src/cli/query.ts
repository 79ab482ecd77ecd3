import { create, toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Option, type Command } from "commander";
import {
  API as MetricsAPI,
  Aggregation,
  Kind,
  ListResponseSchema,
  MatchOperator,
  QueryRequestSchema,
  QueryResponseSchema,
  type ListResponse,
  type Matcher,
  type QueryResponse,
} from "../../gen/metrics/metrics_pb.js";
import { parseDuration } from "../shared/duration.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { collect, formatTable } from "./util.js";

const aggregations = ["avg", "min", "max", "sum", "count", "last", "rate", "increase", "quantile"] as const;
type AggregationName = (typeof aggregations)[number];

interface QueryFlags extends ClientFlags {
  match?: string[];
  since?: string;
  until?: string;
  step?: string;
  agg?: AggregationName;
  quantile?: string;
  by?: string[];
  promql?: boolean;
  json?: boolean;
}

interface MetricsFlags extends ClientFlags {
  prefix?: string;
  json?: boolean;
}

/** `specta query` and `specta metrics`: the command-line face of metrics.API/Query and List. */
export function queryCommands(program: Command): void {
  addClientOptions(
    program
      .command("query")
      .description("print a metric's points, or a PromQL expression's values, over a time range (metrics.API/Query)")
      .argument(
        "<metric-or-expr>",
        "metric name (for --agg quantile: the histogram's name, without _bucket), or a PromQL expression such as 'rate(node_cpu_seconds_total[5m])'",
      )
      .option("--match <matcher>", "label matcher k=v, k!=v, k=~regex or k!~regex (repeatable)", collect, undefined)
      .option("--since <when>", "start: a duration ago (e.g. 1h) or an RFC 3339 time (default: 1h before --until)")
      .option("--until <when>", "end: a duration ago (e.g. 10m) or an RFC 3339 time (default: now)")
      .option("--step <duration>", "width of each point, e.g. 1m (default: the range / 120, at least 1s)")
      .addOption(
        new Option(
          "--agg <aggregation>",
          "how points are combined (default: the latest value of counters and histogram series, the mean of gauges; quantile when --quantile is given)",
        ).choices(aggregations),
      )
      .option("--quantile <q>", "quantile in [0, 1] for --agg quantile (default 0.99)")
      .option("--by <label>", "group series by this label (repeatable); default: each series on its own", collect, undefined)
      .option("--promql", "read the argument as PromQL even when it is a bare metric name (instant selector: the latest sample within 5 minutes)")
      .option("--json", "print the QueryResponse as JSON"),
  ).action((metric: string, flags: QueryFlags) =>
    runClient(flags, async (connection) => {
      const request = queryRequest(metric, flags, Date.now());
      const response = await daemonClient(MetricsAPI, connection).query(request);
      process.stdout.write(flags.json ? JSON.stringify(toJson(QueryResponseSchema, response)) + "\n" : formatQuery(response));
    }),
  );

  addClientOptions(
    program
      .command("metrics")
      .description("list the known metrics with their kinds, series counts and labels (metrics.API/List)")
      .option("--prefix <prefix>", "only metrics whose name starts with this")
      .option("--json", "print the ListResponse as JSON"),
  ).action((flags: MetricsFlags) =>
    runClient(flags, async (connection) => {
      const response = await daemonClient(MetricsAPI, connection).list({ prefix: flags.prefix ?? "" });
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListResponseSchema, response)) + "\n" : formatMetrics(response));
    }),
  );
}

/** A bare metric name is queried with Query's aggregations; anything else is a PromQL expression. */
const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Builds the QueryRequest of `specta query`; leaves out what the daemon defaults itself. */
export function queryRequest(metric: string, flags: QueryFlags, nowMs: number) {
  const range = queryRange(flags, nowMs);
  if (flags.promql || !metricName.test(metric)) {
    const metricOnly = (["match", "agg", "quantile", "by"] as const).filter((f) => flags[f] !== undefined);
    if (metricOnly.length > 0) {
      const named = metricOnly.map((f) => `--${f}`).join(", ");
      throw new ClientError(
        `${named} ${metricOnly.length === 1 ? "applies" : "apply"} to a metric, not to a PromQL expression: write it in the expression`,
      );
    }
    return create(QueryRequestSchema, { expr: metric, ...range });
  }
  // Unset, the daemon chooses by the metric's kind.
  const aggName = flags.agg ?? (flags.quantile !== undefined ? "quantile" : undefined);
  const quantile = flags.quantile === undefined ? 0.99 : Number(flags.quantile);
  if (flags.quantile !== undefined && (flags.quantile.trim() === "" || !Number.isFinite(quantile))) {
    throw new ClientError(`--quantile "${flags.quantile}" is not a number`);
  }
  return create(QueryRequestSchema, {
    metric,
    matchers: (flags.match ?? []).map((text) => parseMatcher(text)),
    ...range,
    ...(aggName ? { aggregation: Aggregation[aggName.toUpperCase() as Uppercase<AggregationName>] } : {}),
    groupBy: flags.by ?? [],
    ...(aggName === "quantile" ? { quantile } : {}),
  });
}

/** The start, end and step of --since, --until and --step, as QueryRequest fields; unset ones left out. */
function queryRange(flags: QueryFlags, nowMs: number) {
  let stepMs: number | undefined;
  if (flags.step !== undefined) {
    stepMs = parseDuration(flags.step);
    if (stepMs === undefined || stepMs <= 0) throw new ClientError(`--step "${flags.step}" is not a duration such as 30s, 1m or 1h`);
  }
  // With --since alone, the end is this command's "now" too, so that the range is exactly what
  // was asked (the daemon's clock would add the call's latency).
  const end = flags.until !== undefined ? parseWhen(flags.until, "--until", nowMs) : flags.since !== undefined ? nowMs : undefined;
  const start = flags.since === undefined ? undefined : parseWhen(flags.since, "--since", nowMs);
  return {
    ...(start !== undefined ? { start: timestampFromMs(start) } : {}),
    ...(end !== undefined ? { end: timestampFromMs(end) } : {}),
    ...(stepMs !== undefined ? { step: durationFromMs(stepMs) } : {}),
  };
}

const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/;

/** A time given as a duration ago ("1h") or as an RFC 3339 time; returns Unix ms. */
export function parseWhen(text: string, flag: string, nowMs: number): number {
  const ago = parseDuration(text);
  if (ago !== undefined) return nowMs - ago;
  const t = rfc3339.test(text.trim()) ? Date.parse(text.trim()) : NaN;
  if (Number.isNaN(t))
    throw new ClientError(`${flag} "${text}" is neither a duration ago (e.g. 1h) nor an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)`);
  return t;
}

const matcherOperators: Record<string, MatchOperator> = {
  "=": MatchOperator.EQUAL,
  "!=": MatchOperator.NOT_EQUAL,
  "=~": MatchOperator.REGEX,
  "!~": MatchOperator.NOT_REGEX,
};

/** Parses k=v, k!=v, k=~re and k!~re (a label key holds none of = ! ~, so the first operator splits); `what` names it in errors. */
export function parseMatcher(text: string, what = "--match"): Omit<Matcher, "$typeName"> {
  const m = /^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)$/s.exec(text);
  if (!m) throw new ClientError(`${what} "${text}" is not label=value, label!=value, label=~regex or label!~regex`);
  return { label: m[1]!, operator: matcherOperators[m[2]!]!, value: m[3]! };
}

/** Prometheus-style label text: {a="1", b="2"}, keys sorted. */
export function formatLabels(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  return `{${keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(", ")}}`;
}

function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

/** Numbers as people read them: at most 12 significant digits, no float noise (0.30000000000000004). */
export function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(12)));
}

/** One block per series: its labels, then one "time  value" row per point. */
export function formatQuery(response: QueryResponse): string {
  if (response.series.length === 0) return "(no data)\n";
  return response.series
    .map((s) => {
      const rows = s.points.map((p) => `  ${formatTime(p.time ? timestampMs(p.time) : 0)}  ${formatNumber(p.value)}`);
      return [formatLabels(s.labels), ...rows].join("\n") + "\n";
    })
    .join("\n");
}

const kindNames: Record<number, string> = { [Kind.COUNTER]: "counter", [Kind.GAUGE]: "gauge", [Kind.HISTOGRAM]: "histogram" };

type MetricInfo = ListResponse["metrics"][number];

/** A label value as the table shows it: quoted when it holds a separator (comma, space, quote, =) or is empty. */
export function formatLabelValue(value: string): string {
  return value === "" || /[\s,"=\\]/.test(value) ? JSON.stringify(value) : value;
}

/** Label keys with their values when there are few, else how many there are. */
function labelSummary(labels: MetricInfo["labels"]): string {
  return labels
    .map(({ key, values }) =>
      values.length <= 3 ? `${key}=${values.map(formatLabelValue).join(",")}` : `${key}=(${values.length}${values.length >= 1000 ? "+" : ""} values)`,
    )
    .join(" ");
}

/**
 * The rows of the table: a histogram's _bucket, _sum and _count series are one instrument, named
 * without the suffix, counted by its _count series, with its labels and its buckets' le.
 */
export function instrumentsOf(metrics: MetricInfo[]): { name: string; kind: string; series: bigint; labels: MetricInfo["labels"] }[] {
  const rows: ReturnType<typeof instrumentsOf> = [];
  const histograms = new Map<string, Partial<Record<"bucket" | "sum" | "count", MetricInfo>>>();
  for (const m of metrics) {
    const part = m.kind === Kind.HISTOGRAM ? /^(.+)_(bucket|sum|count)$/.exec(m.name) : null;
    if (!part) {
      rows.push({ name: m.name, kind: kindNames[m.kind] ?? "unknown", series: m.series, labels: m.labels });
      continue;
    }
    let parts = histograms.get(part[1]!);
    if (!parts) {
      histograms.set(part[1]!, (parts = {}));
      rows.push({ name: part[1]!, kind: "histogram", series: 0n, labels: [] });
    }
    parts[part[2] as "bucket" | "sum" | "count"] = m;
  }
  for (const row of rows) {
    const parts = histograms.get(row.name);
    if (row.kind !== "histogram" || !parts) continue;
    const whole = parts.count ?? parts.sum;
    const le = parts.bucket?.labels.find((l) => l.key === "le");
    row.series = whole?.series ?? parts.bucket?.series ?? 0n;
    row.labels = [...(whole?.labels ?? parts.bucket?.labels.filter((l) => l.key !== "le") ?? []), ...(le ? [le] : [])];
  }
  return rows;
}

/** A table: name, kind, series, labels. */
export function formatMetrics(response: ListResponse): string {
  const rows = [
    ["NAME", "KIND", "SERIES", "LABELS"],
    ...instrumentsOf(response.metrics).map((m) => [m.name, m.kind, String(m.series), labelSummary(m.labels)]),
  ];
  return formatTable(rows);
}
