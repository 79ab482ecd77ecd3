import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeStreamRegExp as connectStreamType,
  contentTypeUnaryRegExp as connectUnaryType,
  endStreamFlag,
  endStreamToJson,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcType, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { contentTypeRegExp as grpcWebType, trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { RateLimitsConfig } from "../config/config.js";
import { signatureHeader, signedProcedures } from "../shared/signing.js";
import { presentedToken, principalKey, verifyCaller } from "../tokens/access.js";
import type { Principal, TokenStore } from "../tokens/tokens.js";
import { unknownProcedure, type CallLog } from "./interceptors.js";
import type { NodeHandler, NodeRequest, NodeResponse } from "./listener.js";
import { AddressBuckets, clientKey } from "./rate-limit.js";
import { requestLimit } from "./request-limits.js";
import type { ServedProcedure } from "./routes.js";
import { RequestSigning } from "./signing.js";

/** The anonymous instrument calls, rate limited per client address. */
const instrumentCalls: ReadonlySet<string> = new Set(["metrics.API/Counter", "metrics.API/Gauge", "metrics.API/Histogram"]);

/** What the front door established about an admitted call. */
interface Admission {
  principal: Principal | undefined;
  /** The client's rate-limit key (clientKey). */
  client: string;
}

const admissionKey = createContextKey<Admission | undefined>(undefined, { description: "the front door's admission of the call" });

export interface FrontDoorDeps {
  /** Path → name and access rule of every served RPC (routes.ts: servedProcedures). */
  procedures: ReadonlyMap<string, ServedProcedure>;
  tokens: TokenStore;
  rateLimits: RateLimitsConfig;
  calls: CallLog;
  /** Told of each call the front door refuses, with the error its caller gets (the audit trail records refused writes). */
  onRefused?(procedure: string, error: ConnectError, req: NodeRequest): void;
  /** With a signing key: signed calls must carry a signature, their refusals are signed, and `signing` checks the rest. */
  signingKey?: Buffer;
}

/**
 * Decides about each RPC from its path and headers before a byte of its body is read: Connect
 * reads and decodes a whole message before any interceptor runs, so an anonymous 16 MiB Push would
 * cost its decoding before being refused. Checked cheapest first: the Authorization header's
 * shape, the declared size, the client's rate limits, then the credential (TokenStore). A refusal
 * is written in the caller's protocol; an admitted call goes on to Connect with its caller
 * (contextValues), so the credential is verified once per call.
 */
export class FrontDoor {
  private readonly instrumentCalls: AddressBuckets;
  private readonly failedAuth: AddressBuckets;
  private readonly admissions = new WeakMap<NodeRequest, Admission>();
  /** The signatures of signed calls, checked once their body is read: a wrong one counts as a failed authentication. */
  readonly signing: RequestSigning | undefined;

  constructor(private readonly deps: FrontDoorDeps) {
    this.instrumentCalls = new AddressBuckets(deps.rateLimits.instrumentCalls);
    this.failedAuth = new AddressBuckets(deps.rateLimits.failedAuth);
    this.signing = deps.signingKey && new RequestSigning(deps.signingKey, (values) => this.failedAuthentication(values));
  }

  /** Wraps Connect's node handler; paths that are not RPCs go on untouched (the plain HTTP routes). */
  handler(next: NodeHandler): NodeHandler {
    return (req, res) => {
      const started = performance.now();
      const path = (req.url ?? "").split("?", 1)[0]!;
      const procedure = this.deps.procedures.get(path);
      if (procedure === undefined) {
        if (req.method === "POST" && protocolOf(req) !== undefined) {
          this.deps.calls.failed(unknownProcedure, started, new ConnectError(`no procedure at ${path}`, Code.Unimplemented));
        }
        continueIfExpected(req, res);
        next(req, res);
        return;
      }
      this.admit(procedure, req).then(
        (admission) => {
          this.admissions.set(req, admission);
          continueIfExpected(req, res);
          next(req, res);
        },
        (err: unknown) => {
          const signing = signedProcedures.has(procedure.name) ? this.signing : undefined;
          const error = this.deps.calls.failed(procedure.name, started, err);
          this.deps.onRefused?.(procedure.name, error, req);
          refuse(req, res, error, signing && ((body) => signing.sign(body)));
        },
      );
    };
  }

  /** For connectNodeAdapter: hands handlers the caller the front door admitted. */
  contextValues(req: NodeRequest): ContextValues {
    const values = createContextValues();
    const admission = this.admissions.get(req);
    if (admission) values.set(admissionKey, admission).set(principalKey, admission.principal);
    return values;
  }

  /** Counts a failed authentication found after the front door admitted the call (a wrong signature), given the call's context values. */
  private failedAuthentication(values: ContextValues | undefined): void {
    const admission = values?.get(admissionKey);
    if (admission) this.failedAuth.charge(admission.client);
  }

  /**
   * Connect's side: tells `agentCalls` of every admitted call made with an agent credential as it
   * starts (the agents' last_seen) and, if it succeeds, as its answer goes out (for a streaming
   * call, as its stream starts): a keepalive can go with it (CommandHub.answering). Also counts a
   * handler's own Unauthenticated (a wrong enrolment token in agent.API/Register) as a failed
   * authentication of the client.
   */
  interceptor(agentCalls: { started(agentId: string): void; answered(agentId: string): void }): Interceptor {
    return (next) => async (req) => {
      const admission = req.contextValues.get(admissionKey);
      // Connect routes exactly the paths the front door checks; a call without an admission is a bug, refused.
      if (!admission) throw new ConnectError(`${req.url} reached its handler without passing the front door`, Code.Internal);
      const agentId = admission.principal?.agentId;
      if (agentId) agentCalls.started(agentId);
      try {
        const res = await next(req);
        if (agentId) agentCalls.answered(agentId);
        return res;
      } catch (err) {
        if (ConnectError.from(err).code === Code.Unauthenticated) this.failedAuth.charge(admission.client);
        throw err;
      }
    };
  }

  private async admit({ name: procedure, access }: ServedProcedure, req: NodeRequest): Promise<Admission> {
    const headers = req.headers as IncomingHttpHeaders;
    const client = clientKey(req.socket.remoteAddress);
    const token = presentedToken(procedure, access, headers.authorization);
    const limit = requestLimit(procedure);
    const declared = Number(headers["content-length"] ?? 0);
    if (declared > limit) {
      throw new ConnectError(`the request body is ${declared} bytes; ${procedure} takes at most ${limit}`, Code.ResourceExhausted);
    }
    if (instrumentCalls.has(procedure)) throttle(this.instrumentCalls.take(client), "instrument calls");
    // The signature itself is checked once the body is read (signing.ts); a call without one is refused unread.
    if (this.signing && signedProcedures.has(procedure) && !/^[0-9a-f]{64}$/i.test(String(headers[signatureHeader.toLowerCase()] ?? ""))) {
      throw new ConnectError(
        `${procedure} must be signed: send a ${signatureHeader} header with the hex HMAC-SHA256 of the body`,
        Code.Unauthenticated,
      );
    }
    if (token === undefined && access !== "own-secret") return { principal: undefined, client };
    // Refused before the secret is even looked at: guessing is what this limit slows down.
    throttle(this.failedAuth.wait(client), "failed authentications");
    if (token === undefined) return { principal: undefined, client };
    try {
      return { principal: await verifyCaller(procedure, access, token, this.deps.tokens), client };
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) this.failedAuth.charge(client);
      throw err;
    }
  }
}

