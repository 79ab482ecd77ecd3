import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import { decodeChunk, decodeRollups, rollUp, rollupWidthMs, type Buckets, type PointArrays } from "./chunk-format.js";
import { mergePoints } from "./compactor.js";
import { Doubles } from "./doubles.js";
import { decodeHead, groupOf } from "./group-payload.js";
import { maxTimeMs } from "./appender.js";
import { InvalidInput } from "./errors.js";
import { blockMs, blockOf } from "./partitions.js";

/**
 * The one read path of the store: the points of a set of series over a time range, from
 * compressed chunks and rollups (compacted blocks) and the head (what is not compacted yet),
 * read in one statement so that every sample is seen exactly once, then aggregated per step.
 */

/** Where points are read from: raw points (chunks and head), or the 5-minute or hourly rollups. */
export type Tier = "raw" | "5m" | "1h";

/** How long each tier is kept. */
export interface TsdbRetention {
  rawMs: number;
  rollups5mMs: number;
  rollups1hMs: number;
}

const minuteMs = 60_000;
const hourMs = 3_600_000;
const dayMs = 86_400_000;

/** Width of one row of each tier (0: raw points are points in time). */
export const tierWidthMs: Record<Tier, number> = { raw: 0, "5m": rollupWidthMs["5m"], "1h": rollupWidthMs["1h"] };

/**
 * Picks the tier for a range and a step. A rollup tier is used only when the step holds whole
 * rollup buckets (step ≥ the bucket width), else its points would be coarser than asked. 5-minute
 * rollups serve ranges longer than a day or starting before raw retention; hourly rollups ranges
 * longer than two days or starting before 5-minute retention. Otherwise raw points, which are exact.
 */
export function chooseTier(startMs: number, endMs: number, stepMs: number, retention: TsdbRetention, nowMs: number): Tier {
  const rangeMs = endMs - startMs;
  const ageMs = nowMs - startMs;
  if (stepMs >= hourMs && (rangeMs > 2 * dayMs || ageMs > retention.rollups5mMs)) return "1h";
  if (stepMs >= tierWidthMs["5m"] && (rangeMs > dayMs || ageMs > retention.rawMs)) return "5m";
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
   * value. 0 unless requested. From rollups, the values compared are each bucket's last value,
   * so a reset and its recovery within one bucket are not seen.
   */
  increase: number;
  /** How many of the step's values had a previous value to compare with (0: increase unknown). */
  deltas: number;
  /**
   * The time the increase spans, ms: from the value before the step's first delta to its last
   * value (0 without deltas). A step still filling spans less than its width.
   */
  spanMs: number;
}

export interface PointsQuery {
  seriesIds: number[];
  startMs: number;
  endMs: number;
  stepMs: number;
  /** Compute increases (counters and histogram buckets); costs a look-back before the range. */
  increase: boolean;
  /** Compute each step's latest value. */
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

/** Rows of one series in time order: raw points (count 1) or rollup buckets. */
class SeriesRows {
  t: number[] = [];
  min: number[] = [];
  max: number[] = [];
  sum: number[] = [];
  count: number[] = [];
  last: number[] = [];

  push(t: number, min: number, max: number, sum: number, count: number, last: number): void {
    this.t.push(t);
    this.min.push(min);
    this.max.push(max);
    this.sum.push(sum);
    this.count.push(count);
    this.last.push(last);
  }

  /** Removes the rows in [fromMs, toMs). */
  dropRange(fromMs: number, toMs: number): void {
    const keep = this.t.map((t) => t < fromMs || t >= toMs);
    for (const column of ["t", "min", "max", "sum", "count", "last"] as const) this[column] = this[column].filter((_, i) => keep[i]);
  }
}

/** Raw points of one series as they arrive (chunks, then head entries in write order), sorted and deduplicated on demand. */
class RawPoints {
  times: number[] = [];
  values = new Doubles();
  private ordered = true;

