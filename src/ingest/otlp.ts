import { create } from "@bufbuild/protobuf";
import {
  ExportMetricsServiceResponseSchema,
  type ExportMetricsServiceRequest,
  type ExportMetricsServiceResponse,
} from "../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import type { AnyValue, KeyValue } from "../../gen/opentelemetry/proto/common/v1/common_pb.js";
import {
  AggregationTemporality,
  type HistogramDataPoint,
  type Metric,
  type NumberDataPoint,
  type SummaryDataPoint,
} from "../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { storeBatch, type BatchSeries, type BatchWriter, type PushDeps } from "../metrics/push.js";
import { formatValue, staleMarker } from "../promql/values.js";
import type { Labels } from "../shared/labels.js";
import { SeriesKind, type SeriesKindNumber } from "../tsdb/index.js";

/**
 * OTLP metrics (https://opentelemetry.io/docs/specs/otlp/) mapped to series by the OpenTelemetry
 * specification's Prometheus compatibility rules
 * (https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/), as
 * Prometheus' own OTLP receiver applies them (with metric suffixes): names cleaned to
 * [a-zA-Z0-9_:], the unit appended as a word (s → seconds, By/s → bytes_per_second, "1" on a gauge
 * → ratio), cumulative monotonic sums as counters named _total, other cumulative sums and gauges
 * as gauges, explicit-bucket histograms as _bucket{le}, _sum and _count, summaries as
 * {quantile}, _sum and _count; service.namespace/service.name as the job label and
 * service.instance.id as instance. Points flagged "no recorded value" become Prometheus'
 * staleness marker.
 *
 * What Specta cannot store faithfully is refused and said in partial_success, never dropped
 * unsaid: delta temporality (a stateless receiver cannot rebuild the running total a counter
 * needs, and several daemons may share the load) and exponential histograms (Specta has no native
 * histograms). Exporters can send cumulative, explicit-bucket data instead (README).
 */

/** DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK: the series has no value any more. */
const noRecordedValue = 1;

const deltaReason =
  "delta temporality is not stored (Specta does not rebuild cumulative totals from deltas): export cumulative temporality (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)";
const unspecifiedReason = "aggregation temporality is unspecified";
const exponentialReason =
  "exponential histograms are not stored (Specta keeps classic histograms only): export explicit-bucket histograms (OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=explicit_bucket_histogram)";

/** UCUM units as Prometheus words (the specification's table). */
const unitWords: Record<string, string> = {
  d: "days",
  h: "hours",
  min: "minutes",
  s: "seconds",
  ms: "milliseconds",
  us: "microseconds",
  ns: "nanoseconds",
  By: "bytes",
  KiBy: "kibibytes",
  MiBy: "mebibytes",
  GiBy: "gibibytes",
  TiBy: "tebibytes",
  KBy: "kilobytes",
  MBy: "megabytes",
  GBy: "gigabytes",
  TBy: "terabytes",
  m: "meters",
  V: "volts",
  A: "amperes",
  J: "joules",
  W: "watts",
  g: "grams",
  Cel: "celsius",
  Hz: "hertz",
  "1": "",
  "%": "percent",
};

/** The denominators of rate units ("By/s" → per_second). */
const perUnitWords: Record<string, string> = { s: "second", m: "minute", h: "hour", d: "day", w: "week", mo: "month", y: "year" };

type Shape = "counter" | "gauge" | "histogram" | "summary";

