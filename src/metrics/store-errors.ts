import { Code, ConnectError } from "@connectrpc/connect";
import { toConnectError } from "../storage/errors.js";
import { InvalidInput, LimitExceeded, Overloaded } from "../tsdb/index.js";

/** Maps a failure of the store to the RPC error its caller should see. */
export function storeError(err: unknown, what: string): ConnectError {
  if (err instanceof InvalidInput) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof LimitExceeded) return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof Overloaded) return new ConnectError(`${what}: ${err.message}`, Code.ResourceExhausted);
  return toConnectError(err, what);
}
