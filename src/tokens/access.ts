import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { TokenRole } from "../shared/roles.js";
import type { Principal, TokenStore } from "./tokens.js";

/**
 * Who may call a procedure: "public" needs no credential; "own-secret" needs none either, but its
 * handler checks a secret of its own (agent.API/Register: the enrolment token), so that its refusals
 * are failed authentications; otherwise the roles whose credentials may call it.
 */
export type Access = "public" | "own-secret" | readonly TokenRole[];

/** The rule of each method of a service, keyed by the generated descriptor's local names: a method without one does not compile. */
export type MethodRules<S extends DescService> = { readonly [M in keyof S["method"]]: Access };

/** One service's access rules, declared next to its implementation. */
export interface ServiceRules<S extends DescService = DescService> {
  readonly service: S;
  readonly methods: MethodRules<S>;
}

/** Declares the access rules of `service`, e.g. `rules(MetricsAPI, { push: ["agent", "admin"], counter: "public", … })`. */
export function rules<S extends DescService>(service: S, methods: MethodRules<S>): ServiceRules<S> {
  return { service, methods };
}

/** A served method that no access rule covers: the daemon refuses to start rather than guess who may call it. */
export class MissingAccessRule extends Error {
  override name = "MissingAccessRule";
}

/** The rule of every method of `services` by procedure name ("metrics.API/Push"); throws MissingAccessRule naming the methods that no rule covers. */
export function accessOf(services: readonly DescService[], declared: readonly ServiceRules[]): Map<string, Access> {
  const access = new Map<string, Access>();
  const missing: string[] = [];
  for (const service of services) {
    const methods: Partial<Record<string, Access>> | undefined = declared.find((r) => r.service.typeName === service.typeName)?.methods;
    for (const method of service.methods) {
      const procedure = `${service.typeName}/${method.name}`;
      const rule = methods?.[method.localName];
      if (rule === undefined) missing.push(procedure);
      else access.set(procedure, rule);
    }
  }
  if (missing.length > 0)
    throw new MissingAccessRule(`no access rule says who may call ${missing.join(", ")}: declare one next to the service (tokens/access.ts: rules)`);
  return access;
}

/** The verified caller, for handlers that need it (undefined on public calls without a credential). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "the verified caller" });

/** The caller of a call that its rule already admitted; for handlers of non-public RPCs. */
export function callerOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) throw new ConnectError("this call needs a credential", Code.Unauthenticated);
  return principal;
}

/**
 * The token of `Authorization: Bearer <token>`, from the header alone (no database): Unauthenticated
 * when the header is malformed, or missing on a procedure whose rule asks for a credential.
 */
export function presentedToken(procedure: string, access: Access, authorization: string | undefined): string | undefined {
  const token = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (authorization && !token) throw new ConnectError("the authorization header must be 'Bearer <token>'", Code.Unauthenticated);
  if (!token && typeof access !== "string") {
    throw new ConnectError(`${procedure} needs a credential: send 'Authorization: Bearer <token>'`, Code.Unauthenticated);
  }
  return token;
}

/** The caller a presented token stands for: Unauthenticated when unknown or revoked, PermissionDenied when `access` does not admit its role. */
export async function verifyCaller(procedure: string, access: Access, token: string, tokens: Pick<TokenStore, "verify">): Promise<Principal> {
  const principal = await tokens.verify(token);
  if (!principal) throw new ConnectError("the credential is unknown or revoked", Code.Unauthenticated);
  if (typeof access !== "string" && !access.includes(principal.role)) {
    throw new ConnectError(`a ${principal.role} credential may not call ${procedure}`, Code.PermissionDenied);
  }
  return principal;
}