/** A metric's Prometheus name from its OTLP name and unit. */
export function prometheusName(name: string, unit: string, shape: Shape): string {
  let tokens = name.split(/[^a-zA-Z0-9:]+/).filter((t) => t !== "");
  const slash = unit.indexOf("/");
  const [main, per] = slash < 0 ? [unit, ""] : [unit.slice(0, slash), unit.slice(slash + 1)];
  const mainWord = unitWord(main, unitWords);
  const perWord = unitWord(per, perUnitWords);
  if (mainWord !== "" && !tokens.includes(mainWord)) tokens.push(mainWord);
  if (perWord !== "" && !tokens.includes(perWord)) tokens.push("per", perWord);
  if (shape === "counter") tokens = [...tokens.filter((t) => t !== "total"), "total"];
  // Some instrumentations say "1" for counts of things; only a gauge with unit 1 is a ratio.
  if (unit === "1" && shape === "gauge") tokens = [...tokens.filter((t) => t !== "ratio"), "ratio"];
  const joined = tokens.join("_");
  return /^[0-9]/.test(joined) ? `_${joined}` : joined;
}

/** A unit (or a rate's denominator) as a word; "" for none, and for annotations such as {request}. */
function unitWord(unit: string, words: Record<string, string>): string {
  const trimmed = unit.trim();
  if (trimmed === "" || /[{}]/.test(trimmed)) return "";
  return (words[trimmed] ?? trimmed)
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t !== "")
    .join("_");
}

/**
 * An attribute key as a label name: other characters than [a-zA-Z0-9_] become _, and a name
 * starting with a digit or _ gets the prefix key (Prometheus keeps names starting with __ as they
 * are, which Specta reserves; they get it too).
 */
export function labelName(key: string): string {
  const name = key.replace(/[^a-zA-Z0-9_]/g, "_");
  if (/^[0-9]/.test(name)) return `key_${name}`;
  return name.startsWith("_") ? `key${name}` : name;
}

/** An attribute value as label text (as OpenTelemetry's AsString): scalars as text, lists and maps as JSON. */
function valueText(value: AnyValue | undefined): string {
  const v = value?.value;
  switch (v?.case) {
    case undefined:
      return "";
    case "stringValue":
      return v.value;
    case "boolValue":
    case "intValue":
      return String(v.value);
    case "doubleValue":
      return formatValue(v.value);
    case "bytesValue":
      return Buffer.from(v.value).toString("base64");
    default:
      return JSON.stringify(plain(value));
  }
}

type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

function plain(value: AnyValue | undefined): Plain {
  const v = value?.value;
  switch (v?.case) {
    case undefined:
      return null;
    case "arrayValue":
      return v.value.values.map(plain);
    case "kvlistValue":
      return Object.fromEntries(v.value.values.map((kv) => [kv.key, plain(kv.value)]));
    case "intValue":
      return Number(v.value);
    case "bytesValue":
      return Buffer.from(v.value).toString("base64");
    case "stringValue":
    case "boolValue":
    case "doubleValue":
      return v.value;
  }
}

/** Point attributes as labels; keys that clean up to the same name have their values joined with ";" in key order. Empty values are no label. */
function attributeLabels(attributes: KeyValue[]): Labels {
  const labels: Labels = Object.create(null) as Labels;
  const sorted = attributes.length > 1 ? [...attributes].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)) : attributes;
  for (const { key, value } of sorted) {
    const text = valueText(value);
    if (text === "") continue;
    const name = labelName(key);
    labels[name] = name in labels ? `${labels[name]};${text}` : text;
  }
  return labels;
}

/** The job and instance labels of a resource: service.namespace/service.name and service.instance.id. */
function targetLabels(attributes: KeyValue[]): Labels {
  const find = (key: string) => {
    const text = valueText(attributes.find((a) => a.key === key)?.value);
    return text === "" ? undefined : text;
  };
  const name = find("service.name");
  const namespace = find("service.namespace");
  const instance = find("service.instance.id");
  const labels: Labels = {};
  if (name !== undefined) labels.job = namespace === undefined ? name : `${namespace}/${name}`;
  if (instance !== undefined) labels.instance = instance;
  return labels;
}

/** The series an Export maps to, and what it refused (points, with the reasons). */
export class OtlpBatch {
  readonly series: BatchSeries[] = [];
  refused = 0;
  private readonly reasons = new Map<string, { points: number; metrics: Set<string> }>();

