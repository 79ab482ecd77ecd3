import { Code, ConnectError } from "@connectrpc/connect";
import { isUnavailable } from "../storage/errors.js";
import { InvalidInput, LimitExceeded, Overloaded } from "../tsdb/index.js";

/**
 * The error the caller of `procedure` sees for what its handler (or the front door) threw. A
 * ConnectError is the feature's own answer (a caller's mistake, a refusal) and stays as it is; the
 * store's errors say whose the fault is; an abort is a call given up. Anything else is a fault of
 * the daemon: Unavailable while the database is away (retry), else Internal, keeping the cause for
 * the log, never for the caller.
 */
export function rpcError(err: unknown, procedure: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidInput) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof LimitExceeded) return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof Overloaded) return new ConnectError(`${procedure}: ${err.message}`, Code.ResourceExhausted);
  // Canceled, as connect-es says it.
  if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) return ConnectError.from(err);
  return isUnavailable(err)
    ? new ConnectError(`${procedure}: the database is unavailable, retry later`, Code.Unavailable, undefined, undefined, err)
    : new ConnectError(`${procedure} failed`, Code.Internal, undefined, undefined, err);
}
