import {
  Counter,
  Gauge,
  Histogram,
  type HistogramConfiguration,
  type MetricObjectWithValues,
  type MetricValueWithName,
  type Registry,
} from "prom-client";
import { environmentLabel, type InstrumentDeclaration, type InstrumentKind } from "../config/config.js";
import type { Labels } from "../shared/labels.js";
import { seriesKey } from "../shared/series-key.js";

/** One measurement of a Counter, Gauge or Histogram call. */
export interface Measurement {
  metric: string;
  labels: Record<string, string>;
  number: number;
}

/** Why a measurement was refused: Specta's Reason (`kind`, `info`). */
export interface Refused {
  kind: "invalid_metric" | "undeclared_metric" | "wrong_kind" | "undeclared_label" | "invalid_number";
  info: string;
}

/** prom-client's default buckets, which a histogram declared without buckets has. */
export const defaultBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the store holds of one series of an instrument: a running total, or a gauge's latest value. */
export interface StoredValue {
  /** The instrument's name. */
  instrument: string;
  /** The series' metric: the instrument's name, or with _bucket, _sum or _count for a histogram's. */
  metric: string;
  labels: Labels;
  value: number;
}

/** A value as prom-client exports it for /metrics: le in labels, the histogram's own labels apart. */
type ExportedValue = MetricValueWithName<string> & { sharedLabels?: Partial<Record<string, string | number>> };
type Exported = MetricObjectWithValues<ExportedValue>;

/**
 * A Histogram that adds the totals restored from the store at start to what it has observed
 * since: prom-client has no way to set a histogram's state.
 */
class RestoredHistogram extends Histogram<string> {
  /** By series key (metric with its suffix; labels with le for a bucket). */
  readonly restored = new Map<string, { metricName: string; labels: Labels; value: number }>();
  /** prom-client renders /metrics from this method, which its typings leave out; get() reads it too. */
  declare getForPromString: () => Promise<Exported>;

  constructor(config: HistogramConfiguration<string>) {
    super(config);
    const own = this.getForPromString.bind(this);
    this.getForPromString = async () => this.withRestored(await own());
  }

  private withRestored(own: Exported): Exported {
    if (this.restored.size === 0) return own;
    const left = new Map(this.restored);
    const values = own.values.map((v) => {
      const labels = Object.fromEntries(Object.entries({ ...v.sharedLabels, ...v.labels }).map(([k, value]) => [k, String(value)]));
      const key = seriesKey(v.metricName ?? own.name, labels);
      const restored = left.get(key);
      if (!restored) return v;
      left.delete(key);
      return { ...v, value: v.value + restored.value };
    });
    // Label sets not observed since the start: each one's buckets (by le), then _sum and _count.
    const part = (name: string) => (name.endsWith("_bucket") ? 0 : name.endsWith("_sum") ? 1 : 2);
    const le = (labels: Labels) => (labels.le === "+Inf" ? Infinity : Number(labels.le));
    const set = (labels: Labels) => seriesKey("", { ...labels, le: "" });
    const rest = [...left.values()].sort(
      (a, b) => set(a.labels).localeCompare(set(b.labels)) || part(a.metricName) - part(b.metricName) || le(a.labels) - le(b.labels),
    );
    return { ...own, values: [...values, ...rest] };
  }
}

type PromInstrument = Counter<string> | Gauge<string> | RestoredHistogram;

interface Instrument {
  declaration: InstrumentDeclaration;
  prom: PromInstrument;
}

export const maxMetricNameLength = 255;

/**
 * The declared application instruments. Only declared names, kinds, label keys and label
 * values are accepted, which bounds the cardinality an anonymous caller can create.
 */
export class Instruments {
  private readonly byName = new Map<string, Instrument>();

