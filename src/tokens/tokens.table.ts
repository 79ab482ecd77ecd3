import type { ColumnType, Generated, Insertable, Selectable } from "kysely";
import type { TokenRole } from "../shared/roles.js";

/** Credentials: only a SHA-256 hash of each token is stored. */
export interface TokensTable {
  id: Generated<string>;
  name: string;
  role: TokenRole;
  hash: Buffer;
  agent_id: string | null;
  /** The token that minted this one (tokens.API/Create); revoking it revokes this one too. */
  created_by: ColumnType<string | null, string | null | undefined, never>;
  created: ColumnType<Date, never, never>;
  revoked: Date | null;
}

export type TokenRow = Selectable<TokensTable>;
export type NewTokenRow = Insertable<TokensTable>;

/** The tables of src/tokens/, for `db.withTables` (a type literal: kysely wants an index signature). */
export type TokensTables = { tokens: TokensTable };
