import { createHash, randomBytes } from "node:crypto";
import type { Kysely, Selectable } from "kysely";
import type { Database, TokenRole, TokensTable } from "../storage/schema.js";

/** Who is calling: what a verified credential stands for. */
export interface Principal {
  tokenId: string;
  name: string;
  role: TokenRole;
  /** Set for agent credentials. */
  agentId: string | null;
}

export interface TokenInfo {
  id: string;
  name: string;
  role: TokenRole;
  agentId: string | null;
  created: Date;
  revoked: Date | null;
}

const tokenPrefix = "specta_";

const tokenColumns = ["id", "name", "role", "agent_id", "created", "revoked"] as const;

function toInfo(r: Pick<Selectable<TokensTable>, (typeof tokenColumns)[number]>): TokenInfo {
  return { id: r.id, name: r.name, role: r.role, agentId: r.agent_id, created: r.created, revoked: r.revoked };
}

/** How long a verified token is trusted without asking the database again; revocation on another daemon takes effect within this. */
export const tokenCacheMs = 10_000;

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** Tokens are 256 random bits, so a plain SHA-256 is a safe hash to store (no password stretching needed). */
export function newToken(): string {
  return tokenPrefix + randomBytes(32).toString("base64url");
}

/** Creates, verifies, lists and revokes credentials; only hashes are stored. */
export class TokenStore {
  private readonly cache = new Map<string, { principal: Principal | undefined; until: number }>();

  constructor(private readonly db: Kysely<Database>) {}

  /** A new credential: its secret (never stored) and its description. */
  async create(role: TokenRole, name: string, agentId: string | null = null): Promise<{ id: string; token: string; info: TokenInfo }> {
    const token = newToken();
    const row = await this.db
      .insertInto("tokens")
      .values({ name, role, hash: hashToken(token), agent_id: agentId })
      .returning(tokenColumns)
      .executeTakeFirstOrThrow();
    return { id: row.id, token, info: toInfo(row) };
  }

  /** The principal for a token, or undefined when it is unknown or revoked. */
  async verify(token: string): Promise<Principal | undefined> {
    if (!token.startsWith(tokenPrefix) || token.length > 200) return undefined;
    const key = hashToken(token).toString("hex");
    const cached = this.cache.get(key);
    if (cached && cached.until > Date.now()) return cached.principal;
    const row = await this.db
      .selectFrom("tokens")
      .select(["id", "name", "role", "agent_id"])
      .where("hash", "=", hashToken(token))
      .where("revoked", "is", null)
      .executeTakeFirst();
    const principal = row ? { tokenId: row.id, name: row.name, role: row.role, agentId: row.agent_id } : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { principal, until: Date.now() + tokenCacheMs });
    return principal;
  }

  /** Tokens, oldest first: by default the valid admin and viewer ones. */
  async list(options: { includeRevoked?: boolean; includeAgents?: boolean } = {}): Promise<TokenInfo[]> {
    let query = this.db.selectFrom("tokens").select(tokenColumns).orderBy("created").orderBy("id");
    if (!options.includeRevoked) query = query.where("revoked", "is", null);
    if (!options.includeAgents) query = query.where("role", "<>", "agent");
    return (await query.execute()).map(toInfo);
  }

  async get(id: string): Promise<TokenInfo | undefined> {
    const row = await this.db.selectFrom("tokens").select(tokenColumns).where("id", "=", id).executeTakeFirst();
    return row && toInfo(row);
  }

  /**
   * Revokes one admin or viewer token. The valid admin tokens are locked first, so that two
   * daemons revoking the last two admins at once cannot leave none.
   */
  async revokeOne(id: string): Promise<{ revoked: TokenInfo } | { refused: "unknown" | "agent" | "last-admin" | "already-revoked" }> {
    const outcome = await this.db.transaction().execute(async (trx) => {
      // Always in id order, so that concurrent revocations cannot deadlock.
      const admins = await trx.selectFrom("tokens").select("id").where("role", "=", "admin").where("revoked", "is", null).orderBy("id").forUpdate().execute();
      const row = await trx.selectFrom("tokens").select(tokenColumns).where("id", "=", id).forUpdate().executeTakeFirst();
      if (!row) return { refused: "unknown" as const };
      if (row.role === "agent") return { refused: "agent" as const };
      if (row.revoked) return { refused: "already-revoked" as const };
      if (row.role === "admin" && admins.length <= 1) return { refused: "last-admin" as const };
      const updated = await trx.updateTable("tokens").set({ revoked: new Date() }).where("id", "=", id).returning(tokenColumns).executeTakeFirstOrThrow();
      return { revoked: toInfo(updated) };
    });
    if ("revoked" in outcome) this.cache.clear();
    return outcome;
  }

  /** Revokes every credential of an agent; returns how many were revoked. */
  async revokeAgent(agentId: string): Promise<number> {
    const result = await this.db.updateTable("tokens").set({ revoked: new Date() }).where("revoked", "is", null).where("agent_id", "=", agentId).executeTakeFirst();
    this.cache.clear(); // this daemon stops trusting it at once; others within tokenCacheMs
    return Number(result.numUpdatedRows);
  }
}
