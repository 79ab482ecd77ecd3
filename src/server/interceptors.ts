import { Code, type ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Histogram, type Registry } from "prom-client";
import type { Logger } from "../shared/log.js";
import { rpcError } from "./errors.js";

/** The procedure label of RPC-shaped requests to paths that serve none (one value, whatever the path). */
export const unknownProcedure = "unknown";

/**
 * Counts RPCs by procedure and code, times them, and maps and logs failures (rpcError; server
 * faults with their cause): the one place where an error becomes what the caller sees.
 * Procedures are "service/Method" names of the served routes or unknownProcedure, never taken
 * from the URL: a label per URL (query strings included) grows without bound.
 */
export class CallLog {
  private readonly calls: Counter<"procedure" | "code">;
  private readonly seconds: Histogram<"procedure">;

  constructor(
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.calls = new Counter({
      name: "specta_rpc_requests_total",
      help: "RPCs handled, by procedure and result code.",
      labelNames: ["procedure", "code"],
      registers: [registry],
    });
    this.seconds = new Histogram({
      name: "specta_rpc_duration_seconds",
      help: "Time to handle a unary RPC, or to open a stream, in seconds.",
      labelNames: ["procedure"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    });
  }

  /** Records a call of `procedure`, started at `startedMs` (performance.now()), that succeeded. */
  succeeded(procedure: string, startedMs: number): void {
    this.seconds.observe({ procedure }, (performance.now() - startedMs) / 1000);
    this.calls.inc({ procedure, code: "ok" });
  }

  /** Records a call of `procedure` that failed with `err`, and returns the error its caller sees. */
  failed(procedure: string, startedMs: number, err: unknown): ConnectError {
    this.seconds.observe({ procedure }, (performance.now() - startedMs) / 1000);
    const error = this.ended(procedure, err);
    this.calls.inc({ procedure, code: Code[error.code] ?? String(error.code) });
    return error;
  }

  /** Logs that a call of `procedure` ended with `err` (a stream, counted when it opened), and returns the error its caller sees. */
  ended(procedure: string, err: unknown): ConnectError {
    const error = rpcError(err, procedure);
    if (error.code === Code.Internal || error.code === Code.Unknown) {
      this.log.error({ procedure, err: error.cause ?? err }, "rpc failed");
    } else {
      this.log.debug({ procedure, code: Code[error.code], reason: error.rawMessage }, "rpc refused");
    }
    return error;
  }
}

/**
 * Records every call that reaches a handler (the front door records the ones it refuses), and
 * maps what ends a server stream too: a stream's handler runs, and fails, while its messages are
 * read, after it opened.
 */
export function observeCalls(calls: CallLog): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const started = performance.now();
    try {
      const res = await next(req);
      calls.succeeded(procedure, started);
      return res.stream ? { ...res, message: mapErrors(res.message, (err) => calls.ended(procedure, err)) } : res;
    } catch (err) {
      throw calls.failed(procedure, started, err);
    }
  };
}

async function* mapErrors<T>(messages: AsyncIterable<T>, map: (err: unknown) => ConnectError): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw map(err);
  }
}
