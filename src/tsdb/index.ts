import { Kysely, PostgresDialect, sql } from "kysely";
import type pg from "pg";
import type { TsdbDatabase } from "./tables.js";
import type { Logger } from "../shared/log.js";
import { Appender, defaultAppenderOptions, type AppenderOptions, type SeriesPoints } from "./appender.js";
import { Compactor, type CompactionOptions, type CompactionRun } from "./compactor.js";
import { importLegacySamples } from "./legacy-import.js";
import { blockOf, chunksTable, headTable, Partitions, rollups1hTable, rollups5mTable } from "./partitions.js";
import { Reader, type Points, type PointsQuery, type TsdbRetention } from "./read.js";
import { SeriesIndex, type SeriesLimits } from "./series-index.js";
import type { PointArrays } from "./chunk-format.js";

/**
 * The time-series store on PostgreSQL. Its interface: the series index (resolve, select by
 * matchers, list), append a batch (acknowledged = committed), read the points of series over a
 * range per step, and its background jobs (compaction, retention), which the daemon hands to
 * its worker engine. See DESIGN.md, "The time-series store".
 */

export { Overloaded, InvalidInput, LimitExceeded, TsdbError } from "./errors.js";
export {
  SeriesKind,
  maxSelectedSeries,
  maxLabelValues,
  type SeriesKindNumber,
  type SeriesRef,
  type Resolved,
  type LabelMatcher,
  type MatchOperator,
  type SelectedSeries,
  type MetricSummary,
  type Writer,
  type SeriesLimits,
} from "./series-index.js";
export { alignedSteps, chooseTier, tierWidthMs, type Tier, type StepAggregate, type PointsQuery, type Points, type TsdbRetention } from "./read.js";
export { maxTimeMs, type SeriesPoints } from "./appender.js";
export type { PointArrays } from "./chunk-format.js";
export type { CompactionRun } from "./compactor.js";

/** A background job of the store, in the shape of the worker engine's handlers; `leaderLock`: one daemon runs it at a time. */
export interface TsdbJob {
  name: string;
  coolerMs: number;
  leaderLock: number;
  ensure(signal: AbortSignal): Promise<void>;
}

export interface TsdbOptions {
  limits: SeriesLimits;
  retention: TsdbRetention;
  appender?: Partial<Omit<AppenderOptions, "now">>;
  compaction?: Partial<Omit<CompactionOptions, "writeGraceMs" | "now">>;
  /** The store's clock (routing to head partitions, compaction, retention); tests move it. */
  now?: () => number;
  log: Logger;
}

export interface Tsdb {
  readonly series: SeriesIndex;
  /** Appends points; resolves once they are committed. Overloaded while too much waits for a write. */
  append(batch: SeriesPoints[]): Promise<void>;
  /**
   * Runs `work` in a transaction and appends the points it returns in the same transaction, for
   * writes whose points must commit together with other rows (instrument totals).
   */
  appendWith<T>(work: (tx: Kysely<TsdbDatabase>) => Promise<{ points: SeriesPoints[]; result: T }>): Promise<T>;
  readPoints(q: PointsQuery, nowMs?: number): Promise<Points>;
  /** Raw points of the series in [fromMs, toMs), merged: in time order, one per time. */
  readSamples(seriesIds: number[], fromMs: number, toMs: number): Promise<Map<number, PointArrays>>;
  /** Compacts every closed block now (the compaction job does it every minute; tests and benchmarks call it). */
  compact(signal?: AbortSignal): Promise<CompactionRun>;
  readonly jobs: TsdbJob[];
}

/** Advisory lock keys of the store's single-leader jobs (0x5ec7a001: partition DDL; 0x5ec7a005: the legacy import). */
const leaderLocks = { retention: 0x5e_c7_a0_02, compaction: 0x5e_c7_a0_03 } as const;

/** What read-only work needs of the store: series selection and listing, and points. */
export type TsdbReads = Pick<Tsdb, "series" | "readPoints" | "readSamples">;

/** The store's read path on another pool of the same data (a streaming replica): nothing is written through it. */
export function openTsdbReads(pool: pg.Pool, options: Pick<TsdbOptions, "limits" | "retention">): TsdbReads {
  const db = new Kysely<TsdbDatabase>({ dialect: new PostgresDialect({ pool }) });
  const reader = new Reader(db, options.retention);
  return {
    series: new SeriesIndex(db, options.limits),
    readPoints: (q, nowMs) => reader.readPoints(q, nowMs),
    readSamples: (ids, from, to) => reader.readSamples(ids, from, to),
  };
}

/**
 * Opens the store on a migrated database, through the storage's pool (which the store never
 * ends); moves the row-per-sample store's data into chunks first if it is there.
 */
export async function openTsdb(pool: pg.Pool, options: TsdbOptions): Promise<Tsdb> {
  const db = new Kysely<TsdbDatabase>({ dialect: new PostgresDialect({ pool }) });
  const log = options.log.child({ component: "tsdb" });
  const partitions = new Partitions(db);
  await importLegacySamples(db, partitions, log);
  const series = new SeriesIndex(db, options.limits);
  const now = options.now ?? Date.now;
  const appender = new Appender(db, partitions, { ...options.appender, now });
  const writeGraceMs = options.appender?.writeGraceMs ?? defaultAppenderOptions.writeGraceMs;
  const compactor = new Compactor(db, partitions, { ...options.compaction, writeGraceMs, now });
  const reader = new Reader(db, options.retention);

  const compactionJob: TsdbJob = {
    name: "tsdb-compaction",
    coolerMs: 60_000,
    leaderLock: leaderLocks.compaction,
    async ensure(signal) {
      const started = now();
      // The next block's head partition exists before its first write, so no write waits for DDL.
      await partitions.ensure(headTable, [blockOf(started), blockOf(started) + 1]);
      const run = await compactor.run(signal);
      if (run.dropped.length > 0 || run.postponed.length > 0) {
        log.info({ ...run, ms: now() - started }, "head blocks compacted into chunks");
      }
    },
  };
  const retentionJob: TsdbJob = {
    name: "tsdb-retention",
    coolerMs: 3_600_000,
    leaderLock: leaderLocks.retention,
    async ensure() {
      const at = now();
      const dropped = [
        ...(await partitions.dropBefore(chunksTable, blockOf(at - options.retention.rawMs))),
        ...(await partitions.dropBefore(rollups5mTable, blockOf(at - options.retention.rollups5mMs))),
        ...(await partitions.dropBefore(rollups1hTable, blockOf(at - options.retention.rollups1hMs))),
        // Head partitions that old are left only when compaction keeps failing: retention bounds the disk all the same.
        ...(await partitions.dropBefore(headTable, blockOf(at - options.retention.rawMs))),
      ];
      await sql`DELETE FROM tsdb_compacted WHERE part < ${blockOf(at - options.retention.rawMs)}`.execute(db);
      if (dropped.length > 0) log.info({ dropped }, "expired partitions dropped");
    },
  };

  return {
    series,
    append: (batch) => appender.append(batch),
    async appendWith(work) {
      await appender.ensureCurrent();
      return db.transaction().execute(async (tx) => {
        const { points, result } = await work(tx);
        await appender.appendIn(tx, points);
        return result;
      });
    },
    readPoints: (q, nowMs) => reader.readPoints(q, nowMs),
    readSamples: (ids, from, to) => reader.readSamples(ids, from, to),
    compact: (signal = new AbortController().signal) => compactor.run(signal),
    jobs: [compactionJob, retentionJob],
  };
}