  add(metric: string, labels: Labels, kind: SeriesKindNumber, timeMs: number, value: number): void {
    // A Float64Array keeps a staleness marker's payload (see BatchSeries).
    this.series.push({ metric, labels, kind, times: [timeMs], values: Float64Array.of(value) });
  }

  refuse(metric: string, points: number, reason: string): void {
    if (points === 0) return;
    this.refused += points;
    const entry = this.reasons.get(reason) ?? { points: 0, metrics: new Set<string>() };
    entry.points += points;
    entry.metrics.add(metric);
    this.reasons.set(reason, entry);
  }

  /** Why points were refused, one clause per reason naming up to 5 metrics. */
  messages(): string[] {
    return [...this.reasons].map(([reason, { points, metrics }]) => {
      const names = [...metrics];
      const listed = names.slice(0, 5).join(", ") + (names.length > 5 ? ` and ${names.length - 5} more` : "");
      return `${points} points of ${listed}: ${reason}`;
    });
  }
}

/** Maps an Export request to series. */
export function otlpSeries(request: ExportMetricsServiceRequest): OtlpBatch {
  const batch = new OtlpBatch();
  for (const resourceMetrics of request.resourceMetrics) {
    const target = targetLabels(resourceMetrics.resource?.attributes ?? []);
    for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) addMetric(batch, metric, target);
  }
  return batch;
}

function addMetric(batch: OtlpBatch, metric: Metric, target: Labels): void {
  const data = metric.data;
  switch (data.case) {
    case undefined:
      return;
    case "gauge":
      return addNumbers(batch, prometheusName(metric.name, metric.unit, "gauge"), metric.name, SeriesKind.gauge, data.value.dataPoints, target);
    case "sum": {
      const refusal = temporalityRefusal(data.value.aggregationTemporality);
      if (refusal) return batch.refuse(metric.name, data.value.dataPoints.length, refusal);
      const shape = data.value.isMonotonic ? "counter" : "gauge";
      return addNumbers(batch, prometheusName(metric.name, metric.unit, shape), metric.name, SeriesKind[shape], data.value.dataPoints, target);
    }
    case "histogram": {
      const refusal = temporalityRefusal(data.value.aggregationTemporality);
      if (refusal) return batch.refuse(metric.name, data.value.dataPoints.length, refusal);
      const name = prometheusName(metric.name, metric.unit, "histogram");
      for (const point of data.value.dataPoints) addHistogram(batch, name, metric.name, point, target);
      return;
    }
    case "exponentialHistogram":
      return batch.refuse(metric.name, data.value.dataPoints.length, exponentialReason);
    case "summary": {
      const name = prometheusName(metric.name, metric.unit, "summary");
      for (const point of data.value.dataPoints) addSummary(batch, name, metric.name, point, target);
      return;
    }
  }
}

function temporalityRefusal(temporality: AggregationTemporality): string | undefined {
  if (temporality === AggregationTemporality.CUMULATIVE) return undefined;
  return temporality === AggregationTemporality.DELTA ? deltaReason : unspecifiedReason;
}

/** A point's labels: its attributes, then the resource's job and instance over them (as Prometheus sets them). */
function labelsOf(attributes: KeyValue[], target: Labels): Labels {
  return Object.assign(attributeLabels(attributes), target);
}

/** A point's time in Unix milliseconds, undefined when unset (0). */
function timeOf(point: { timeUnixNano: bigint }): number | undefined {
  return point.timeUnixNano === 0n ? undefined : Number(point.timeUnixNano / 1_000_000n);
}

function addNumbers(batch: OtlpBatch, name: string, otlpName: string, kind: SeriesKindNumber, points: NumberDataPoint[], target: Labels): void {
  for (const point of points) {
    const time = timeOf(point);
    if (time === undefined) {
      batch.refuse(otlpName, 1, "a point has no time_unix_nano");
      continue;
    }
    const value = point.value;
    if ((point.flags & noRecordedValue) !== 0) batch.add(name, labelsOf(point.attributes, target), kind, time, staleMarker);
    else if (value.case === undefined) batch.refuse(otlpName, 1, "a point has no value (as_double or as_int)");
    else batch.add(name, labelsOf(point.attributes, target), kind, time, Number(value.value));
  }
}

