import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import {
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  type ExportMetricsServiceRequest,
} from "../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { actorOf, outcomeOf, uniqueNames, type RecordAudit } from "../audit/event.js";
import type { Logger } from "../shared/log.js";
import type { Access } from "../tokens/access.js";
import { agentWriter, storeBatch, type PushDeps } from "../metrics/push.js";
import { readBody } from "../shared/signing.js";
import { isUnavailable } from "../storage/errors.js";
import { authenticateHttp, HttpAuthError, type HttpAuthDeps } from "../tokens/http-auth.js";
import type { Principal } from "../tokens/tokens.js";
import { Overloaded } from "../tsdb/index.js";
import { IngestRefusal } from "./errors.js";
import { ingestLimits } from "./limits.js";
import { exportMetrics, otlpMetricNames } from "./otlp.js";
import { checkRemoteWriteHeaders, decodeRemoteWrite } from "./remote-write.js";

/**
 * The plain-HTTP ingest endpoints on the daemon's port: Prometheus remote-write 1.0 at
 * /api/v1/write and OTLP/HTTP at /v1/metrics (protobuf or JSON, optionally gzip). Each needs an
 * agent or admin credential (bearer, or the password of basic auth, as Prometheus' remote_write
 * and OTel exporters send them); an agent's series get its own host label, as with Push.
 * Everything is checked from the headers before the body is read: method, credential, content
 * type and encoding, declared size. The body is then read up to its limit and decoded within it.
 */

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type NodeRequest = Parameters<NodeHandler>[0];
type NodeResponse = Parameters<NodeHandler>[1];

/** The access policy's names of the two endpoints (server/auth.ts lists who may call them). */
/** Who may write through remote-write and OTLP over HTTP: as Push, agents and admins. */
export const ingestAccess: Access = ["agent", "admin"];
export const remoteWriteProcedure = "prometheus/api/v1/write";
export const otlpHttpProcedure = "opentelemetry/v1/metrics";

export interface IngestHttpDeps {
  push: PushDeps;
  /** Checks a token against the access policy of `procedure` (the daemon passes verifyCaller). */
  authorize(procedure: string, token: string): Promise<Principal>;
  failedAuth: HttpAuthDeps["failedAuth"];
  log: Logger;
  /** Records each request as an audit event (the daemon passes AuditTrail.record). */
  audit?: RecordAudit;
}

const gunzipAsync = promisify(gunzip);

/** Wraps `next` (the daemon's handler): /api/v1/write and /v1/metrics are answered here. */
export function ingestHttp(deps: IngestHttpDeps, next: NodeHandler): NodeHandler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    const endpoint = path === "/api/v1/write" ? remoteWrite : path === "/v1/metrics" ? otlpHttp : undefined;
    if (!endpoint) return next(req, res);
    // Every failure is answered inside; what escapes is a response that could not be written.
    endpoint(deps, req, res).catch((err: unknown) => deps.log.warn({ err, path }, "ingest response failed"));
  };
}

/** A response's status, headers and body. */
interface Answer {
  status: number;
  headers: Record<string, string>;
  body?: Uint8Array | string;
}

async function remoteWrite(deps: IngestHttpDeps, req: NodeRequest, res: NodeResponse): Promise<void> {
  const call: Audited = { ts: new Date().toISOString(), metrics: [] };
  let answer: Answer;
  try {
    const caller = (call.caller = await admit(
      deps,
      req,
      res,
      remoteWriteProcedure,
      "remote-write needs an agent or admin token",
      ingestLimits.remoteWrite.body,
      () => checkRemoteWriteHeaders(req.headers),
    ));
    const batch = decodeRemoteWrite(await readLimited(req, ingestLimits.remoteWrite.body));
    call.metrics = uniqueNames(batch.map((s) => s.metric));
    const outcome = await storeBatch(batch, deps.push, { agent: agentWriter(caller), nonFinite: "keep" });
    if (outcome.refused > 0) {
      // Stored what it could; a sender retrying the rest would be refused again, so 400 (not 5xx) says so.
      const reasons = outcome.refusals.map((r) => `${r.metric}: ${r.reason}`);
      throw new IngestRefusal(400, `${outcome.accepted} samples stored, ${outcome.refused} refused: ${[...new Set(reasons)].slice(0, 5).join("; ")}`);
    }
    answer = { status: 204, headers: {} };
  } catch (err) {
    const refusal = refusalOf(err, deps.log, "remote-write");
    answer = { status: refusal.status, headers: { ...refusal.headers, "content-type": "text/plain; charset=utf-8" }, body: `${refusal.message}\n` };
  }
  audit(deps, req, remoteWriteProcedure, call, answer.status);
  send(res, answer);
}

