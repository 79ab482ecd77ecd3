import { Code, ConnectError } from "@connectrpc/connect";

/** The body of an RPC whose issue has not landed yet: the contract is served, the call says so. */
export function unimplemented(procedure: string): never {
  throw new ConnectError(`${procedure} is not implemented yet`, Code.Unimplemented);
}
