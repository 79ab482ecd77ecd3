import { createHash } from "node:crypto";
import { sql, type Kysely } from "kysely";
import type { Labels } from "../shared/labels.js";
import { compareVersions } from "../shared/release.js";
import type { Db } from "../storage/database.js";
import type { NewReleaseRow, ReleaseRow, ReleasesTables } from "./releases.table.js";

/** The releases' repository: every query of the releases table goes through this module. */
const releases = (db: Db): Kysely<ReleasesTables> => db.withTables<ReleasesTables>();

/** A release without its bundle. */
export type ReleaseInfo = Omit<ReleaseRow, "bundle">;

const infoColumns = [
  "version",
  "manifest",
  "signature",
  "sha512",
  "size",
  "min_version",
  "expires",
  "published",
  "rollout_labels",
  "rollout_percent",
] as const;

/** Stores a release; false when its version is published already. */
export async function insertRelease(db: Db, row: NewReleaseRow): Promise<boolean> {
  const inserted = await releases(db)
    .insertInto("releases")
    .values(row)
    .onConflict((c) => c.column("version").doNothing())
    .returning("version")
    .executeTakeFirst();
  return inserted !== undefined;
}

/** Every release, newest version first. */
export async function listReleases(db: Db): Promise<ReleaseInfo[]> {
  const rows = await releases(db).selectFrom("releases").select(infoColumns).execute();
  return rows.sort((a, b) => compareVersions(b.version, a.version));
}

/** Sets who gets `version`; false when no such release exists. */
export async function setRollout(db: Db, version: string, labels: Labels, percent: number): Promise<boolean> {
  const row = await releases(db)
    .updateTable("releases")
    .set({ rollout_labels: JSON.stringify(labels), rollout_percent: percent })
    .where("version", "=", version)
    .returning("version")
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Where an agent falls in a release's rollout, 0 to 99: from a hash of its id and the version, so
 * that the same agents get it every time and a larger percentage only adds agents.
 */
export function rolloutBucket(agentId: string, version: string): number {
  return createHash("sha256").update(`${agentId}/${version}`).digest().readUInt32BE(0) % 100;
}

/** The newest release rolled out to the agent `agentId` carrying `labels`; undefined when none is. */
export async function assignedRelease(db: Db, agentId: string, labels: Labels): Promise<ReleaseInfo | undefined> {
  const rows = await releases(db)
    .selectFrom("releases")
    .select(infoColumns)
    .where("rollout_percent", ">", 0)
    .where(sql<boolean>`${JSON.stringify(labels)}::jsonb @> rollout_labels`)
    .execute();
  return rows.filter((r) => rolloutBucket(agentId, r.version) < r.rollout_percent).sort((a, b) => compareVersions(b.version, a.version))[0];
}

/** `length` bytes of `version`'s bundle from `offset` (0-based); fewer at its end. */
export async function bundleChunk(db: Db, version: string, offset: number, length: number): Promise<Buffer> {
  const row = await releases(db)
    .selectFrom("releases")
    .select(sql<Buffer>`substring(bundle from ${offset + 1} for ${length})`.as("chunk"))
    .where("version", "=", version)
    .executeTakeFirst();
  return row?.chunk ?? Buffer.alloc(0);
}
