import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { validateReadWriteMaxBytes, type Compression, type UniversalClientFn } from "@connectrpc/connect/protocol";
import { createTransport as createConnectTransportOf } from "@connectrpc/connect/protocol-connect";
import { createTransport as createGrpcTransportOf } from "@connectrpc/connect/protocol-grpc";
import { compressionGzip, createNodeHttpClient, Http2SessionManager } from "@connectrpc/connect-node";
import { Agent as HttpsAgent } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { SecureContext } from "node:tls";
import { gzipSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { API as MetricsAPI, PushRequestSchema, type PushRequest } from "../../gen/metrics/metrics_pb.js";
import type { Logger } from "../shared/log.js";
import { signingClient } from "./signing.js";
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
  compress: async (bytes) => new Uint8Array(gzipSync(bytes)),
  decompress: compressionGzip.decompress,
};

/**
 * A transport to the daemon: gRPC (HTTP/2) by default or Connect, gzip-compressed, with the
 * agent's credential. It is what connect-node's createGrpcTransport and createConnectTransport
 * make, put together from their parts so that the HTTP client can be signingClient's.
 */
export function daemonTransport(
  server: string,
  protocol: Protocol,
  credential: () => string | undefined,
  { trust, signingKey }: CallSecurity = {},
): Transport {
  const auth: Interceptor = (next) => (req) => {
    const token = credential();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  let http: UniversalClientFn;
  if (protocol === "grpc") {
    // One session manager for every call, as createGrpcTransport keeps one.
    const sessions = new Http2SessionManager(server, {}, trust ? { secureContext: trust } : undefined);
    http = createNodeHttpClient({ httpVersion: "2", sessionProvider: () => sessions });
  } else {
    http = createNodeHttpClient({
      httpVersion: "1.1",
      ...(trust ? { nodeOptions: { agent: new HttpsAgent({ secureContext: trust, keepAlive: true }) } } : {}),
    });
  }
  const options = {
    ...validateReadWriteMaxBytes(undefined, undefined, undefined),
    baseUrl: server,
    httpClient: signingKey ? signingClient(http, signingKey) : http,
    useBinaryFormat: true,
    interceptors: [auth],
    sendCompression: gzipInTurn,
    acceptCompression: [gzipInTurn],
  };
  return protocol === "grpc" ? createGrpcTransportOf(options) : createConnectTransportOf(options);
}

/**
 * Sends spooled batches oldest first, one at a time, and removes each only once the daemon has
 * acknowledged it (committed). What a failure does to the batch is verdictOf's: retried with
 * exponential backoff and jitter, halved, dropped and counted, or kept while sending stops.
 */
export class Sender {
  private readonly client: Client<typeof MetricsAPI>;
  private attempt = 0;
  private wake: (() => void) | undefined;
  /** The oldest batch in the spool, as the pieces of it that the daemon has not acknowledged yet. */
  private current: { seq: number; pieces: PushRequest[] } | undefined;
  /** Points the daemon refused as malformed (never retried), since start. */
  rejectedPoints = 0;
  /** Push calls that failed and were retried, since start. */
  failedPushes = 0;

  constructor(
    transport: Transport,
    private readonly spool: Spool,
    private readonly log: Logger,
    private readonly backoff = retryBackoff,
    private readonly timeoutMs = 30_000,
  ) {
    this.client = createClient(MetricsAPI, transport);
  }

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
        await this.client.push(piece, { signal, timeoutMs: this.timeoutMs });
        this.settle(current);
        if (this.attempt > 0) this.log.info({ afterAttempts: this.attempt }, "daemon reachable again; sending spooled batches");
        this.attempt = 0;
      } catch (err) {
        if (signal.aborted) break;
        const error = ConnectError.from(err);
        const verdict = verdictOf(error.code);
        if (verdict === "stop") return error;
        if (verdict === "drop") {
          const points = pointsOf(piece);
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
  private next(): { seq: number; pieces: PushRequest[] } | undefined {
    const entry = this.spool.peek();
    if (!entry) return (this.current = undefined);
    if (this.current?.seq !== entry.seq) this.current = { seq: entry.seq, pieces: [entry.request] };
    return this.current;
  }

  /** The first piece is done with (acknowledged or dropped); so is the batch once no piece is left. */
  private settle(current: { seq: number; pieces: PushRequest[] }): void {
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

function pointsOf(request: PushRequest): number {
  return request.series.reduce((n, s) => n + s.times.length, 0);
}

/**
 * Two batches of about half the points each: the series split in two, or a lone series' points;
 * undefined for a batch of one point (or none), which cannot be made smaller.
 */
export function halve(request: PushRequest): [PushRequest, PushRequest] | undefined {
  const { series } = request;
  if (series.length > 1) {
    const half = pointsOf(request) / 2;
    let cut = 1;
    for (let points = series[0]!.times.length; cut < series.length - 1 && points + series[cut]!.times.length <= half; cut++) {
      points += series[cut]!.times.length;
    }
    return [create(PushRequestSchema, { series: series.slice(0, cut) }), create(PushRequestSchema, { series: series.slice(cut) })];
  }
  const only = series[0];
  if (!only || only.times.length < 2) return undefined;
  const mid = Math.ceil(only.times.length / 2);
  const part = (from: number, to?: number) =>
    create(PushRequestSchema, { series: [{ ...only, times: only.times.slice(from, to), values: only.values.slice(from, to) }] });
  return [part(0, mid), part(mid)];
}
