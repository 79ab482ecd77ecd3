import { ConnectError, type Code, type Interceptor } from "@connectrpc/connect";

/** Sends `Authorization: Bearer <token>` on every call. */
export const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

/** The Code a call fails with, or "ok": for tables of calls and the errors they must get. */
export async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}