/** What the audit trail records of an ingest request. */
interface Audited {
  ts: string;
  caller?: Principal;
  metrics: string[];
}

function audit(deps: IngestHttpDeps, req: NodeRequest, action: string, call: Audited, status: number): void {
  deps.audit?.({
    ts: call.ts,
    action,
    outcome: outcomeOf(status < 300 ? undefined : (grpcCodeOf[status] ?? Code.Unknown)),
    metrics: call.metrics,
    ip_address: req.socket.remoteAddress ?? null,
    actor: actorOf(call.caller),
  });
}

type OtlpEncoding = "protobuf" | "json";

async function otlpHttp(deps: IngestHttpDeps, req: NodeRequest, res: NodeResponse): Promise<void> {
  const type = (req.headers["content-type"] ?? "").split(";", 1)[0]!.trim().toLowerCase();
  // Answered in the request's encoding (the specification's rule), protobuf when it has none of the two.
  const encoding: OtlpEncoding = type === "application/json" ? "json" : "protobuf";
  const limits = encoding === "json" ? ingestLimits.otlpJson : ingestLimits.otlpProtobuf;
  const call: Audited = { ts: new Date().toISOString(), metrics: [] };
  let answer: Answer;
  try {
    const caller = (call.caller = await admit(deps, req, res, otlpHttpProcedure, "OTLP needs an agent or admin token", limits.body, () => {
      if (type !== "application/x-protobuf" && type !== "application/json") {
        throw new IngestRefusal(415, `OTLP/HTTP takes application/x-protobuf or application/json, got ${JSON.stringify(type)}`);
      }
      const contentEncoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
      if (contentEncoding !== "gzip" && contentEncoding !== "identity") {
        throw new IngestRefusal(415, `OTLP/HTTP bodies may be gzip-compressed or not, got Content-Encoding ${JSON.stringify(contentEncoding)}`);
      }
    }));
    let body = await readLimited(req, limits.body);
    if (/^gzip$/i.test(req.headers["content-encoding"] ?? "")) body = await gunzipLimited(body, limits.decoded);
    const request = decodeOtlp(body, encoding);
    call.metrics = uniqueNames(otlpMetricNames(request));
    const response = await exportMetrics(request, deps.push, agentWriter(caller));
    answer =
      encoding === "json"
        ? { status: 200, headers: { "content-type": "application/json" }, body: toJsonString(ExportMetricsServiceResponseSchema, response) }
        : { status: 200, headers: { "content-type": "application/x-protobuf" }, body: toBinary(ExportMetricsServiceResponseSchema, response) };
  } catch (err) {
    const refusal = refusalOf(err, deps.log, "OTLP/HTTP");
    const { headers, body } = statusBody(encoding, refusal);
    answer = { status: refusal.status, headers: { ...refusal.headers, ...headers }, body };
  }
  audit(deps, req, otlpHttpProcedure, call, answer.status);
  send(res, answer);
}

function decodeOtlp(body: Uint8Array, encoding: OtlpEncoding): ExportMetricsServiceRequest {
  try {
    return encoding === "json"
      ? // OTLP/JSON receivers must ignore fields they do not know (the specification's rule).
        fromJsonString(ExportMetricsServiceRequestSchema, Buffer.from(body).toString("utf8"), { ignoreUnknownFields: true })
      : fromBinary(ExportMetricsServiceRequestSchema, body);
  } catch (err) {
    throw new IngestRefusal(
      400,
      `the body is not an ExportMetricsServiceRequest in ${encoding === "json" ? "OTLP/JSON" : "protobuf binary"}: ${(err as Error).message}`,
    );
  }
}

/**
 * Checks a request before its body is read, cheapest first: the method, the credential (from the
 * headers, charged to the address when refused), the endpoint's own header checks, the declared
 * size. Then, if the client waits for it (Expect: 100-continue), tells it to send the body.
 */