function addHistogram(batch: OtlpBatch, name: string, otlpName: string, point: HistogramDataPoint, target: Labels): void {
  const time = timeOf(point);
  if (time === undefined) return batch.refuse(otlpName, 1, "a point has no time_unix_nano");
  const { explicitBounds: bounds, bucketCounts: counts } = point;
  if (counts.length !== 0 && counts.length !== bounds.length + 1) {
    return batch.refuse(otlpName, 1, "bucket_counts must hold one more count than explicit_bounds");
  }
  const labels = labelsOf(point.attributes, target);
  const stale = (point.flags & noRecordedValue) !== 0;
  const kind = SeriesKind.histogram;
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += Number(counts[i] ?? 0n);
    batch.add(`${name}_bucket`, { ...labels, le: formatValue(bound) }, kind, time, stale ? staleMarker : cumulative);
  });
  batch.add(`${name}_bucket`, { ...labels, le: "+Inf" }, kind, time, stale ? staleMarker : Number(point.count));
  if (point.sum !== undefined) batch.add(`${name}_sum`, labels, kind, time, stale ? staleMarker : point.sum);
  batch.add(`${name}_count`, labels, kind, time, stale ? staleMarker : Number(point.count));
}

function addSummary(batch: OtlpBatch, name: string, otlpName: string, point: SummaryDataPoint, target: Labels): void {
  const time = timeOf(point);
  if (time === undefined) return batch.refuse(otlpName, 1, "a point has no time_unix_nano");
  const labels = labelsOf(point.attributes, target);
  const stale = (point.flags & noRecordedValue) !== 0;
  for (const q of point.quantileValues) {
    batch.add(name, { ...labels, quantile: formatValue(q.quantile) }, SeriesKind.gauge, time, stale ? staleMarker : q.value);
  }
  // _sum and _count are a histogram's kind of series, as remote-write names them (kindOfName).
  batch.add(`${name}_sum`, labels, SeriesKind.histogram, time, stale ? staleMarker : point.sum);
  batch.add(`${name}_count`, labels, SeriesKind.histogram, time, stale ? staleMarker : Number(point.count));
}

/**
 * Stores an Export as Push stores a batch (all of it validated first; a malformed series refuses
 * the whole request) and answers with partial_success when points were refused: those OTLP
 * points Specta does not store, plus the samples the store refused (a series over its limits),
 * counted as samples.
 */
/** The metric names of an export request as sent (before the mapping to Prometheus' names), for the audit trail. */
export function otlpMetricNames(request: ExportMetricsServiceRequest): string[] {
  return request.resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.name)));
}

export async function exportMetrics(
  request: ExportMetricsServiceRequest,
  deps: PushDeps,
  agent: BatchWriter["agent"],
): Promise<ExportMetricsServiceResponse> {
  const batch = otlpSeries(request);
  let rejected = batch.refused;
  const messages = batch.messages();
  if (batch.series.length > 0) {
    const outcome = await storeBatch(batch.series, deps, { agent, nonFinite: "keep" });
    if (outcome.refused > 0) {
      rejected += outcome.refused;
      const reasons = [...new Set(outcome.refusals.map((r) => `${r.metric}: ${r.reason}`))];
      messages.push(`the store refused ${outcome.refused} samples (${reasons.slice(0, 5).join("; ")}${reasons.length > 5 ? "; …" : ""})`);
    }
  }
  if (rejected === 0) return create(ExportMetricsServiceResponseSchema);
  return create(ExportMetricsServiceResponseSchema, { partialSuccess: { rejectedDataPoints: BigInt(rejected), errorMessage: messages.join("; ") } });
}
