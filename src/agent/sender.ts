import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  compressedFlag,
  createAsyncIterable,
  createDeadlineSignal,
  createLinkedAbortController,
  createMethodUrl,
  encodeEnvelope,
  getAbortSignalReason,
  readAllBytes,
  validateReadWriteMaxBytes,
  type Compression,
  type UniversalClientFn,
} from "@connectrpc/connect/protocol";
import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import { compressionGzip, createNodeHttpClient, Http2SessionManager } from "@connectrpc/connect-node";
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { Agent as HttpsAgent } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { SecureContext } from "node:tls";
import { gzipSync } from "node:zlib";
import { API as MetricsAPI } from "../../gen/metrics/metrics_pb.js";
import type { Logger } from "../shared/log.js";
import { signature, signatureHeader, signatureMatches, signedProcedures } from "../shared/signing.js";
import { halve, pushRequestBytes, type EncodedBatch } from "./batch.js";
import { answerTooLargeError, maxAnswerBytes, signingClient, unsignedAnswerError } from "./signing.js";
import type { Spool } from "./spool.js";

export type Protocol = "grpc" | "connect";

/**
 * What a failed Push means for its batch. Only an answer about the batch itself may lose it:
 * - "drop": InvalidArgument, the daemon read the batch and will never store it (malformed);
 *   it is dropped, counted and logged, so that it cannot block the batches behind it.
 * - "stop": Unauthenticated, PermissionDenied, the daemon refuses this agent (deregistered, its
 *   credential revoked); nothing it sends can succeed, so sending stops, the batch kept.
 * - "halve": ResourceExhausted, either the batch is larger than this daemon takes (it would be
 *   refused forever) or the daemon is writing behind: the batch is sent again in two halves,
 *   after the backoff. Halves always fit in the end (one point does), and while the daemon is
 *   behind they cost a few more calls, never a point.
 * - "retry": everything else. A daemon that dies mid-call reaches the agent as Canceled,
 *   Unknown, Internal or Unavailable, which say nothing about the batch: it is sent again,
 *   with backoff, for as long as it takes (the spool is bounded).
 */
type Verdict = "drop" | "stop" | "halve" | "retry";

