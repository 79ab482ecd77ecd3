import { createHash, randomBytes } from "node:crypto";
import { sql, type Kysely, type RawBuilder } from "kysely";
import type { AgentsTables } from "../fleet/agents.table.js";
import type { Db } from "../storage/database.js";
import { uuidSource as uuid } from "../storage/ids.js";
import type { TokenRole } from "../shared/roles.js";
import type { NewTokenRow, TokenRow, TokensTables } from "./tokens.table.js";

/** The tables the credential store reads: its own, and the agents' (an agent credential stands for an active agent). */
type CredentialTables = TokensTables & AgentsTables;

/** Who is calling: what a verified credential stands for. */
export interface Principal {
  tokenId: string;
  name: string;
  role: TokenRole;
  /** Set for agent credentials. */
  agentId: string | null;
  /**
   * For agent credentials, the agent's registered hostname (agents.hostname): the one name it
   * has among the active agents, kept current when it re-registers under another one.
   */
  agentHostname: string | null;
}

export interface TokenInfo {
  id: string;
  name: string;
  role: TokenRole;
  agentId: string | null;
  created: Date;
  revoked: Date | null;
}

/**
 * The PostgreSQL channel on which every daemon hears that a credential changed, sent in the
 * transaction that changes it: `revoked:<token id>` (it no longer works: forget it, end what
 * it opened) or `changed:<token id>` (what it stands for changed: verify it again).
 */
export const credentialsChannel = "specta_credentials";

export interface CredentialNote {
  kind: "revoked" | "changed";
  tokenId: string;
}

const credentialPayload = new RegExp(`^(revoked|changed):(${uuid})$`);

/** Parses a payload of credentialsChannel; undefined for anything else. */
export function parseCredentialNote(payload: string): CredentialNote | undefined {
  const m = credentialPayload.exec(payload);
  return m ? { kind: m[1] as CredentialNote["kind"], tokenId: m[2]! } : undefined;
}

/**
 * SQL that is true while the credential `tokenId` is valid, for a statement of another feature that
 * must not take effect once the credential is revoked (checked in that very statement).
 */
export function credentialValid(tokenId: string): RawBuilder<boolean> {
  return sql<boolean>`EXISTS (SELECT 1 FROM tokens WHERE id = ${tokenId} AND revoked IS NULL)`;
}

const tokenPrefix = "specta_";

const tokenColumns = ["id", "name", "role", "agent_id", "created", "revoked"] as const;

function toInfo(r: Pick<TokenRow, (typeof tokenColumns)[number]>): TokenInfo {
  return { id: r.id, name: r.name, role: r.role, agentId: r.agent_id, created: r.created, revoked: r.revoked };
}

/**
 * How long a verified token is trusted without asking the database again. Revocations reach
 * every daemon's cache at once through credentialsChannel; this bounds how long one missed while
 * the daemon's LISTEN session was down could be honoured (the cache is emptied when it is back).
 */
export const tokenCacheMs = 10_000;
/** Verifications kept at most; beyond, the cache starts over. */
const maxCached = 10_000;

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** Tokens are 256 random bits, so a plain SHA-256 is a safe hash to store (no password stretching needed). */
export function newToken(): string {
  return tokenPrefix + randomBytes(32).toString("base64url");
}

export type RevokeOutcome = { revoked: TokenInfo } | { refused: "unknown" | "agent" | "last-admin" | "already-revoked" };

/**
 * Creates, verifies, lists and revokes credentials; only hashes are stored. One instance per
 * daemon keeps the verifications cache: feed it the notes of credentialsChannel (forget) and
 * empty it when notes may have been missed (forgetAll). Instances on a transaction have their
 * own, unused cache: the caller tells the daemon's instance after the commit.
 */
export class TokenStore {
  private readonly cache = new Map<string, { principal: Principal | undefined; until: number }>();
  /** Cache keys by token id, so that a note about a token finds its entry. */
  private readonly keysById = new Map<string, string>();
  /**
   * Counts forgets: a verification that read the table before a note arrived (and so found
   * nothing to forget) is used for its call but not cached.
   */
  private forgets = 0;

  private readonly db: Kysely<CredentialTables>;

  constructor(db: Db) {
    this.db = db.withTables<CredentialTables>();
  }

  /** A new credential: its secret (never stored) and its description. */
  create(role: TokenRole, name: string, agentId: string | null = null): Promise<{ id: string; token: string; info: TokenInfo }> {
    return insertToken(this.db, role, name, { agent_id: agentId });
  }

