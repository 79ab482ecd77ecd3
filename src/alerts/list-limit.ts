import { Code, ConnectError } from "@connectrpc/connect";

/** History's and ListDeliveries' `limit`, as their proto says: 1 to 1,000, unset means 100. */
export function listLimit(limit: number): number {
  if (limit > 1_000) throw new ConnectError("limit must be 1 to 1000", Code.InvalidArgument);
  return limit === 0 ? 100 : limit;
}
