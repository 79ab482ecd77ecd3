import { ConnectError, type Code } from "@connectrpc/connect";

/** The Code a call fails with, or "ok": for tables of calls and the errors they must get. */
export async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}
