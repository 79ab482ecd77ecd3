import type { RangeResult } from "../promql/engine.js";
import { formatValue, type Labels, type Value } from "../promql/values.js";

/**
 * Prometheus' JSON shapes (web/api/v1/api.go and its jsoniter encoders): `{"status":"success",
 * "data":…}` or `{"status":"error","errorType":…,"error":…}`, sample values as strings ("NaN",
 * "+Inf"), times as Unix seconds.
 */

export type ErrorType =
  | "bad_data"
  | "execution"
  | "timeout"
  | "canceled"
  | "internal"
  | "unavailable"
  | "not_found"
  | "method_not_allowed"
  | "unauthorized"
  | "forbidden"
  | "too_many_requests";

/** The HTTP status Prometheus answers each error type with (Specta adds 401, 403 and 429 for its credentials). */
const statusOf: Record<ErrorType, number> = {
  bad_data: 400,
  execution: 422,
  // Prometheus' own code for a client that went away (as nginx's).
  canceled: 499,
  timeout: 503,
  unavailable: 503,
  internal: 500,
  not_found: 404,
  method_not_allowed: 405,
  unauthorized: 401,
  forbidden: 403,
  too_many_requests: 429,
};

export class ApiError extends Error {
  constructor(
    readonly type: ErrorType,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get status(): number {
    return statusOf[this.type];
  }

  static badData(message: string): ApiError {
    return new ApiError("bad_data", message);
  }
}

export function errorBody(err: ApiError): string {
  return JSON.stringify({ status: "error", errorType: err.type, error: err.message });
}

export function successBody(data: unknown, warnings: string[] = []): string {
  return JSON.stringify(warnings.length > 0 ? { status: "success", data, warnings } : { status: "success", data });
}

/** Labels as a JSON object in Prometheus' order: sorted by name, bytewise (the metric name first). */
export function labelsJson(labels: Labels): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(labels).sort(compareText)) if (labels[name] !== "") out[name] = labels[name]!;
  return out;
}

/** Bytewise order of UTF-16 strings for the names and values metrics use (Go compares bytes). */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Prometheus' labels.Compare: pairwise by name, then value; a prefix first. */
function compareLabels(a: Labels, b: Labels): number {
  const pa = Object.entries(labelsJson(a));
  const pb = Object.entries(labelsJson(b));
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const byName = compareText(pa[i]![0], pb[i]![0]);
    if (byName !== 0) return byName;
    const byValue = compareText(pa[i]![1], pb[i]![1]);
    if (byValue !== 0) return byValue;
  }
  return pa.length - pb.length;
}

/** The `data` of an instant query. */
export function instantData(value: Value, timeMs: number): unknown {
  const t = timeMs / 1000;
  switch (value.type) {
    case "scalar":
      return { resultType: "scalar", result: [t, formatValue(value.value)] };
    case "string":
      return { resultType: "string", result: [t, value.value] };
    case "vector":
      return { resultType: "vector", result: value.samples.map((s) => ({ metric: labelsJson(s.labels), value: [t, formatValue(s.value)] })) };
    case "matrix":
      return {
        resultType: "matrix",
        result: value.series.map((s) => ({
          metric: labelsJson(s.labels),
          values: Array.from(s.times, (time, i) => [time / 1000, formatValue(s.values[i]!)]),
        })),
      };
  }
}

/** The `data` of a range query: a matrix sorted by labels, as Prometheus sorts it. */
export function rangeData(result: RangeResult): unknown {
  const series = [...result.series].sort((a, b) => compareLabels(a.labels, b.labels));
  return {
    resultType: "matrix",
    result: series.map((s) => ({ metric: labelsJson(s.labels), values: s.times.map((time, i) => [time / 1000, formatValue(s.values[i]!)]) })),
  };
}
