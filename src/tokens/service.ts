import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { API as TokensAPI, TokenSchema, type Token } from "../../gen/tokens/tokens_pb.js";
import { isUuid } from "../storage/ids.js";
import { audited } from "../audit/declare.js";
import { callerOf, rules } from "./access.js";
import { personRole, roleOf } from "../shared/roles.js";
import type { TokenInfo, TokenStore } from "./tokens.js";

export interface TokensDeps {
  tokens: TokenStore;
}

/** Who may call tokens.API: admins manage tokens; any credential may ask what it is. */
export const tokensAccess = rules(TokensAPI, {
  create: ["admin"],
  list: ["admin"],
  revoke: ["admin"],
  whoami: ["viewer", "admin", "agent"],
});

/** The writes of tokens.API, audited. */
export const tokensAudit = audited(TokensAPI, { create: {}, revoke: {} });

/** Limits of a token's name, as documented on tokens.CreateRequest. */
export const maxTokenNameLength = 100;

/** tokens.API: admin and viewer tokens for people and programs; Whoami for any credential. */
export function tokensService({ tokens }: TokensDeps): ServiceImpl<typeof TokensAPI> {
  return {
    async create(req, ctx) {
      const role = personRole(req.role);
      if (!role) throw new ConnectError("role must be ROLE_ADMIN or ROLE_VIEWER (agents get theirs from agent.API/Register)", Code.InvalidArgument);
      const name = req.name.trim();
      if (name.length === 0 || name.length > maxTokenNameLength || /\p{Cc}/u.test(name)) {
        throw new ConnectError(`name must be 1 to ${maxTokenNameLength} printable characters`, Code.InvalidArgument);
      }
      const created = await tokens.mint(role, name, callerOf(ctx).tokenId);
      // Revoked since this daemon verified it (on another daemon, a moment ago).
      if (!created) throw new ConnectError("the credential is unknown or revoked", Code.Unauthenticated);
      return { info: toToken(created.info), token: created.token };
    },

    async list(req) {
      const list = await tokens.list({ includeRevoked: req.includeRevoked, includeAgents: req.includeAgents });
      return { tokens: list.map(toToken) };
    },

    async revoke(req) {
      if (!isUuid(req.id))
        throw new ConnectError(`id "${req.id.slice(0, 64)}" is not a token id (a UUID, see tokens.API/List)`, Code.InvalidArgument);
      const outcome = await tokens.revokeOne(req.id);
      if ("revoked" in outcome) return { token: toToken(outcome.revoked) };
      switch (outcome.refused) {
        case "unknown":
          throw new ConnectError(`no token has the id ${req.id}`, Code.NotFound);
        case "agent":
          throw new ConnectError("this is an agent's credential: remove the agent with agent.API/Deregister", Code.FailedPrecondition);
        case "already-revoked":
          throw new ConnectError(`the token ${req.id} is already revoked`, Code.FailedPrecondition);
        case "last-admin":
          throw new ConnectError(
            "revoking this token would leave no valid admin token (the tokens it minted are revoked with it): first create an admin token " +
              "with a token it did not mint (a daemon started without <data-dir>/admin.token makes a new one)",
            Code.FailedPrecondition,
          );
      }
    },

    async whoami(_req, ctx) {
      const caller = callerOf(ctx);
      const info = await tokens.get(caller.tokenId);
      // Another daemon may have revoked it within this daemon's credential cache time.
      if (!info || info.revoked) throw new ConnectError("the credential is unknown or revoked", Code.Unauthenticated);
      return { token: toToken(info) };
    },
  };
}

function toToken(info: TokenInfo): Token {
  return create(TokenSchema, {
    id: info.id,
    name: info.name,
    role: roleOf[info.role],
    agentId: info.agentId ?? "",
    created: timestampFromDate(info.created),
    ...(info.revoked ? { revoked: timestampFromDate(info.revoked) } : {}),
  });
}
