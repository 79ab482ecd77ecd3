import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { InstrumentDeclaration } from "../config/config.js";
import type { Logger } from "../shared/log.js";
import { readBody } from "../shared/signing.js";
import type { Matcher } from "../promql/ast.js";
import { defaultLimits, instantQuery, rangeQuery, ReadBudget, type QueryLimits } from "../promql/engine.js";
import { EvaluationError, QueryCanceled, QueryTimeout } from "../promql/errors.js";
import { parsePromql, ParseError } from "../promql/parse.js";
import { selectSeries, tsdbReader } from "../promql/tsdb-reader.js";
import { labelsKey, nameLabel, type Labels } from "../promql/values.js";
import { isUnavailable } from "../storage/errors.js";
import type { Access } from "../tokens/access.js";
import { InvalidInput, LimitExceeded, SeriesKind, type Tsdb } from "../tsdb/index.js";
import { authenticateHttp, HttpAuthError, type HttpAuthDeps } from "../tokens/http-auth.js";
import { versionInfo } from "../shared/version.js";
import { maxFormBytes, Params } from "./params.js";
import { ApiError, compareText, errorBody, instantData, labelsJson, rangeData, successBody } from "./respond.js";

/**
 * Prometheus' HTTP query API under /api/v1/ on the daemon's port, so that Grafana's Prometheus
 * data source, promtool and other clients of Prometheus can read Specta's store: query,
 * query_range, series, labels, label values, metadata and status/buildinfo, in Prometheus' JSON
 * shapes, status codes and error format. Every endpoint needs a viewer or admin credential, as
 * `Authorization: Bearer <token>` or as the password of HTTP basic auth (what Grafana's data
 * source settings offer).
 */

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type NodeRequest = Parameters<NodeHandler>[0];
type NodeResponse = Parameters<NodeHandler>[1];

export interface PromApiDeps extends HttpAuthDeps {
  tsdb: Pick<Tsdb, "series" | "readSamples">;
  /** Declared instruments: the help text /api/v1/metadata gives their metrics. */
  instruments: readonly InstrumentDeclaration[];
  log: Logger;
  limits?: Partial<QueryLimits>;
}

/** The version of Prometheus' API and PromQL semantics that Specta follows, for clients that adapt to it (Grafana reads buildinfo). */
const prometheusVersion = "3.0.0";

const prefix = "/api/v1/";

/** Who may read through the Prometheus API, under the name its refusals give it. */
/** Who may read through the Prometheus API, checked by the authorize() the daemon passes in. */
export const prometheusApiAccess: Access = ["viewer", "admin"];
export const prometheusApiName = "prometheus/api/v1";

/** Wraps `next` (the daemon's other plain HTTP routes): requests under /api/v1/ are answered here. */
export function prometheusApi(deps: PromApiDeps, next: NodeHandler): NodeHandler {
  const api = new PromApi(deps);
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://specta");
    if (!url.pathname.startsWith(prefix)) return next(req, res);
    api.handle(req, res, url).catch((err: unknown) => {
      deps.log.error({ err }, "Prometheus API request failed unexpectedly");
      send(res, 500, errorBody(new ApiError("internal", "internal error")));
    });
  };
}

type Endpoint = (params: Params, signal: AbortSignal) => Promise<{ data: unknown; warnings?: string[] }>;

class PromApi {
  private readonly reader;
  private readonly limits: QueryLimits;

  constructor(private readonly deps: PromApiDeps) {
    this.reader = tsdbReader(deps.tsdb);
    this.limits = { ...defaultLimits, ...deps.limits };
  }

