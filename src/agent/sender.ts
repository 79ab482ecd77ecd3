import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { setTimeout as sleep } from "node:timers/promises";
import { API as MetricsAPI } from "../../gen/metrics/metrics_pb.js";
import type { Logger } from "../log.js";
import type { Spool } from "./spool.js";

export type Protocol = "grpc" | "connect";

/** Errors after which the same batch is sent again later; anything else means the batch itself is refused. */
const retryable = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Unauthenticated]);
/** Server faults are retried a few times, then the batch is dropped (and counted) so that it cannot block the rest. */
const faults = new Set([Code.Internal, Code.Unknown]);
const maxFaultAttempts = 5;

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** Full jitter: a random wait up to the exponential bound, so that many agents do not retry in step. */
export function backoffMs(attempt: number, { initialMs, maxMs }: BackoffOptions): number {
  return Math.random() * Math.min(maxMs, initialMs * 2 ** attempt);
}

/** A transport to the daemon: gRPC (HTTP/2) by default or Connect, gzip-compressed, with the agent's credential. */
export function daemonTransport(server: string, protocol: Protocol, credential: () => string | undefined): Transport {
  const auth: Interceptor = (next) => (req) => {
    const token = credential();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const common = { baseUrl: server, interceptors: [auth], sendCompression: compressionGzip, acceptCompression: [compressionGzip] };
  return protocol === "grpc" ? createGrpcTransport(common) : createConnectTransport({ ...common, httpVersion: "1.1" });
}

/**
 * Sends spooled batches oldest first, one at a time, and removes each only once the daemon has
 * acknowledged it (committed). Retries with exponential backoff and jitter while the daemon is
 * away or busy; a batch the daemon refuses as malformed is dropped and counted.
 */
export class Sender {
  private readonly client: Client<typeof MetricsAPI>;
  private attempt = 0;
  private wake: (() => void) | undefined;
  /** Points the daemon refused as malformed (never retried), since start. */
  rejectedPoints = 0;
  /** Push calls that failed and were retried, since start. */
  failedPushes = 0;

  constructor(
    transport: Transport,
    private readonly spool: Spool,
    private readonly log: Logger,
    private readonly backoff: BackoffOptions = { initialMs: 500, maxMs: 30_000 },
    private readonly timeoutMs = 30_000,
  ) {
    this.client = createClient(MetricsAPI, transport);
  }

  /** Tells a waiting run() that a new batch is in the spool. */
  notify(): void {
    this.wake?.();
  }

  /** Sends until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const entry = this.spool.peek();
      if (!entry) {
        await new Promise<void>((resolve) => {
          const done = () => {
            signal.removeEventListener("abort", done);
            resolve();
          };
          this.wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
        this.wake = undefined;
        continue;
      }
      try {
        await this.client.push(entry.request, { signal, timeoutMs: this.timeoutMs });
        this.spool.remove(entry.seq);
        if (this.attempt > 0) this.log.info({ afterAttempts: this.attempt }, "daemon reachable again; sending spooled batches");
        this.attempt = 0;
      } catch (err) {
        if (signal.aborted) break;
        const error = ConnectError.from(err);
        if (!retryable.has(error.code) && !(faults.has(error.code) && this.attempt < maxFaultAttempts)) {
          this.attempt = 0;
          this.spool.remove(entry.seq);
          this.rejectedPoints += entry.points;
          this.log.error({ code: Code[error.code], reason: error.rawMessage, points: entry.points, rejectedPoints: this.rejectedPoints }, "daemon refused a batch; dropped it");
          continue;
        }
        this.failedPushes++;
        const waitMs = backoffMs(this.attempt, this.backoff);
        if (this.attempt === 0 || error.code === Code.Unauthenticated) {
          this.log.warn({ code: Code[error.code], reason: error.rawMessage, spooled: this.spool.stats().batches }, "push failed; keeping the batch and retrying");
        }
        this.attempt++;
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }
}