  add(times: ArrayLike<number>, values: ArrayLike<number>, n: number, fromMs: number, toMs: number): void {
    for (let i = 0; i < n; i++) {
      const t = times[i]!;
      if (t < fromMs || t >= toMs) continue;
      const size = this.times.length;
      if (size > 0 && t <= this.times[size - 1]!) this.ordered = false;
      this.times.push(t);
      this.values.push(values[i]!);
    }
  }

  /** Removes and returns the points of `block`, in the order they were added. */
  takeBlock(block: number): { times: number[]; values: Doubles } {
    const taken = { times: [] as number[], values: new Doubles() };
    const rest = { times: [] as number[], values: new Doubles() };
    this.times.forEach((t, i) => {
      const into = blockOf(t) === block ? taken : rest;
      into.times.push(t);
      into.values.push(this.values.at(i));
    });
    this.times = rest.times;
    this.values = rest.values;
    return taken;
  }

  /** In time order, one value per time: the one written last. */
  settle(): void {
    if (this.ordered) return;
    const order = Array.from({ length: this.times.length }, (_, i) => i);
    order.sort((a, b) => this.times[a]! - this.times[b]! || a - b);
    const times: number[] = [];
    const values = new Doubles();
    for (const i of order) {
      if (times.length > 0 && times[times.length - 1] === this.times[i]) values.set(values.length - 1, this.values.at(i));
      else {
        times.push(this.times[i]!);
        values.push(this.values.at(i));
      }
    }
    this.times = times;
    this.values = values;
    this.ordered = true;
  }
}

interface SourceRow {
  src: number;
  key: number;
  /** The chunk's or rollup row's block; the head row's partition. */
  part: number;
  data: Buffer;
}

export class Reader {
  constructor(
    private readonly db: Kysely<TsdbDatabase>,
    private readonly retention: TsdbRetention,
  ) {}

  /** The raw points of the series in [fromMs, toMs): merged, in time order, one per time. */
  async readSamples(seriesIds: number[], fromMs: number, toMs: number): Promise<Map<number, PointArrays>> {
    if (!(fromMs <= toMs)) throw new InvalidInput(`the range ${fromMs} to ${toMs} ms must run forwards`);
    const raw = await this.fetch("raw", seriesIds, fromMs, toMs);
    const out = new Map<number, PointArrays>();
    for (const [id, { points }] of raw) {
      points.settle();
      if (points.times.length === 0) continue;
      out.set(id, { times: Float64Array.from(points.times), values: points.values.view(), n: points.times.length });
    }
    return out;
  }

  /**
   * Reads the points of the series aggregated per step. The range is widened to whole steps
   * aligned on the epoch, so that a point's value does not depend on where the range happened to
   * start and rollup buckets fall wholly within one step.
   */
  async readPoints(q: PointsQuery, nowMs = Date.now()): Promise<Points> {
    if (!(Number.isInteger(q.stepMs) && q.stepMs >= 1)) throw new InvalidInput(`step must be a whole number of ms, at least 1, got ${q.stepMs}`);
    if (!(q.startMs >= 0 && q.startMs <= q.endMs && q.endMs <= maxTimeMs)) {
      throw new InvalidInput(`the range ${q.startMs} to ${q.endMs} ms must run forwards between 1970 and 9999`);
    }
    const tier = chooseTier(q.startMs, q.endMs, q.stepMs, this.retention, nowMs);
    const series = new Map<number, StepAggregate[]>();
    if (q.seriesIds.length === 0) return { tier, series };
    const steps = alignedSteps(q.startMs, q.endMs, q.stepMs);
    const from = steps.first;
    const to = steps.last + q.stepMs;
    const readFrom = q.increase ? from - lookbackMs(q.stepMs) : from;
    for (const [id, sources] of await this.fetch(tier, q.seriesIds, readFrom, to)) {
      const rows = mergeRows(sources);
      const aggregated = aggregate(rows, from, q.stepMs, q.increase, q.last);
      if (aggregated.length > 0) series.set(id, aggregated);
    }
    return { tier, series };
  }