/**
 * An HTTP/1.1 client that sent "Expect: 100-continue" waits for "100 Continue" before sending its
 * body; the listener leaves that to the front door, which says it once a call is admitted (or is
 * not an RPC), so that a refused client never sends its body at all.
 */
function continueIfExpected(req: NodeRequest, res: NodeResponse): void {
  if (!("stream" in req) && /^100-continue$/i.test(req.headers.expect ?? "") && "writeContinue" in res) res.writeContinue();
}

/** Throws ResourceExhausted with a retry hint (the retry-after header, in whole seconds) when `waitSeconds` is set. */
function throttle(waitSeconds: number | undefined, what: string): void {
  if (waitSeconds === undefined) return;
  const seconds = Math.max(1, Math.ceil(waitSeconds));
  throw new ConnectError(`too many ${what} from this address; retry after ${seconds} s`, Code.ResourceExhausted, { "retry-after": String(seconds) });
}

type Protocol = "grpc" | "grpc-web" | "connect-stream" | "connect-unary";

/** The RPC protocol of a request's content type (Twirp's is Connect unary's by now, see twirp.ts); undefined: none. */
function protocolOf(req: NodeRequest): Protocol | undefined {
  const contentType = (req.headers as IncomingHttpHeaders)["content-type"] ?? "";
  if (grpcWebType.test(contentType)) return "grpc-web";
  if (grpcType.test(contentType)) return "grpc";
  if (connectStreamType.test(contentType)) return "connect-stream";
  if (connectUnaryType.test(contentType)) return "connect-unary";
  return undefined;
}

/** Node's HTTP/1 and HTTP/2 responses, as far as a refusal uses them (their union's overloads are not callable as one). */
interface Writable {
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): void;
  end(chunk?: Uint8Array): unknown;
}

/**
 * Answers with `error` the way Connect itself would in the request's protocol (the listener then
 * stops reading the body), with the body's signature when `sign` is given (a signed procedure).
 */
function refuse(req: NodeRequest, res: NodeResponse, error: ConnectError, sign?: (body: Uint8Array) => string): void {
  const out = res as unknown as Writable;
  const contentType = (req.headers as IncomingHttpHeaders)["content-type"] ?? "application/json";
  const answer = (status: number, headers: OutgoingHttpHeaders, body: Uint8Array) => {
    out.writeHead(status, { ...headers, ...(sign ? { [signatureHeader.toLowerCase()]: sign(body) } : {}) });
    return body;
  };
  // Connect's GET requests carry no content type.
  switch (protocolOf(req) ?? "connect-unary") {
    case "grpc":
      answer(200, { "content-type": contentType }, new Uint8Array(0));
      out.addTrailers(Object.fromEntries(setTrailerStatus(new Headers(), error)));
      out.end();
      break;
    case "grpc-web":
      out.end(answer(200, { "content-type": contentType }, encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(new Headers(), error)))));
      break;
    case "connect-stream":
      out.end(
        answer(
          200,
          { "content-type": contentType },
          encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(endStreamToJson(error.metadata, error, undefined)))),
        ),
      );
      break;
    case "connect-unary":
      out.end(
        answer(
          codeToHttpStatus(error.code),
          { ...Object.fromEntries(error.metadata), "content-type": "application/json" },
          errorToJsonBytes(error, undefined),
        ),
      );
      break;
  }
}
