import { deflateRawSync, inflateRawSync } from "node:zlib";
import {
  ByteReader,
  ByteWriter,
  CorruptChunk,
  decimalExponent,
  decodeSeries,
  decodeTimes,
  decodeValues,
  encodeSeries,
  encodeTimes,
  encodeValues,
  peekCount,
  readCount,
} from "./codec.js";
import { packGroup, unpackGroup } from "./group-payload.js";

/**
 * What compaction writes: a chunk (one series' points over one block) and a rollup row (the
 * buckets of every series of a group over one block: a row per series would cost more in row
 * overhead than its buckets take). Both are the codec's layout compressed with DEFLATE behind a
 * format byte; DEFLATE roughly halves the codec's output on node_exporter-like data.
 */

const deflated = 1;

/** Rollup tiers: bucket widths. */
export const rollupWidthMs = { "5m": 300_000, "1h": 3_600_000 } as const;
export type RollupTier = keyof typeof rollupWidthMs;

/** Points of one series: parallel arrays, the first n entries used, times strictly increasing. */
export interface PointArrays {
  times: Float64Array;
  values: Float64Array;
  n: number;
}

/** Buckets of one series: bucket start times and per bucket min, max, sum, count and last value. */
export interface Buckets {
  times: Float64Array;
  min: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  count: Float64Array;
  last: Float64Array;
  n: number;
}

const writer = new ByteWriter(64 * 1024);

function compress(bytes: Uint8Array): Buffer {
  const body = deflateRawSync(bytes, { level: 6 });
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = deflated;
  body.copy(out, 1);
  return out;
}

/** Inflated rows stay far below this (a 2-hour block of one series, or of a group's rollups); more is corrupt. */
const maxInflatedBytes = 64 * 1024 * 1024;

function decompress(data: Uint8Array): Buffer {
  if (data[0] !== deflated) throw new CorruptChunk(`unknown chunk format ${data[0]}`);
  try {
    return inflateRawSync(data.subarray(1), { maxOutputLength: maxInflatedBytes });
  } catch (err) {
    throw new CorruptChunk(`a compressed row does not inflate: ${(err as Error).message}`);
  }
}

/** One series' points over a block; `base` is the block's start (times are stored from it). */
export function encodeChunk(p: PointArrays, base: number): Buffer {
  writer.reset();
  encodeSeries(writer, p.times, p.values, 0, p.n, base);
  return compress(writer.view());
}

export function decodeChunk(data: Uint8Array, base: number): PointArrays {
  const r = new ByteReader(decompress(data));
  const n = peekCount(r);
  const times = new Float64Array(n);
  const values = new Float64Array(n);
  decodeSeries(r, times, values, 0, base);
  return { times, values, n };
}

/** The buckets of each series of a group over a block starting at `base`, one entry per series, compressed. */
export function encodeRollups(entries: { id: number; buckets: Buckets }[], base: number): Buffer {
  const packed = packGroup(
    entries.map((e) => e.id),
    (w, i) => {
      const b = entries[i]!.buckets;
      w.uvarint(b.n);
      encodeTimes(w, b.times, 0, b.n, base);
      for (const column of [b.min, b.max, b.sum, b.count, b.last]) encodeValues(w, column, 0, b.n);
    },
  );
  return compress(packed);
}

/** Calls `visit` with the buckets of each series of a rollup row whose id is in `wanted` (every series when undefined). */
export function decodeRollups(
  data: Uint8Array,
  base: number,
  wanted: ReadonlySet<number> | undefined,
  visit: (id: number, buckets: Buckets) => void,
): void {
  unpackGroup(decompress(data), wanted, (id, r) => {
    const n = readCount(r);
    const b = emptyBuckets(n);
    decodeTimes(r, b.times, 0, n, base);
    for (const column of [b.min, b.max, b.sum, b.count, b.last]) decodeValues(r, column, 0, n);
    b.n = n;
    visit(id, b);
  });
}

/** Room for `capacity` buckets, none used yet. */
export function emptyBuckets(capacity: number): Buckets {
  const f = () => new Float64Array(capacity);
  return { times: f(), min: f(), max: f(), sum: f(), count: f(), last: f(), n: 0 };
}

/**
 * The points rolled up into buckets of `widthMs` aligned on the Unix epoch. A sum of short
 * decimals is rounded to their decimals (0.1 + 0.2 is stored as 0.3): the exact sum, and one
 * that compresses as well as the values do.
 */
export function rollUp(p: PointArrays, widthMs: number): Buckets {
  const b = emptyBuckets(p.n);
  let k = -1;
  let bucket = Number.NaN;
  let first = 0;
  for (let i = 0; i < p.n; i++) {
    const t = p.times[i]!;
    const v = p.values[i]!;
    const start = Math.floor(t / widthMs) * widthMs;
    if (start !== bucket) {
      if (k >= 0) b.sum[k] = decimalSum(b.sum[k]!, p.values, first, i);
      bucket = start;
      first = i;
      k++;
      b.times[k] = start;
      b.min[k] = v;
      b.max[k] = v;
      b.sum[k] = v;
      b.count[k] = 1;
    } else {
      if (v < b.min[k]! || Number.isNaN(v)) b.min[k] = v;
      if (v > b.max[k]! || Number.isNaN(v)) b.max[k] = v;
      b.sum[k]! += v;
      b.count[k]!++;
    }
    b.last[k] = v;
  }
  if (k >= 0) b.sum[k] = decimalSum(b.sum[k]!, p.values, first, p.n);
  b.n = k + 1;
  return b;
}

function decimalSum(sum: number, values: Float64Array, from: number, to: number): number {
  const e = decimalExponent(values, from, to);
  if (e < 0 || e > 9) return sum;
  const p = 10 ** e;
  const rounded = Math.round(sum * p) / p;
  return Math.abs(rounded * p) < 2 ** 49 ? rounded : sum;
}