  /**
   * One statement (one snapshot): the chunks or rollup rows of compacted blocks in the range,
   * and the head rows of the series' groups whose (partition, group) is not compacted yet.
   * Decodes what belongs to the wanted series within [fromMs, toMs).
   */
  private async fetch(
    tier: Tier,
    seriesIds: number[],
    fromMs: number,
    toMs: number,
  ): Promise<Map<number, { points: RawPoints; buckets: SeriesRows }>> {
    const out = new Map<number, { points: RawPoints; buckets: SeriesRows }>();
    for (const id of seriesIds) out.set(id, { points: new RawPoints(), buckets: new SeriesRows() });
    const wanted = new Set(seriesIds);
    const groups = [...new Set(seriesIds.map(groupOf))];
    /** The blocks each series has rollup buckets of. */
    const rolled = new Map<number, Set<number>>();
    const firstBlock = blockOf(fromMs);
    const lastBlock = blockOf(toMs - 1);
    const compacted =
      tier === "raw"
        ? sql`SELECT 0 AS src, series_id AS key, block AS part, 0::int8 AS id, data FROM tsdb_chunks
              WHERE series_id = ANY(${seriesIds}::int4[]) AND block BETWEEN ${firstBlock} AND ${lastBlock}`
        : sql`SELECT 0 AS src, grp AS key, block AS part, 0::int8 AS id, data FROM ${sql.table(tier === "5m" ? "tsdb_rollups_5m" : "tsdb_rollups_1h")}
              WHERE grp = ANY(${groups}::int4[]) AND block BETWEEN ${firstBlock} AND ${lastBlock}`;
    const { rows } = await sql<SourceRow>`
      ${compacted}
      UNION ALL
      SELECT 1, h.grp, h.part, h.id, h.data FROM tsdb_head h
      WHERE h.grp = ANY(${groups}::int4[]) AND h.part >= ${firstBlock} AND h.hi >= ${fromMs} AND h.lo < ${toMs}
        AND NOT EXISTS (SELECT 1 FROM tsdb_compacted c WHERE c.part = h.part AND c.grp = h.grp)
      ORDER BY src, part, id`.execute(this.db);

    for (const row of rows) {
      if (row.src === 1) {
        decodeHead(row.data, wanted, (id, times, values, n) => out.get(id)!.points.add(times, values, n, fromMs, toMs));
      } else if (tier === "raw") {
        const c = decodeChunk(row.data, row.part * blockMs);
        out.get(row.key)!.points.add(c.times, c.values, c.n, fromMs, toMs);
      } else {
        decodeRollups(row.data, row.part * blockMs, wanted, (id, b) => {
          pushBuckets(out.get(id)!.buckets, b, fromMs, toMs);
          let blocks = rolled.get(id);
          if (!blocks) rolled.set(id, (blocks = new Set()));
          blocks.add(row.part);
        });
      }
    }
    if (tier !== "raw") await this.rebuildOverlaps(tier, out, rolled, fromMs, toMs);
    return out;
  }

