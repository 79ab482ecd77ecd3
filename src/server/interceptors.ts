import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Histogram, type Registry } from "prom-client";
import type { Logger } from "../log.js";

/** Counts every RPC by procedure and code, times it, and logs failures (server faults with their cause). */
export function observeCalls(registry: Registry, log: Logger): Interceptor {
  const calls = new Counter({
    name: "specta_rpc_requests_total",
    help: "RPCs handled, by procedure and result code.",
    labelNames: ["procedure", "code"],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: "specta_rpc_duration_seconds",
    help: "Time to handle a unary RPC, or to open a stream, in seconds.",
    labelNames: ["procedure"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  return (next) => async (req) => {
    const procedure = req.url.slice(req.url.lastIndexOf("/", req.url.lastIndexOf("/") - 1) + 1);
    const stop = seconds.startTimer({ procedure });
    try {
      const res = await next(req);
      calls.inc({ procedure, code: "ok" });
      return res;
    } catch (err) {
      const error = ConnectError.from(err);
      calls.inc({ procedure, code: Code[error.code] ?? String(error.code) });
      if (error.code === Code.Internal || error.code === Code.Unknown) {
        log.error({ procedure, err: error.cause ?? err }, "rpc failed");
      } else {
        log.debug({ procedure, code: Code[error.code], reason: error.rawMessage }, "rpc refused");
      }
      throw error;
    } finally {
      stop();
    }
  };
}
