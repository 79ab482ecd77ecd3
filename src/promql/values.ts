/** The values PromQL computes with, and the label operations its evaluation needs. */

/** A series' labels, the metric name as `__name__`; a label with an empty value is the same as no label. */
export type Labels = Readonly<Record<string, string>>;

export const nameLabel = "__name__";

export interface Sample {
  labels: Labels;
  value: number;
}

/** Samples of one series in time order (times in Unix ms); a range vector's element, or a series read from the store. */
export interface SeriesSamples {
  labels: Labels;
  times: Float64Array;
  values: Float64Array;
}

export type Value =
  | { type: "scalar"; value: number }
  | { type: "string"; value: string }
  | { type: "vector"; samples: Sample[] }
  | { type: "matrix"; series: SeriesSamples[] };

// Label sets are immutable and a series' set is the same object at every step of a range query,
// so its key and its set without the name are computed once per object.
const keys = new WeakMap<Labels, string>();
const nameless = new WeakMap<Labels, Labels>();

/** A canonical text of a label set (sorted, empty values left out): equal label sets, equal keys. */
export function labelsKey(labels: Labels): string {
  let key = keys.get(labels);
  if (key === undefined) {
    const names = Object.keys(labels)
      .filter((n) => labels[n] !== "")
      .sort();
    key = JSON.stringify(names.map((n) => [n, labels[n]]));
    keys.set(labels, key);
  }
  return key;
}

export function dropName(labels: Labels): Labels {
  if (!(nameLabel in labels)) return labels;
  let rest = nameless.get(labels);
  if (!rest) {
    const { [nameLabel]: _, ...others } = labels;
    rest = others;
    nameless.set(labels, rest);
  }
  return rest;
}

/** The labels named in `names` (present and non-empty). */
export function keepLabels(labels: Labels, names: readonly string[]): Labels {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = labels[n];
    if (v !== undefined && v !== "") out[n] = v;
  }
  return out;
}

/** The labels without those in `names`. */
export function withoutLabels(labels: Labels, names: ReadonlySet<string>): Labels {
  const out: Record<string, string> = {};
  for (const [n, v] of Object.entries(labels)) if (!names.has(n) && v !== "") out[n] = v;
  return out;
}

/**
 * The key by which vector matching and aggregation group samples (Prometheus' signatureFunc and
 * grouping keys): only the `on`/`by` labels, or every label but the `ignoring`/`without` ones and
 * the metric name.
 */
export function groupingKey(labels: Labels, on: boolean, names: readonly string[]): string {
  if (on) return JSON.stringify(names.map((n) => labels[n] ?? ""));
  // Without `ignoring` (the usual case), both steps are computed once per label set.
  if (names.length === 0) return labelsKey(dropName(labels));
  return labelsKey(withoutLabels(labels, new Set([...names, nameLabel])));
}

/** The bit pattern of Prometheus' staleness marker (value.StaleNaN): a series ended here. */
const staleBits = 0x7ff0000000000002n;
const bits = new DataView(new ArrayBuffer(8));

/** The staleness marker itself, for writers that mark a series' end (OTLP's "no recorded value" flag). */
export const staleMarker = (() => {
  bits.setBigUint64(0, staleBits);
  return bits.getFloat64(0);
})();

export function isStaleMarker(value: number): boolean {
  if (!Number.isNaN(value)) return false;
  bits.setFloat64(0, value);
  return bits.getBigUint64(0) === staleBits;
}

/**
 * A float as Prometheus writes it in JSON (Go's strconv.FormatFloat(f, 'f', -1, 64)): the
 * shortest decimal that reads back the same, never in exponent form; "+Inf", "-Inf", "NaN".
 */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Object.is(value, -0)) return "-0";
  const text = String(value);
  const e = text.indexOf("e");
  if (e < 0) return text;
  const exponent = Number(text.slice(e + 1));
  const negative = text.startsWith("-");
  const mantissa = text.slice(negative ? 1 : 0, e);
  const digits = mantissa.replace(".", "");
  const point = (mantissa.indexOf(".") < 0 ? mantissa.length : mantissa.indexOf(".")) + exponent;
  const fixed =
    point <= 0
      ? `0.${"0".repeat(-point)}${digits}`
      : point >= digits.length
        ? digits + "0".repeat(point - digits.length)
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return (negative ? "-" : "") + fixed;
}

/** The first index whose time is after `t` (times sorted). */
export function indexAfter(times: Float64Array, t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
