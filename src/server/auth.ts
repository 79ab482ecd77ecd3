import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { TokenRole } from "../shared/roles.js";
import type { Principal, TokenStore } from "../tokens/tokens.js";

/** Who may call each procedure. "public" needs no credential; unlisted procedures are admin-only. */
export const accessPolicy: Record<string, "public" | TokenRole[]> = {
  "metrics.API/Counter": "public",
  "metrics.API/Gauge": "public",
  "metrics.API/Histogram": "public",
  "metrics.API/Push": ["agent", "admin"],
  "metrics.API/Query": ["viewer", "admin"],
  "metrics.API/List": ["viewer", "admin"],
  // Prometheus' HTTP query API (/api/v1/*, src/promapi), which authenticates its own requests.
  "prometheus/api/v1": ["viewer", "admin"],
  // Register checks the enrolment token (or the agent's own credential) itself.
  "agent.API/Register": "public",
  "agent.API/List": ["viewer", "admin"],
  "agent.API/Deregister": ["admin"],
  "commands.API/Stream": ["agent"],
  "commands.API/Report": ["agent"],
  "commands.API/Submit": ["admin"],
  "commands.API/Get": ["viewer", "admin"],
  "commands.API/Watch": ["viewer", "admin"],
  "commands.API/Cancel": ["admin"],
  "tokens.API/Create": ["admin"],
  "tokens.API/List": ["admin"],
  "tokens.API/Revoke": ["admin"],
  "tokens.API/Whoami": ["viewer", "admin", "agent"],
  "grpc.health.v1.Health/Check": "public",
  "grpc.health.v1.Health/Watch": "public",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "public",
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "public",
};

/** The verified caller, for handlers that need it (undefined on public calls without a credential). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "the verified caller" });

/** The caller of a call that the policy already admitted; for handlers of non-public RPCs. */
export function callerOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) throw new ConnectError("this call needs a credential", Code.Unauthenticated);
  return principal;
}

/** Public procedures that check a secret of their own (Register: the enrolment token); their Unauthenticated answers are failed authentications. */
export const checksOwnSecret: ReadonlySet<string> = new Set(["agent.API/Register"]);

/**
 * The token of `Authorization: Bearer <token>`, from the header alone (no database): Unauthenticated
 * when the header is malformed, or missing on a procedure that is not public.
 */
export function presentedToken(procedure: string, authorization: string | undefined): string | undefined {
  const token = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (authorization && !token) throw new ConnectError("the authorization header must be 'Bearer <token>'", Code.Unauthenticated);
  if (!token && accessPolicy[procedure] !== "public") {
    throw new ConnectError(`${procedure} needs a credential: send 'Authorization: Bearer <token>'`, Code.Unauthenticated);
  }
  return token;
}

/** The caller a presented token stands for: Unauthenticated when unknown or revoked, PermissionDenied when its role may not call `procedure`. */
export async function verifyCaller(procedure: string, token: string, tokens: TokenStore): Promise<Principal> {
  const principal = await tokens.verify(token);
  if (!principal) throw new ConnectError("the credential is unknown or revoked", Code.Unauthenticated);
  const policy = accessPolicy[procedure] ?? ["admin"];
  if (policy !== "public" && !policy.includes(principal.role)) {
    throw new ConnectError(`a ${principal.role} credential may not call ${procedure}`, Code.PermissionDenied);
  }
  return principal;
}