  /**
   * A new token minted by the caller of tokens.API/Create (`minterId`): revoking that one revokes
   * this one too. Undefined when the minter is revoked: it is locked first, so that a revocation
   * running at the same time either sees the new token (and revokes it too) or makes this fail.
   */
  mint(role: TokenRole, name: string, minterId: string): Promise<{ id: string; token: string; info: TokenInfo } | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const minter = await trx
        .selectFrom("tokens")
        .select("id")
        .where("id", "=", minterId)
        .where("revoked", "is", null)
        .forShare()
        .executeTakeFirst();
      return minter && insertToken(trx, role, name, { created_by: minterId });
    });
  }

  /** The principal for a token, or undefined when it is unknown or revoked. */
  async verify(token: string): Promise<Principal | undefined> {
    if (!token.startsWith(tokenPrefix) || token.length > 200) return undefined;
    const hash = hashToken(token);
    const key = hash.toString("hex");
    const cached = this.cache.get(key);
    if (cached && cached.until > Date.now()) return cached.principal;
    const forgets = this.forgets;
    const row = await this.db
      .selectFrom("tokens as t")
      .leftJoin("agents as a", (join) => join.onRef("a.id", "=", "t.agent_id").on("a.deregistered", "is", null))
      .select(["t.id", "t.name", "t.role", "t.agent_id", "a.hostname"])
      .where("t.hash", "=", hash)
      .where("t.revoked", "is", null)
      .executeTakeFirst();
    // An agent credential stands for an active agent; one without (never the case while
    // Deregister revokes in the same transaction) is refused rather than given no hostname.
    const principal =
      row && !(row.agent_id !== null && row.hostname === null)
        ? { tokenId: row.id, name: row.name, role: row.role, agentId: row.agent_id, agentHostname: row.hostname }
        : undefined;
    if (forgets !== this.forgets) return principal;
    if (this.cache.size >= maxCached) this.forgetAll();
    this.cache.set(key, { principal, until: Date.now() + tokenCacheMs });
    if (principal) this.keysById.set(principal.tokenId, key);
    return principal;
  }

  /** Drops the cached verification of one token (a note of credentialsChannel said it changed). */
  forget(tokenId: string): void {
    this.forgets++;
    const key = this.keysById.get(tokenId);
    if (key === undefined) return;
    this.keysById.delete(tokenId);
    this.cache.delete(key);
  }

  /** Drops every cached verification: notes may have been missed. */
  forgetAll(): void {
    this.forgets++;
    this.cache.clear();
    this.keysById.clear();
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
   * Revokes one admin or viewer token and, in the same transaction, every token it minted, and
   * theirs (as Vault revokes a token's children): a leaked admin token takes what was minted
   * with it along. The valid admin tokens are locked first, so that two daemons revoking at once
   * cannot leave no admin, and a token being minted by one of them waits (see mint).
   */
  async revokeOne(id: string): Promise<RevokeOutcome> {
    let revoked: string[] = [];
    const outcome = await this.db.transaction().execute(async (trx): Promise<RevokeOutcome> => {
      // Always in id order, so that concurrent revocations cannot deadlock.
      const admins = await trx
        .selectFrom("tokens")
        .select("id")
        .where("role", "=", "admin")
        .where("revoked", "is", null)
        .orderBy("id")
        .forUpdate()
        .execute();
      const row = await trx.selectFrom("tokens").select(tokenColumns).where("id", "=", id).forUpdate().executeTakeFirst();
      if (!row) return { refused: "unknown" };
      if (row.role === "agent") return { refused: "agent" };
      if (row.revoked) return { refused: "already-revoked" };
      const { rows: minted } = await sql<{ id: string }>`
        WITH RECURSIVE minted (id) AS (
          SELECT id FROM tokens WHERE created_by = ${id}
          UNION
          SELECT t.id FROM tokens t JOIN minted m ON t.created_by = m.id)
        SELECT id FROM minted`.execute(trx);
      const going = new Set([id, ...minted.map((m) => m.id)]);
      if (admins.some((a) => going.has(a.id)) && admins.every((a) => going.has(a.id))) return { refused: "last-admin" };
      revoked = await revokeWhere(trx, sql`id = ANY(${[...going]}::uuid[])`);
      const updated = await trx.selectFrom("tokens").select(tokenColumns).where("id", "=", id).executeTakeFirstOrThrow();
      return { revoked: toInfo(updated) };
    });
    // At once on this daemon; the notes, sent at the commit, tell the others.
    for (const tokenId of revoked) this.forget(tokenId);
    return outcome;
  }

  /** Those of `tokenIds` that are revoked. */
  async revoked(tokenIds: string[]): Promise<Set<string>> {
    const { rows } = await sql<{ id: string }>`
      SELECT id FROM tokens WHERE id = ANY(${tokenIds}::uuid[]) AND revoked IS NOT NULL`.execute(this.db);
    return new Set(rows.map((r) => r.id));
  }

  /** Revokes every credential of an agent; returns their ids (for forget, once committed). */
  revokeAgent(agentId: string): Promise<string[]> {
    return revokeWhere(this.db, sql`agent_id = ${agentId}`);
  }

  /** Tells every daemon that what the agent's valid credentials stand for changed; returns their ids. */
  async agentChanged(agentId: string): Promise<string[]> {
    const { rows } = await sql<{ id: string }>`
      SELECT id, pg_notify(${credentialsChannel}, 'changed:' || id) IS NULL AS notified
      FROM tokens WHERE agent_id = ${agentId} AND revoked IS NULL`.execute(this.db);
    return rows.map((r) => r.id);
  }
}

async function insertToken(
  db: Kysely<CredentialTables>,
  role: TokenRole,
  name: string,
  owner: Pick<NewTokenRow, "agent_id" | "created_by">,
): Promise<{ id: string; token: string; info: TokenInfo }> {
  const token = newToken();
  const row = await db
    .insertInto("tokens")
    .values({ name, role, hash: hashToken(token), ...owner })
    .returning(tokenColumns)
    .executeTakeFirstOrThrow();
  return { id: row.id, token, info: toInfo(row) };
}

/** Revokes the valid tokens matching `where`, announcing each on credentialsChannel; returns their ids. */
async function revokeWhere(db: Kysely<CredentialTables>, where: RawBuilder<unknown>): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    WITH r AS (UPDATE tokens SET revoked = now() WHERE revoked IS NULL AND ${where} RETURNING id)
    SELECT id, pg_notify(${credentialsChannel}, 'revoked:' || id) IS NULL AS notified FROM r`.execute(db);
  return rows.map((r) => r.id);
}
