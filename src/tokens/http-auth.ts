import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "./tokens.js";

/**
 * Authentication of plain-HTTP features mounted next to the RPCs (the Prometheus query API,
 * remote-write, OTLP over HTTP), whose clients send a token as `Authorization: Bearer <token>` or
 * as the password of HTTP basic auth (what Grafana, promtool and Prometheus' remote_write offer).
 * Failed authentications are limited per client address as the front door limits the RPCs'.
 */

export interface HttpAuthDeps {
  /**
   * Checks a presented token (the daemon passes its access policy's check for the feature):
   * resolves with the caller when it may go on, rejects with a ConnectError otherwise
   * (Unauthenticated, PermissionDenied, Unavailable).
   */
  authorize(token: string): Promise<Principal>;
  /** Failed authentications per client address: a client whose bucket is empty is refused before its credential is looked at. */
  failedAuth: {
    /** Seconds until the client at `address` may try again; undefined when it may now. */
    wait(address: string | undefined): number | undefined;
    charge(address: string | undefined): void;
  };
}

/** Why a request was not authenticated, named as the Prometheus API's error types (HTTP 401, 403, 429). */
export class HttpAuthError extends Error {
  constructor(
    readonly kind: "unauthorized" | "forbidden" | "too_many_requests",
    message: string,
    /** Headers the answer must carry: www-authenticate, retry-after. */
    readonly headers: Record<string, string>,
  ) {
    super(message);
  }

  get status(): 401 | 403 | 429 {
    return this.kind === "unauthorized" ? 401 : this.kind === "forbidden" ? 403 : 429;
  }
}

/**
 * The caller of a request with this Authorization header from this address. Throws HttpAuthError
 * for a missing, malformed, unknown or insufficient credential (an unknown one is charged to the
 * address) and while the address has failed too often; other errors (the database away) as they are.
 * `needs` says what is required, for the message ("the Prometheus API needs a viewer or admin token").
 */
export async function authenticateHttp(
  deps: HttpAuthDeps,
  authorization: string | undefined,
  address: string | undefined,
  needs: string,
): Promise<Principal> {
  const token = presentedToken(authorization, needs);
  const wait = deps.failedAuth.wait(address);
  if (wait !== undefined) {
    const seconds = Math.max(1, Math.ceil(wait));
    throw new HttpAuthError("too_many_requests", `too many failed authentications from this address; retry after ${seconds} s`, {
      "retry-after": String(seconds),
    });
  }
  try {
    return await deps.authorize(token);
  } catch (err) {
    const code = err instanceof ConnectError ? err.code : undefined;
    if (code === Code.Unauthenticated) {
      deps.failedAuth.charge(address);
      throw unauthorized((err as ConnectError).rawMessage);
    }
    if (code === Code.PermissionDenied) throw new HttpAuthError("forbidden", (err as ConnectError).rawMessage, {});
    throw err;
  }
}

function unauthorized(message: string): HttpAuthError {
  // Basic auth is what Grafana, promtool and Prometheus send when asked for credentials; say it is accepted.
  return new HttpAuthError("unauthorized", message, { "www-authenticate": 'Basic realm="Specta", charset="UTF-8"' });
}

/** The token of `Authorization: Bearer <token>` or the password of `Authorization: Basic …`. */
function presentedToken(authorization: string | undefined, needs: string): string {
  if (!authorization) throw unauthorized(`${needs}: send 'Authorization: Bearer <token>' or the token as the password of HTTP basic auth`);
  const bearer = /^Bearer\s+(\S+)$/i.exec(authorization);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization);
  const decoded = basic ? Buffer.from(basic[1]!, "base64").toString("utf8") : "";
  const colon = decoded.indexOf(":");
  if (colon < 0) throw unauthorized("the authorization header must be 'Bearer <token>' or HTTP basic auth with the token as the password");
  return decoded.slice(colon + 1);
}
