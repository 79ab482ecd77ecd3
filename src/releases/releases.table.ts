import type { ColumnType, Insertable, Selectable } from "kysely";
import type { Labels } from "../shared/labels.js";

/** Published agent releases (releases.API): one row per version. */
export interface ReleasesTable {
  version: string;
  /** The manifest's bytes as signed, and the signature. */
  manifest: Buffer;
  signature: Buffer;
  bundle: Buffer;
  sha512: string;
  /** bigint: written as a number, read as a number (the pool parses int8 as numbers). */
  size: number;
  min_version: string;
  expires: Date;
  published: ColumnType<Date, Date | undefined, never>;
  /** Who gets it: agents carrying these labels (null: nobody yet), and of those rollout_percent. */
  rollout_labels: ColumnType<Labels | null, never, string>;
  rollout_percent: ColumnType<number, never, number>;
}

export type ReleaseRow = Selectable<ReleasesTable>;
export type NewReleaseRow = Insertable<ReleasesTable>;

/** The tables of src/releases/, for `db.withTables`. */
export type ReleasesTables = { releases: ReleasesTable };
