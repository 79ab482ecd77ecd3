import { sql, type Kysely, type RawBuilder } from "kysely";
import type { RetentionConfig } from "../config/config.js";
import type { Database } from "../storage/schema.js";

/**
 * The one read path of every query (DESIGN.md, Storage): the points of a set of series over a
 * time range, aggregated per step. Nothing else reads samples or rollups, so that the
 * compressed tier planned for closed time ranges slots in here without touching the callers.
 */

/** Where points are read from: raw samples, or the per-minute or per-hour rollups. */
export type Tier = "raw" | "minute" | "hour";

const minuteMs = 60_000;
const hourMs = 3_600_000;
const dayMs = 86_400_000;

/** Width of one row of each tier (0: raw samples are points in time). */
export const tierWidthMs: Record<Tier, number> = { raw: 0, minute: minuteMs, hour: hourMs };

const rollupTable = { minute: "samples_1m", hour: "samples_1h" } as const;

/**
 * Picks the tier for a range and a step. A rollup tier is used only when the step holds whole
 * rollup rows (step ≥ the row width), else its points would be coarser than asked. Minute
 * rollups serve ranges that start before raw retention or are longer than ~2 days (raw rows
 * would cost too much to read); hour rollups ranges longer than ~30 days or starting before
 * minute retention. Otherwise raw samples, which are exact.
 */
export function chooseTier(startMs: number, endMs: number, stepMs: number, retention: RetentionConfig, nowMs: number): Tier {
  const rangeMs = endMs - startMs;
  const ageMs = nowMs - startMs;
  if (stepMs >= hourMs && (rangeMs > 30 * dayMs || ageMs > retention.minuteRollupsMs)) return "hour";
  if (stepMs >= minuteMs && (rangeMs > 2 * dayMs || ageMs > retention.samplesMs)) return "minute";
  return "raw";
}

/** One step of one series. */
export interface StepAggregate {
  /** Start of the step, Unix ms (a multiple of the step). */
  time: number;
  min: number;
  max: number;
  sum: number;
  count: number;
  /** The latest value in the step; NaN unless requested. */
  last: number;
  /**
   * Counter increase within the step: the sum of the deltas between each value and the one
   * before it (which may lie in the previous step); a drop is a reset, so its delta is the new
   * value. 0 unless requested. From rollups, the values compared are each row's last value, so
   * a reset and its recovery within one rollup row are not seen.
   */
  increase: number;
  /** How many of the step's values had a previous value to compare with (0: increase unknown). */
  deltas: number;
}

export interface PointsQuery {
  seriesIds: number[];
  startMs: number;
  endMs: number;
  stepMs: number;
  /** Compute increases (counters and histogram buckets); costs a look-back before the range. */
  increase: boolean;
  /** Compute each step's latest value; costs a sort within every step (~25% of the statement). */
  last: boolean;
}

export interface Points {
  tier: Tier;
  /** Steps of each series that has data, in time order. */
  series: Map<number, StepAggregate[]>;
}

/** The steps of a range: multiples of the step (whole ms) since the Unix epoch, from the one holding start to the one holding end. */
export function alignedSteps(startMs: number, endMs: number, stepMs: number): { first: number; last: number; count: number } {
  const first = Math.floor(startMs / stepMs) * stepMs;
  const last = Math.floor(endMs / stepMs) * stepMs;
  return { first, last, count: (last - first) / stepMs + 1 };
}

/** How far before the range an increase looks for each series' previous value (like Prometheus' look-back delta). */
function lookbackMs(stepMs: number): number {
  return Math.max(stepMs, 5 * minuteMs);
}

interface Row {
  series_id: number;
  bucket: number;
  min: number;
  max: number;
  sum: number;
  count: number;
  last: number;
  increase: number;
  deltas: number;
}

/**
 * Reads the points of `seriesIds` in one SQL statement (GROUP BY series, step). The range is
 * widened to whole steps aligned on the epoch, so that a point's value does not depend on
 * where the range happened to start and rollup rows fall wholly within one step.
 */
