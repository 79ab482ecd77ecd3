import type { ColumnType, Generated } from "kysely";
import type { Labels } from "../shared/labels.js";

/** The store's tables (migration 2026_12_01_0001_tsdb); the store reads and writes them only through its own code. */
export interface TsdbDatabase {
  series: SeriesTable;
  tsdb_head: HeadTable;
  tsdb_compacted: CompactedTable;
  tsdb_chunks: ChunksTable;
  tsdb_rollups_5m: RollupsTable;
  tsdb_rollups_1h: RollupsTable;
}

/** One series: a metric and its labels, unique by `key` (the first 8 bytes of SHA-256 of the canonical text). */
export interface SeriesTable {
  id: Generated<number>;
  metric: string;
  labels: ColumnType<Labels, string, string>;
  kind: number;
  /** A bigint, read as its decimal text. */
  key: string;
  /** The agent that created it, for per-agent limits. */
  agent_id: string | null;
}

/** What is not compacted yet: one row per group commit and group of series, partitioned by block (`part`). */
export interface HeadTable {
  id: Generated<number>;
  part: number;
  grp: number;
  /** First and last time of the row's points, Unix ms. */
  lo: number;
  hi: number;
  n: number;
  data: Buffer;
}

/** (head partition, group) pairs already in chunks. */
export interface CompactedTable {
  part: number;
  grp: number;
}

/** One series' points over one block, compressed (chunk-format.ts). */
export interface ChunksTable {
  series_id: number;
  block: number;
  data: Buffer;
}

/** The buckets of each series of a group over one block, compressed (chunk-format.ts). */
export interface RollupsTable {
  grp: number;
  block: number;
  data: Buffer;
}
