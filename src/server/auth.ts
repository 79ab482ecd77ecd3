import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { toConnectError } from "../storage/errors.js";
import type { TokenRole } from "../storage/schema.js";
import type { Principal, TokenStore } from "../tokens/tokens.js";

/** Who may call each procedure. "public" needs no credential; unlisted procedures are admin-only. */
export const accessPolicy: Record<string, "public" | TokenRole[]> = {
  "metrics.API/Counter": "public",
  "metrics.API/Gauge": "public",
  "metrics.API/Histogram": "public",
  "metrics.API/Push": ["agent", "admin"],
  "metrics.API/Query": ["viewer", "admin"],
  "metrics.API/List": ["viewer", "admin"],
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

/**
 * Reads `Authorization: Bearer <token>`, verifies it and enforces accessPolicy. `onAgentCall`
 * hears of every admitted call made with an agent credential (the agents' last_seen).
 */
export function authenticate(tokens: TokenStore, onAgentCall: (agentId: string) => void): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const policy = accessPolicy[procedure] ?? ["admin"];
    const header = req.header.get("authorization");
    const token = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    if (header && !token) throw new ConnectError("the authorization header must be 'Bearer <token>'", Code.Unauthenticated);
    if (!token) {
      if (policy === "public") return next(req);
      throw new ConnectError(`${procedure} needs a credential: send 'Authorization: Bearer <token>'`, Code.Unauthenticated);
    }
    let principal: Principal | undefined;
    try {
      principal = await tokens.verify(token);
    } catch (err) {
      throw toConnectError(err, "checking the credential");
    }
    if (!principal) throw new ConnectError("the credential is unknown or revoked", Code.Unauthenticated);
    if (policy !== "public" && !policy.includes(principal.role)) {
      throw new ConnectError(`a ${principal.role} credential may not call ${procedure}`, Code.PermissionDenied);
    }
    req.contextValues.set(principalKey, principal);
    if (principal.agentId) onAgentCall(principal.agentId);
    return next(req);
  };
}