  async handle(req: NodeRequest, res: NodeResponse, url: URL): Promise<void> {
    const path = url.pathname.slice(prefix.length);
    const labelValues = /^label\/([^/]+)\/values$/.exec(path);
    const endpoints: Record<string, { methods: string[]; run: Endpoint }> = {
      query: { methods: ["GET", "POST"], run: (p, s) => this.query(p, s) },
      query_range: { methods: ["GET", "POST"], run: (p, s) => this.queryRange(p, s) },
      series: { methods: ["GET", "POST"], run: (p) => this.series(p) },
      labels: { methods: ["GET", "POST"], run: (p) => this.labels(p) },
      metadata: { methods: ["GET"], run: (p) => this.metadata(p) },
      "status/buildinfo": { methods: ["GET"], run: async () => ({ data: buildInfo }) },
    };
    const endpoint = labelValues
      ? { methods: ["GET"], run: (p: Params) => this.labelValues(decodeURIComponent(labelValues[1]!), p) }
      : endpoints[path];
    try {
      if (!endpoint) throw new ApiError("not_found", `no Prometheus API endpoint at ${url.pathname}`);
      if (!endpoint.methods.includes(req.method ?? "")) {
        throw new ApiError("method_not_allowed", `${url.pathname} answers ${endpoint.methods.join(" and ")}, not ${req.method}`, {
          allow: endpoint.methods.join(", "),
        });
      }
      await authenticateHttp(this.deps, req.headers.authorization, req.socket.remoteAddress, "the Prometheus API needs a viewer or admin token");
      const params = await readParams(req, url);
      const closed = new AbortController();
      res.once("close", () => closed.abort());
      const { data, warnings } = await endpoint.run(params, closed.signal);
      send(res, 200, successBody(data, warnings));
    } catch (err) {
      const apiError = this.toApiError(err);
      send(res, apiError.status, errorBody(apiError), apiError.headers);
    }
  }

  private toApiError(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    if (err instanceof HttpAuthError) return new ApiError(err.kind, err.message, err.headers);
    if (err instanceof ParseError || err instanceof InvalidInput) return ApiError.badData(err.message);
    if (err instanceof EvaluationError || err instanceof LimitExceeded) return new ApiError("execution", err.message);
    if (err instanceof QueryTimeout) return new ApiError("timeout", err.message);
    if (err instanceof QueryCanceled) return new ApiError("canceled", err.message);
    if (err instanceof ConnectError && err.code === Code.Unavailable) return new ApiError("unavailable", err.rawMessage);
    if (isUnavailable(err)) return new ApiError("unavailable", "the database is unavailable, retry later");
    this.deps.log.error({ err }, "Prometheus API request failed");
    return new ApiError("internal", "internal error");
  }

  private queryLimits(params: Params): QueryLimits {
    const timeout = params.duration("timeout");
    // A client may ask for less time than the daemon allows, never more (as Prometheus' timeout parameter).
    return { ...this.limits, timeoutMs: timeout !== undefined && timeout > 0 ? Math.min(timeout, this.limits.timeoutMs) : this.limits.timeoutMs };
  }

  private async query(params: Params, signal: AbortSignal) {
    const time = params.optionalTime("time", Date.now());
    const expr = parsePromql(params.get("query") ?? "");
    const { value } = await instantQuery(this.reader, expr, time, { limits: this.queryLimits(params), signal, lookbackMs: lookback(params) });
    return { data: instantData(value, time) };
  }

  private async queryRange(params: Params, signal: AbortSignal) {
    const start = params.time("start");
    const end = params.time("end");
    if (end < start) throw ApiError.badData("end timestamp must not be before start time");
    const step = params.duration("step");
    if (step === undefined) throw ApiError.badData(`invalid parameter "step": cannot parse "" to a valid duration`);
    if (step <= 0) throw ApiError.badData("zero or negative query resolution step widths are not accepted. Try a positive integer");
    if ((end - start) / step > this.limits.maxSteps) {
      throw ApiError.badData(
        `exceeded maximum resolution of ${this.limits.maxSteps.toLocaleString("en-US")} points per timeseries. Try decreasing the query resolution (?step=XX)`,
      );
    }
    const expr = parsePromql(params.get("query") ?? "");
    if (expr.type !== "scalar" && expr.type !== "vector") {
      throw ApiError.badData(
        `invalid expression type "${expr.type === "matrix" ? "range vector" : "string"}" for range query, must be Scalar or instant Vector`,
      );
    }
    const result = await rangeQuery(this.reader, expr, start, end, step, { limits: this.queryLimits(params), signal, lookbackMs: lookback(params) });
    return { data: rangeData(result) };
  }

  /** The series of every match[] selector, deduplicated (the index has no time: start and end bound nothing). */
  private async matchedSeries(params: Params, required: boolean): Promise<Labels[] | undefined> {
    const selectors = params.all("match[]");
    if (selectors.length === 0) {
      if (required) throw ApiError.badData("no match[] parameter provided");
      return undefined;
    }
    // Checked as Prometheus does, though the index cannot use them.
    params.optionalTime("start", 0);
    params.optionalTime("end", 0);
    const budget = new ReadBudget(this.limits, new AbortController().signal, Date.now() + this.limits.timeoutMs);
    const out = new Map<string, Labels>();
    for (const text of selectors) {
      for (const s of await selectSeries(this.deps.tsdb, selectorMatchers(text), budget)) out.set(labelsKey(s.labels), s.labels);
    }
    return [...out.values()];
  }

