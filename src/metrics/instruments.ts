import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { environmentLabel, type InstrumentDeclaration, type InstrumentKind } from "../config/config.js";

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

type PromInstrument = Counter<string> | Gauge<string> | Histogram<string>;

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
              : new Histogram({ ...common, ...(declaration.buckets ? { buckets: declaration.buckets } : {}) });
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

  /** Shows a checked measurement in this daemon's /metrics. */
  apply(measurement: Measurement): void {
    const prom = this.byName.get(measurement.metric)?.prom;
    const labels = this.labelsOf(measurement);
    if (prom instanceof Counter) prom.inc(labels, measurement.number);
    else if (prom instanceof Gauge) prom.set(labels, measurement.number);
    else prom?.observe(labels, measurement.number);
  }
}