export async function readPoints(db: Kysely<Database>, q: PointsQuery, retention: RetentionConfig, nowMs = Date.now()): Promise<Points> {
  const tier = chooseTier(q.startMs, q.endMs, q.stepMs, retention, nowMs);
  const series = new Map<number, StepAggregate[]>();
  if (q.seriesIds.length === 0) return { tier, series };

  const steps = alignedSteps(q.startMs, q.endMs, q.stepMs);
  const from = steps.first;
  const to = steps.last + q.stepMs;
  const readFrom = q.increase ? from - lookbackMs(q.stepMs) : from;
  const source = tier === "raw" ? rawRows(q.seriesIds, readFrom, to) : stitchedRows(tier, q.seriesIds, readFrom, to);
  const step = sql.lit(q.stepMs);
  const prev = q.increase ? sql`lag(lst) OVER (PARTITION BY series_id ORDER BY ts)` : sql`NULL::float8`;
  const last = q.last ? sql`(array_agg(lst ORDER BY ts DESC))[1]` : sql`'NaN'::float8`;

  // Steps in float8 arithmetic (much cheaper than numeric): times are rounded to whole ms
  // first, and a whole number of ms divided by a whole step floors exactly in a double.
  const { rows } = await sql<Row>`
    SELECT series_id,
      floor(round(extract(epoch FROM ts)::float8 * 1000) / ${step}) * ${step} AS bucket,
      min(mn) AS min, max(mx) AS max, sum(sm) AS sum, sum(n)::float8 AS count,
      ${last} AS last,
      coalesce(sum(CASE WHEN lst >= prev THEN lst - prev ELSE lst END) FILTER (WHERE prev IS NOT NULL), 0) AS increase,
      count(prev)::float8 AS deltas
    FROM (SELECT r.*, ${prev} AS prev FROM (${source}) r) w
    WHERE ts >= ${new Date(from).toISOString()}::timestamptz
    GROUP BY series_id, bucket
    ORDER BY series_id, bucket`.execute(db);

  for (const r of rows) {
    let list = series.get(r.series_id);
    if (!list) series.set(r.series_id, (list = []));
    list.push({ time: r.bucket, min: r.min, max: r.max, sum: r.sum, count: r.count, last: r.last, increase: r.increase, deltas: r.deltas });
  }
  return { tier, series };
}

/** Raw samples as rows (ts, mn, mx, sm, n, lst), the shape rollup rows have too. */
function rawRows(ids: number[], fromMs: number, toMs: number): RawBuilder<unknown> {
  return sql`
    SELECT series_id, ts, value AS mn, value AS mx, value AS sm, 1 AS n, value AS lst
    FROM samples
    WHERE series_id = ANY(${ids}::int4[])
      AND ts >= ${new Date(fromMs).toISOString()}::timestamptz AND ts < ${new Date(toMs).toISOString()}::timestamptz`;
}

/**
 * Rollup rows, then raw samples for whatever the rollup worker has not reached yet: for each
 * series, raw samples from the end of its latest rollup row on. So the newest points of a long
 * range are there before they are rolled up, and a database without rollups still answers.
 */
function stitchedRows(tier: "minute" | "hour", ids: number[], fromMs: number, toMs: number): RawBuilder<unknown> {
  const table = sql.table(rollupTable[tier]);
  const width = sql.lit(`${tierWidthMs[tier] / 1000} seconds`);
  const from = new Date(fromMs).toISOString();
  const to = new Date(toMs).toISOString();
  return sql`
    WITH cut AS (
      SELECT i.id AS series_id,
        coalesce((SELECT max(r.bucket) FROM ${table} r WHERE r.series_id = i.id AND r.bucket < ${to}::timestamptz) + ${width}::interval,
                 '-infinity'::timestamptz) AS until
      FROM unnest(${ids}::int4[]) AS i(id)
    )
    SELECT series_id, bucket AS ts, min AS mn, max AS mx, sum AS sm, count AS n, last AS lst
    FROM ${table}
    WHERE series_id = ANY(${ids}::int4[]) AND bucket >= ${from}::timestamptz AND bucket < ${to}::timestamptz
    UNION ALL
    SELECT s.series_id, s.ts, s.value, s.value, s.value, 1, s.value
    FROM samples s JOIN cut c ON c.series_id = s.series_id
    WHERE s.ts >= ${from}::timestamptz AND s.ts < ${to}::timestamptz AND s.ts >= c.until`;
}