function verdictOf(code: Code): Verdict {
  switch (code) {
    case Code.InvalidArgument:
      return "drop";
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return "stop";
    case Code.ResourceExhausted:
      return "halve";
    default:
      return "retry";
  }
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** Waits between retries while the daemon is away: up to 10 s, so that a returning daemon is found soon. */
export const retryBackoff: BackoffOptions = { initialMs: 500, maxMs: 10_000 };

/** Full jitter: a random wait up to the exponential bound, so that many agents do not retry in step. */
export function backoffMs(attempt: number, { initialMs, maxMs }: BackoffOptions): number {
  return Math.random() * Math.min(maxMs, initialMs * 2 ** attempt);
}

/** What protects the agent's calls: TLS trust and request signing. */
export interface CallSecurity {
  /** For an https:// daemon: the CAs its certificate must be signed by. */
  trust?: SecureContext;
  /** With a signing key, the signed calls are signed and their answers checked (signing.ts). */
  signingKey?: Buffer;
}

/**
 * gzip as connect-node's compressionGzip, but compressing in the calling turn: a batch is a few
 * KiB, which zlib compresses in a fraction of a millisecond, while the asynchronous API hands
 * each one to libuv's thread pool and back, waking the process once more per push (on the
 * machines measured a wakeup costs more CPU than the compression; npm run bench:agent).
 * Answers, small, are decompressed by connect-node's.
 */
const gzipInTurn: Compression = {
  name: compressionGzip.name,
  compress: async (bytes) => new Uint8Array(gzip(bytes)),
  decompress: compressionGzip.decompress,
};

/**
 * gzip with an 8 KiB window and a smaller hash table than zlib's defaults (32 KiB, memLevel 8): a
 * compressor of ~48 KiB where the defaults make ~256 KiB, set up (and its hash table cleared)
 * afresh for every push. A 10-second batch of ~12 KB compresses 6.5 times either way; any gzip
 * reader takes the smaller window.
 */
function gzip(bytes: Uint8Array): Buffer {
  return gzipSync(bytes, { windowBits: 13, memLevel: 5 });
}

/** Sends one encoded PushRequest: resolves once the daemon has acknowledged it (committed), else rejects with a ConnectError. */
export type PushCall = (request: Uint8Array, signal: AbortSignal, timeoutMs: number) => Promise<void>;

/** The agent's calls to its daemon: Push on its own lean path, everything else through a Connect transport. Both share one HTTP client. */
export interface DaemonConnection {
  transport: Transport;
  push: PushCall;
}

/**
 * The agent's connection to the daemon: gRPC (HTTP/2) by default or Connect, gzip-compressed,
 * with the agent's credential. The transport is what connect-node's createGrpcTransport and
 * createConnectTransport make, put together from their parts so that the HTTP client can be
 * signingClient's.
 */
export function daemonConnection(
  server: string,
  protocol: Protocol,
  credential: () => string | undefined,
  { trust, signingKey }: CallSecurity = {},
): DaemonConnection {
  const auth: Interceptor = (next) => (req) => {
    for (const [name, value] of Object.entries(bearer(credential))) req.header.set(name, value);
    return next(req);
  };
  let http: UniversalClientFn;
  // One session manager for every call, Push included, as createGrpcTransport keeps one.
  const sessions = protocol === "grpc" ? new Http2SessionManager(server, {}, trust ? { secureContext: trust } : undefined) : undefined;
  if (sessions) http = createNodeHttpClient({ httpVersion: "2", sessionProvider: () => sessions });
  else {
    http = createNodeHttpClient({
      httpVersion: "1.1",
      ...(trust ? { nodeOptions: { agent: new HttpsAgent({ secureContext: trust, keepAlive: true }) } } : {}),
    });
  }
  if (signingKey) http = signingClient(http, signingKey);
  const options = {
    ...validateReadWriteMaxBytes(undefined, undefined, undefined),
    baseUrl: server,
    httpClient: http,
    useBinaryFormat: true,
    interceptors: [auth],
    sendCompression: gzipInTurn,
    acceptCompression: [gzipInTurn],
  };
  return {
    transport: protocol === "grpc" ? grpc.createTransport(options) : connect.createTransport(options),
    push: sessions
      ? grpcPush(sessions, createMethodUrl(server, MetricsAPI.method.push), credential, signingKey)
      : connectPush(http, createMethodUrl(server, MetricsAPI.method.push), credential),
  };
}

/** The daemon's transport alone (daemonConnection's), for callers that do not push. */
export function daemonTransport(...args: Parameters<typeof daemonConnection>): Transport {
  return daemonConnection(...args).transport;
}

/** The agent's credential as a header, for the transport's calls and Push alike; none before enrolment. */
function bearer(credential: () => string | undefined): Record<string, string> {
  const token = credential();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Push's answer is read as far as connect's transports read one (their default readMaxBytes). */
const { readMaxBytes } = validateReadWriteMaxBytes(undefined, undefined, undefined);

/**
 * metrics.API/Push of an already encoded request (batch.ts) over the Connect protocol (HTTP/1.1),
 * straight on the HTTP client: the unary call of connect's Connect transport without its generic
 * machinery (interceptors, the message's serialization, async-iterable pipelines). The headers,
 * status and error handling are connect's own (protocol-connect). The answer, PushResponse, is
 * not needed: a call that succeeds has stored the batch.
 */
function connectPush(http: UniversalClientFn, url: string, credential: () => string | undefined): PushCall {
  return async (request, signal, timeoutMsAsked) => {
    // As connect's transports: no deadline for 0 or less.
    const timeoutMs = timeoutMsAsked > 0 ? timeoutMsAsked : undefined;
    const deadline = createDeadlineSignal(timeoutMs);
    const linked = createLinkedAbortController(signal, deadline.signal);
    try {
      const header = connect.requestHeaderWithCompression("unary", true, timeoutMs, bearer(credential), [gzipInTurn], gzipInTurn, true);
      header.set(connect.headerUnaryEncoding, gzipInTurn.name);
      const res = await http({ url, method: "POST", header, body: createAsyncIterable([gzip(request)]), signal: linked.signal });
      const { compression, isUnaryError, unaryError } = connect.validateResponseWithCompression("unary", [gzipInTurn], true, res.status, res.header);
      const answer = await readAllBytes(res.body, readMaxBytes);
      // Only an error's answer is read: a success's (PushResponse) is not needed.
      if (isUnaryError)
        throw connect.errorFromJsonBytes(compression ? await compression.decompress(answer, readMaxBytes) : answer, res.header, unaryError);
    } catch (err) {
      // As connect's calls: a call cut short says why (DeadlineExceeded, Canceled), not how it ended.
      throw ConnectError.from(linked.signal.aborted ? getAbortSignalReason(linked.signal) : err, Code.Canceled);
    } finally {
      deadline.cleanup();
      // Detaches the call from the agent's signal. With a reason made once: abort() without one
      // makes a DOMException, stack trace and all, after every push.
      linked.abort(pushSettled);
    }
  };
}

/**
 * metrics.API/Push of an already encoded request (batch.ts) over gRPC, as one HTTP/2 stream on
 * the session manager's connection, the one the agent's other calls share. Push is the agent's
 * call every 10 s, and connect-node's HTTP client costs most of a push's CPU in V8's interpreter
 * (the agent runs without the optimising compilers, bin/specta.js): its sentinel (a ConnectError
 * built for every successful call), async iterables for the request and the answer, and Headers
 * objects converted both ways (npm run bench:agent measures the agent). Here the request's fixed
 * headers are connect's own (protocol-grpc), made once; an answer that is plainly a success is
 * taken as it comes, and any other is judged by connect's own gRPC checks, in its transport's
 * order, so that the Sender acts on the codes connect's client would give (a stream reset aside: grpcResetError).
 */
function grpcPush(sessions: Http2SessionManager, url: string, credential: () => string | undefined, signingKey: Buffer | undefined): PushCall {
  const path = new URL(url).pathname;
  const fixedHeaders: OutgoingHttpHeaders = Object.fromEntries(
    grpc.requestHeaderWithCompression(true, undefined, undefined, [gzipInTurn], gzipInTurn),
  );
  const signed = signingKey !== undefined && signedProcedures.has(path.slice(1));
  return (request, signal, timeoutMsAsked) =>
    new Promise<void>((resolve, reject) => {
      const body = encodeEnvelope(compressedFlag, gzip(request));
      const headers: OutgoingHttpHeaders = { ...fixedHeaders, ...bearer(credential) };
      // As connect's transports: no deadline for 0 or less.
      if (timeoutMsAsked > 0) headers[grpc.headerTimeout.toLowerCase()] = `${timeoutMsAsked}m`;
      if (signed) headers[signatureHeader.toLowerCase()] = signature(signingKey, [body]);
      let stream: ClientHttp2Stream | undefined;
      let settled = false;
      const settle = (error: ConnectError | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        signal.removeEventListener("abort", onAbort);
        if (!error) return resolve();
        // As connect-node: a call given up on is reset with CANCEL.
        if (stream && !stream.closed) stream.close(h2.NGHTTP2_CANCEL);
        reject(error);
      };
      const onAbort = () => settle(ConnectError.from(getAbortSignalReason(signal), Code.Canceled));
      const deadline =
        timeoutMsAsked > 0 ? setTimeout(() => settle(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMsAsked) : undefined;
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort);
      sessions.request("POST", path, headers, {}).then(
        (opened) => {
          stream = opened;
          let header: IncomingHttpHeaders | undefined;
          let trailer: IncomingHttpHeaders = {};
          const answer: Buffer[] = [];
          let answerBytes = 0;
          // Listened to before anything else: a stream given up on may still be destroyed with an error later.
          opened
            .on("error", (err: NodeJS.ErrnoException) =>
              // A reset of this stream by the peer, or the connection's own failure (then its error says more).
              settle(err.code === "ERR_HTTP2_STREAM_ERROR" && opened.rstCode ? grpcResetError(opened.rstCode) : grpcStreamError(err)),
            )
            .on("close", () =>
              settle(header ? grpcAnswerError(header, trailer, answer, signed ? signingKey : undefined) : grpcResetError(opened.rstCode)),
            );
          if (settled) return void opened.close(h2.NGHTTP2_CANCEL);
          opened
            .on("response", (received) => (header = received))
            .on("trailers", (received) => (trailer = received))
            .on("data", (chunk: Buffer) => {
              answerBytes += chunk.length;
              // PushResponse is a few bytes: read no more than a signed call's answer.
              if (answerBytes > maxAnswerBytes) return settle(answerTooLargeError());
              answer.push(chunk);
              sessions.notifyResponseByteRead(opened);
            })
            .end(body);
        },
        (err: unknown) => settle(grpcStreamError(err)),
      );
    });
}

/**
 * What a complete gRPC answer to Push means: undefined for a success, else the ConnectError that
 * connect's gRPC transport would raise (and signingClient's checks, with a signing key).
 */
function grpcAnswerError(
  header: IncomingHttpHeaders,
  trailer: IncomingHttpHeaders,
  answer: Buffer[],
  signingKey: Buffer | undefined,
): ConnectError | undefined {
  if (signingKey && !signatureMatches(signingKey, answer, headerValue(header[signatureHeader.toLowerCase()]))) {
    return unsignedAnswerError();
  }
  const encoding = header[grpc.headerEncoding.toLowerCase()];
  const plainSuccess =
    Number(header[":status"]) === 200 &&
    grpc.contentTypeRegExp.test(headerValue(header["content-type"]) ?? "") &&
    (encoding === undefined || encoding === gzipInTurn.name || encoding === "identity") &&
    header[grpc.headerGrpcStatus.toLowerCase()] === undefined &&
    trailer[grpc.headerGrpcStatus.toLowerCase()] === grpc.grpcStatusOk &&
    answer.length > 0;
  if (plainSuccess) return undefined;
  try {
    const headers = webHeaders(header);
    const trailers = webHeaders(trailer);
    const { headerError } = grpc.validateResponseWithCompression([gzipInTurn], Number(header[":status"] ?? 0), headers);
    // The checks, their order and their codes are those of connect's gRPC transport.
    grpc.validateTrailer(trailers, headers);
    if (answer.length === 0) {
      if (headerError) return headerError;
      return new ConnectError(
        "protocol error: missing output message for unary method",
        trailers.has(grpc.headerGrpcStatus) ? Code.Unimplemented : Code.Unknown,
      );
    }
    if (headerError) return new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
    return undefined;
  } catch (err) {
    return ConnectError.from(err);
  }
}

/** A Node header's value as one string, as Headers would hold it. */
function headerValue(value: string | string[] | number | undefined): string | undefined {
  return value === undefined ? undefined : Array.isArray(value) ? value.join(", ") : String(value);
}

/** Node's headers (pseudo-headers left out) as a Headers object, for connect's checks. */
function webHeaders(node: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(node)) {
    const text = headerValue(value);
    if (!name.startsWith(":") && text !== undefined) out.set(name, text);
  }
  return out;
}

/**
 * A stream the daemon (or a proxy) reset before its answer was complete. ENHANCE_YOUR_CALM asks
 * the caller to send less: ResourceExhausted, so the batch is halved after the backoff; any other
 * reset is retried (Unavailable). connect-node's client says Internal (Canceled for CANCEL), which
 * is retried too.
 */
function grpcResetError(rstCode: number): ConnectError {
  return new ConnectError(
    `the daemon reset the stream with HTTP/2 error code 0x${rstCode.toString(16)}`,
    rstCode === h2.NGHTTP2_ENHANCE_YOUR_CALM ? Code.ResourceExhausted : Code.Unavailable,
  );
}

/** A failure to open or carry the stream: the daemon is out of reach, or the connection broke. */
function grpcStreamError(err: unknown): ConnectError {
  return err instanceof ConnectError ? err : ConnectError.from(err, Code.Unavailable);
}

/** Why a push's own signal is aborted once the push has settled (nothing is listening by then). */
const pushSettled = new Error("push settled");

/**
 * Sends spooled batches oldest first, one at a time, and removes each only once the daemon has
 * acknowledged it (committed). What a failure does to the batch is verdictOf's: retried with
 * exponential backoff and jitter, halved, dropped and counted, or kept while sending stops.
 */
export class Sender {
  private attempt = 0;
  private wake: (() => void) | undefined;
  /** The oldest batch in the spool, as the pieces of it that the daemon has not acknowledged yet. */
  private current: { seq: number; pieces: EncodedBatch[] } | undefined;
  /** Points the daemon refused as malformed (never retried), since start. */
  rejectedPoints = 0;
  /** Push calls that failed and were retried, since start. */
  failedPushes = 0;

  constructor(
    private readonly push: PushCall,
    private readonly spool: Spool,
    private readonly log: Logger,
    private readonly backoff = retryBackoff,
    private readonly timeoutMs = 30_000,
  ) {}

  /** Tells a waiting run() that a new batch is in the spool. */
  notify(): void {
    this.wake?.();
  }

  /**
   * Sends until `signal` aborts (resolves undefined), or until the daemon refuses this agent's
   * credential: then resolves with that refusal, and the batch stays in the spool.
   */
  async run(signal: AbortSignal): Promise<ConnectError | undefined> {
    while (!signal.aborted) {
      const current = this.next();
      if (!current) {
        await this.idle(signal);
        continue;
      }
      const piece = current.pieces[0]!;
      try {
        await this.push(pushRequestBytes(piece.series), signal, this.timeoutMs);
        this.settle(current);
        if (this.attempt > 0) this.log.info({ afterAttempts: this.attempt }, "daemon reachable again; sending spooled batches");
        this.attempt = 0;
      } catch (err) {
        if (signal.aborted) break;
        const error = ConnectError.from(err);
        const verdict = verdictOf(error.code);
        if (verdict === "stop") return error;
        if (verdict === "drop") {
          const { points } = piece;
          this.settle(current);
          this.rejectedPoints += points;
          this.attempt = 0;
          this.log.error(
            { code: Code[error.code], reason: error.rawMessage, points, rejectedPoints: this.rejectedPoints },
            "daemon refused a batch as malformed; dropped it",
          );
          continue;
        }
        if (verdict === "halve") current.pieces.splice(0, 1, ...(halve(piece) ?? [piece]));
        this.failedPushes++;
        if (this.attempt === 0) {
          this.log.warn(
            { code: Code[error.code], reason: error.rawMessage, spooled: this.spool.stats().batches },
            "push failed; keeping the batch and retrying",
          );
        }
        const waitMs = backoffMs(this.attempt, this.backoff);
        this.attempt++;
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      }
    }
    return undefined;
  }

  /** The oldest batch, with the pieces of it still to send; a batch the spool dropped meanwhile is forgotten. */
  private next(): { seq: number; pieces: EncodedBatch[] } | undefined {
    const entry = this.spool.peek();
    if (!entry) return (this.current = undefined);
    if (this.current?.seq !== entry.seq) this.current = { seq: entry.seq, pieces: [entry] };
    return this.current;
  }

  /** The first piece is done with (acknowledged or dropped); so is the batch once no piece is left. */
  private settle(current: { seq: number; pieces: EncodedBatch[] }): void {
    current.pieces.shift();
    if (current.pieces.length === 0) this.spool.remove(current.seq);
  }

  private async idle(signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener("abort", done, { once: true });
    });
    this.wake = undefined;
  }
}