async function admit(
  deps: IngestHttpDeps,
  req: NodeRequest,
  res: NodeResponse,
  procedure: string,
  needs: string,
  limit: number,
  checkHeaders: () => void,
): Promise<Principal> {
  if (req.method !== "POST") throw new IngestRefusal(405, `${req.url?.split("?", 1)[0]} takes POST, not ${req.method}`, { allow: "POST" });
  const auth: HttpAuthDeps = { authorize: (token) => deps.authorize(procedure, token), failedAuth: deps.failedAuth };
  const caller = await authenticateHttp(auth, req.headers.authorization, req.socket.remoteAddress, needs);
  checkHeaders();
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new IngestRefusal(413, `the body is ${declared} bytes; this endpoint takes at most ${limit}`);
  if (/^100-continue$/i.test(req.headers.expect ?? "") && "writeContinue" in res) res.writeContinue();
  return caller;
}

async function readLimited(req: NodeRequest, limit: number): Promise<Uint8Array> {
  const chunks = await readBody(req, {
    bytes: limit,
    tooLarge: () => new IngestRefusal(413, `the body is larger than ${limit} bytes, the most this endpoint takes`),
  });
  return Buffer.concat(chunks);
}

async function gunzipLimited(body: Uint8Array, limit: number): Promise<Uint8Array> {
  try {
    return await gunzipAsync(body, { maxOutputLength: limit });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw new IngestRefusal(413, `the body decompresses to more than ${limit} bytes, the most this endpoint takes`);
    }
    throw new IngestRefusal(400, `the body is not valid gzip: ${(err as Error).message}`);
  }
}

/**
 * What a failure tells the sender: its own mistakes as 4xx (not retried), a store that is behind
 * or away as 503 (retried; Prometheus retries 429 only when configured to), faults as 500.
 */
function refusalOf(
  err: unknown,
  log: Logger,
  what: string,
): IngestRefusal | { status: 401 | 403 | 429 | 500; message: string; headers: Record<string, string> } {
  if (err instanceof IngestRefusal) return err;
  if (err instanceof HttpAuthError) return { status: err.status, message: err.message, headers: err.headers };
  if (err instanceof ConnectError && err.code === Code.InvalidArgument) return new IngestRefusal(400, err.rawMessage);
  // Push's batch limits: the same request will not fit later either.
  if (err instanceof ConnectError && err.code === Code.ResourceExhausted) return new IngestRefusal(413, err.rawMessage);
  if (err instanceof Overloaded) return new IngestRefusal(503, err.message, { "retry-after": "1" });
  if (isUnavailable(err)) return new IngestRefusal(503, "the database is unavailable, retry later", { "retry-after": "5" });
  log.error({ err }, `${what} request failed`);
  return { status: 500, message: "internal error", headers: {} };
}

/** The gRPC code an OTLP/HTTP error status stands for, in its google.rpc.Status body. */
const grpcCodeOf: Record<number, Code> = {
  400: Code.InvalidArgument,
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  405: Code.Unimplemented,
  413: Code.ResourceExhausted,
  415: Code.InvalidArgument,
  429: Code.ResourceExhausted,
  503: Code.Unavailable,
  500: Code.Internal,
};

/**
 * An OTLP/HTTP error body: a google.rpc.Status (code = 1, message = 2) in the request's encoding,
 * as the specification asks. Two fields, written directly rather than declaring a foreign message
 * Specta never decodes.
 */
function statusBody(
  encoding: OtlpEncoding,
  refusal: { status: number; message: string },
): { headers: Record<string, string>; body: Uint8Array | string } {
  const code = grpcCodeOf[refusal.status] ?? Code.Unknown;
  if (encoding === "json") return { headers: { "content-type": "application/json" }, body: JSON.stringify({ code, message: refusal.message }) };
  const body = new BinaryWriter().tag(1, WireType.Varint).int32(code).tag(2, WireType.LengthDelimited).string(refusal.message).finish();
  return { headers: { "content-type": "application/x-protobuf" }, body };
}

function send(res: NodeResponse, answer: Answer): void {
  if (res.headersSent) return;
  const body = answer.body ?? "";
  res.writeHead(answer.status, { ...answer.headers, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
