import { createHash, randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { Database, TokenRole } from "../storage/schema.js";

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

  async create(role: TokenRole, name: string, agentId: string | null = null): Promise<{ id: string; token: string }> {
    const token = newToken();
    const { id } = await this.db
      .insertInto("tokens")
      .values({ name, role, hash: hashToken(token), agent_id: agentId })
      .returning("id")
      .executeTakeFirstOrThrow();
    return { id, token };
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

  async list(): Promise<TokenInfo[]> {
    const rows = await this.db
      .selectFrom("tokens")
      .select(["id", "name", "role", "agent_id", "created", "revoked"])
      .orderBy("created")
      .execute();
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role, agentId: r.agent_id, created: r.created, revoked: r.revoked }));
  }

  /** Revokes by token id (or every credential of an agent); returns how many were revoked. */
  async revoke(where: { id: string } | { agentId: string }): Promise<number> {
    let query = this.db.updateTable("tokens").set({ revoked: new Date() }).where("revoked", "is", null);
    query = "id" in where ? query.where("id", "=", where.id) : query.where("agent_id", "=", where.agentId);
    const result = await query.executeTakeFirst();
    this.cache.clear(); // this daemon stops trusting it at once; others within tokenCacheMs
    return Number(result.numUpdatedRows);
  }
}