  constructor(
    declarations: InstrumentDeclaration[],
    private readonly environment: string,
    registry: Registry,
  ) {
    for (const declaration of declarations) {
      const labelNames = [...Object.keys(declaration.labels), environmentLabel];
      const common = { name: declaration.name, help: declaration.help, labelNames, registers: [registry] };
      let prom: PromInstrument;
      try {
        prom =
          declaration.kind === "counter"
            ? new Counter(common)
            : declaration.kind === "gauge"
              ? new Gauge(common)
              : new RestoredHistogram({ ...common, ...(declaration.buckets ? { buckets: declaration.buckets } : {}) });
      } catch (err) {
        // prom-client refuses a name already registered, e.g. one of the daemon's own metrics.
        throw new Error(`instrument ${declaration.name} cannot be declared: ${(err as Error).message}`);
      }
      this.byName.set(declaration.name, { declaration, prom });
    }
  }

  declaration(name: string): InstrumentDeclaration | undefined {
    return this.byName.get(name)?.declaration;
  }

  declarations(): InstrumentDeclaration[] {
    return [...this.byName.values()].map((i) => i.declaration);
  }

  /** The labels a measurement is stored with: its own plus `env`. */
  labelsOf(measurement: Measurement): Record<string, string> {
    return { ...measurement.labels, [environmentLabel]: this.environment };
  }

  /** Says why a measurement cannot be recorded with an instrument of `kind`, or undefined when it can. */
  check(kind: InstrumentKind, measurement: Measurement): Refused | undefined {
    const { metric, labels, number } = measurement;
    if (metric.length === 0 || metric.length > maxMetricNameLength) {
      return { kind: "invalid_metric", info: `metric name must be 1 to ${maxMetricNameLength} characters, got ${metric.length}` };
    }
    const instrument = this.byName.get(metric);
    if (!instrument) return { kind: "undeclared_metric", info: `metric ${metric} is not declared` };
    const { declaration } = instrument;
    if (declaration.kind !== kind) {
      return { kind: "wrong_kind", info: `metric ${metric} is a ${declaration.kind}, not a ${kind}` };
    }
    for (const [key, value] of Object.entries(labels)) {
      const allowed = declaration.labels[key];
      if (!allowed) return { kind: "undeclared_label", info: `label ${key} is not declared for metric ${metric}` };
      if (!allowed.includes(value)) {
        return { kind: "undeclared_label", info: `value "${value}" is not declared for label ${key} of metric ${metric}` };
      }
    }
    if (!Number.isFinite(number)) return { kind: "invalid_number", info: `number must be finite, got ${number}` };
    if (kind !== "gauge" && number < 0) {
      return { kind: "invalid_number", info: `${kind} numbers must be >= 0, got ${number}` };
    }
    return undefined;
  }

  /**
   * Shows in /metrics what the store holds (at start, before any call): counters and histograms
   * continue from their stored totals, gauges from their latest values. Series that today's
   * declarations or environment would not accept are left out.
   */
  restore(values: StoredValue[]): void {
    for (const { instrument, metric, labels, value } of values) {
      const found = this.byName.get(instrument);
      if (!found) continue;
      const { le, ...own } = labels;
      const { declaration, prom } = found;
      if (own[environmentLabel] !== this.environment) continue;
      if (Object.entries(own).some(([k, v]) => k !== environmentLabel && !declaration.labels[k]?.includes(v))) continue;
      if (prom instanceof Counter) prom.inc(own, value);
      else if (prom instanceof Gauge) prom.set(own, value);
      else if (le === undefined || (le === "+Inf" ? true : (declaration.buckets ?? defaultBuckets).map(String).includes(le))) {
        prom.restored.set(seriesKey(metric, labels), { metricName: metric, labels, value });
      }
    }
  }

  /** Shows a checked measurement in this daemon's /metrics. */
  apply(measurement: Measurement): void {
    const prom = this.byName.get(measurement.metric)?.prom;
    const labels = this.labelsOf(measurement);
    if (prom instanceof Counter) prom.inc(labels, measurement.number);
    else if (prom instanceof Gauge) prom.set(labels, measurement.number);
    else prom?.observe(labels, measurement.number);
  }
}
