import { Role } from "../../gen/tokens/tokens_pb.js";

/** What a credential may do, as stored in tokens.role. */
export type TokenRole = "admin" | "viewer" | "agent";

/** A role as a word, as stored and as people type it. The dashboard bundles this module too. */
export const roleNames: Record<Role, TokenRole | "unknown"> = {
  [Role.UNSPECIFIED]: "unknown",
  [Role.ADMIN]: "admin",
  [Role.VIEWER]: "viewer",
  [Role.AGENT]: "agent",
};

/** The contract's Role of a stored role. */
export const roleOf: Record<TokenRole, Role> = { admin: Role.ADMIN, viewer: Role.VIEWER, agent: Role.AGENT };

/** The roles of people's tokens (admin, viewer); undefined for agents' and unset ones. */
export function personRole(role: Role | undefined): "admin" | "viewer" | undefined {
  return role === Role.ADMIN ? "admin" : role === Role.VIEWER ? "viewer" : undefined;
}