  private async series(params: Params) {
    const series = (await this.matchedSeries(params, true))!.map(labelsJson);
    return truncated(series, params.limit());
  }

  private async labels(params: Params) {
    const matched = await this.matchedSeries(params, false);
    const names = new Set<string>();
    if (matched) for (const labels of matched) for (const name of Object.keys(labels)) names.add(name);
    else {
      const metrics = await this.deps.tsdb.series.list("");
      if (metrics.length > 0) names.add(nameLabel);
      for (const m of metrics) for (const l of m.labels) names.add(l.key);
    }
    return truncated([...names].sort(compareText), params.limit());
  }

  private async labelValues(name: string, params: Params) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw ApiError.badData(`invalid label name: ${JSON.stringify(name)}`);
    const matched = await this.matchedSeries(params, false);
    const values = new Set<string>();
    if (matched) {
      for (const labels of matched) if (labels[name]) values.add(labels[name]);
    } else {
      // Without match[]: from the index's summary, which lists up to maxLabelValues values per metric and label.
      for (const m of await this.deps.tsdb.series.list("")) {
        if (name === nameLabel) values.add(m.metric);
        else for (const v of m.labels.find((l) => l.key === name)?.values ?? []) values.add(v);
      }
    }
    return truncated([...values].sort(compareText), params.limit());
  }

  /** Metric families with their type (from the series' kind) and the help text of declared instruments. */
  private async metadata(params: Params) {
    const wanted = params.get("metric") ?? "";
    const limit = params.limit();
    const help = new Map(this.deps.instruments.map((i) => [i.name, i.help]));
    const families = new Map<string, { type: string; help: string; unit: string }[]>();
    for (const m of await this.deps.tsdb.series.list("")) {
      const family = m.kind === SeriesKind.histogram ? m.metric.replace(/_(bucket|sum|count)$/, "") : m.metric;
      if ((wanted !== "" && family !== wanted) || families.has(family)) continue;
      if (limit > 0 && families.size >= limit) break;
      const type = m.kind === SeriesKind.counter ? "counter" : m.kind === SeriesKind.gauge ? "gauge" : "histogram";
      families.set(family, [{ type, help: help.get(family) ?? "", unit: "" }]);
    }
    return { data: Object.fromEntries(families) };
  }
}

const buildInfo = {
  version: prometheusVersion,
  revision: versionInfo.sha,
  branch: "",
  buildUser: `specta ${versionInfo.ver}`,
  buildDate: "",
  goVersion: `none (Specta on Node ${process.versions.node})`,
};

/** The lookback_delta parameter (Prometheus 2.43+), else the default. */
function lookback(params: Params): number | undefined {
  const ms = params.duration("lookback_delta");
  return ms !== undefined && ms > 0 ? ms : undefined;
}

/** The matchers of a match[] selector, which must be a vector selector. */
function selectorMatchers(text: string): Matcher[] {
  const expr = parsePromql(text);
  if (expr.kind !== "selector" || expr.offsetMs !== 0)
    throw ApiError.badData(`invalid parameter "match[]": ${JSON.stringify(text)} is not a series selector`);
  return expr.matchers;
}

function truncated<T>(items: T[], limit: number): { data: T[]; warnings?: string[] } {
  if (limit > 0 && items.length > limit) return { data: items.slice(0, limit), warnings: ["results truncated due to limit"] };
  return { data: items };
}

/** The request's parameters: the query string, and a form-encoded POST body before it (as Go's Request.Form orders them). */
async function readParams(req: NodeRequest, url: URL): Promise<Params> {
  if (req.method !== "POST") return new Params(url.searchParams);
  const type = (req.headers["content-type"] ?? "").split(";", 1)[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") {
    throw ApiError.badData(
      `a POST to the Prometheus API must be form-encoded (Content-Type: application/x-www-form-urlencoded), got ${JSON.stringify(type)}`,
    );
  }
  const tooLarge = () => ApiError.badData(`the form body is larger than ${maxFormBytes} bytes`);
  if (Number(req.headers["content-length"] ?? 0) > maxFormBytes) throw tooLarge();
  const chunks = await readBody(req, { bytes: maxFormBytes, tooLarge });
  const merged = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
  for (const [key, value] of url.searchParams) merged.append(key, value);
  return new Params(merged);
}

function send(res: NodeResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
