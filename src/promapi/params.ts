import { parseDurationMs } from "../promql/parse.js";
import { ApiError } from "./respond.js";

/**
 * Request parameters as Prometheus' HTTP API reads them (web/api/v1/api.go): from the query
 * string and, for POST, from a form-encoded body (body values first, as Go's Request.Form).
 */

/** A form body larger than this is refused: queries are text, and match[] lists are short. */
export const maxFormBytes = 1024 * 1024;

export class Params {
  constructor(private readonly values: URLSearchParams) {}

  get(name: string): string | undefined {
    return this.values.get(name) ?? undefined;
  }

  all(name: string): string[] {
    return this.values.getAll(name);
  }

  /** A required time parameter. */
  time(name: string): number {
    const text = this.get(name) ?? "";
    const ms = parseTime(text);
    if (ms === undefined)
      throw ApiError.badData(`invalid parameter ${JSON.stringify(name)}: cannot parse ${JSON.stringify(text)} to a valid timestamp`);
    return ms;
  }

  /** An optional time parameter, `fallback` when absent or empty. */
  optionalTime(name: string, fallback: number): number {
    return (this.get(name) ?? "") === "" ? fallback : this.time(name);
  }

  /** An optional duration parameter in ms, undefined when absent or empty. */
  duration(name: string): number | undefined {
    const text = this.get(name) ?? "";
    if (text === "") return undefined;
    const ms = parseDuration(text);
    if (ms === undefined)
      throw ApiError.badData(`invalid parameter ${JSON.stringify(name)}: cannot parse ${JSON.stringify(text)} to a valid duration`);
    return ms;
  }

  /** The `limit` parameter: 0 or absent is no limit. */
  limit(): number {
    const text = this.get("limit") ?? "";
    if (text === "") return 0;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0)
      throw ApiError.badData(`invalid parameter "limit": cannot parse ${JSON.stringify(text)} to a non-negative integer`);
    return n;
  }
}

/**
 * Prometheus' parseTime: Unix seconds with up to millisecond precision ("1435781451.781"), or
 * RFC 3339 ("2015-07-01T20:10:51.781Z"); undefined for anything else.
 */
export function parseTime(text: string): number | undefined {
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) {
    const seconds = Number(text);
    const whole = Math.trunc(seconds);
    return whole * 1000 + Math.round((seconds - whole) * 1000);
  }
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Prometheus' parseDuration: seconds as a float ("15", "0.5") or a PromQL duration ("1m30s"); in ms. */
export function parseDuration(text: string): number | undefined {
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) return Math.round(Number(text) * 1000);
  try {
    return parseDurationMs(text);
  } catch {
    return undefined;
  }
}