  /**
   * Late points not compacted yet (in the head) for a block that already has rollups may
   * repeat points of the block (a batch re-sent after its block was compacted) or replace them:
   * adding them to the buckets would count them twice. The buckets of such a block are
   * recomputed from its chunk merged with those points, as compaction will. Rare: a second
   * statement only when it happens.
   */
  private async rebuildOverlaps(
    tier: "5m" | "1h",
    out: Map<number, { points: RawPoints; buckets: SeriesRows }>,
    rolled: Map<number, Set<number>>,
    fromMs: number,
    toMs: number,
  ): Promise<void> {
    const overlaps: { id: number; block: number }[] = [];
    for (const [id, blocks] of rolled) {
      const hit = new Set<number>();
      for (const t of out.get(id)!.points.times) if (blocks.has(blockOf(t))) hit.add(blockOf(t));
      for (const block of hit) overlaps.push({ id, block });
    }
    if (overlaps.length === 0) return;
    const { rows } = await sql<{ series_id: number; block: number; data: Buffer }>`
      SELECT c.series_id, c.block, c.data FROM tsdb_chunks c
      JOIN unnest(${overlaps.map((o) => o.id)}::int4[], ${overlaps.map((o) => o.block)}::int4[]) AS u(s, b) ON c.series_id = u.s AND c.block = u.b`.execute(
      this.db,
    );
    const chunks = new Map(rows.map((r) => [`${r.series_id}:${r.block}`, r.data]));
    for (const { id, block } of overlaps) {
      const { points, buckets } = out.get(id)!;
      const late = points.takeBlock(block);
      const chunk = chunks.get(`${id}:${block}`);
      const merged = mergePoints(chunk ? decodeChunk(chunk, block * blockMs) : undefined, late.times, late.values);
      buckets.dropRange(block * blockMs, (block + 1) * blockMs);
      pushBuckets(buckets, rollUp(merged, rollupWidthMs[tier]), fromMs, toMs);
    }
  }
}

function pushBuckets(rows: SeriesRows, b: Buckets, fromMs: number, toMs: number): void {
  for (let i = 0; i < b.n; i++) {
    const t = b.times[i]!;
    if (t >= fromMs && t < toMs) rows.push(t, b.min[i]!, b.max[i]!, b.sum[i]!, b.count[i]!, b.last[i]!);
  }
}

/** Rollup buckets and raw points of one series, as rows in time order. */
function mergeRows({ points, buckets }: { points: RawPoints; buckets: SeriesRows }): SeriesRows | RawPoints {
  points.settle();
  if (buckets.t.length === 0) return points;
  for (let i = 0; i < points.times.length; i++) {
    const v = points.values.at(i);
    buckets.push(points.times[i]!, v, v, v, 1, v);
  }
  const order = Array.from({ length: buckets.t.length }, (_, i) => i).sort((a, b) => buckets.t[a]! - buckets.t[b]! || a - b);
  const rows = new SeriesRows();
  for (const i of order) rows.push(buckets.t[i]!, buckets.min[i]!, buckets.max[i]!, buckets.sum[i]!, buckets.count[i]!, buckets.last[i]!);
  return rows;
}

/**
 * Aggregates rows per step from `fromMs` on; rows before it only serve as the previous value
 * of an increase. Raw points are rows of count 1 whose min, max, sum and last are the value.
 */
function aggregate(rows: SeriesRows | RawPoints, fromMs: number, stepMs: number, increase: boolean, last: boolean): StepAggregate[] {
  const raw = rows instanceof RawPoints;
  const times = raw ? rows.times : rows.t;
  const lasts = raw ? rows.values.view() : rows.last;
  const mins = raw ? lasts : rows.min;
  const maxes = raw ? lasts : rows.max;
  const sums = raw ? lasts : rows.sum;
  const out: StepAggregate[] = [];
  let current: StepAggregate | undefined;
  let prev = 0;
  let prevTime = 0;
  let hasPrev = false;
  let spanFrom = 0;
  for (let i = 0; i < times.length; i++) {
    const t = times[i]!;
    const lst = lasts[i]!;
    if (t >= fromMs) {
      const bucket = Math.floor(t / stepMs) * stepMs;
      if (current?.time !== bucket) {
        current = { time: bucket, min: mins[i]!, max: maxes[i]!, sum: 0, count: 0, last: Number.NaN, increase: 0, deltas: 0, spanMs: 0 };
        out.push(current);
      }
      if (mins[i]! < current.min) current.min = mins[i]!;
      if (maxes[i]! > current.max) current.max = maxes[i]!;
      current.sum += sums[i]!;
      current.count += raw ? 1 : rows.count[i]!;
      if (last) current.last = lst;
      if (increase && hasPrev) {
        if (current.deltas === 0) spanFrom = prevTime;
        current.increase += lst >= prev ? lst - prev : lst;
        current.deltas++;
        current.spanMs = t - spanFrom;
      }
    }
    prev = lst;
    prevTime = t;
    hasPrev = true;
  }
  return out;
}
