import { ByteReader, ByteWriter, CorruptChunk, decodeTimes, decodeValues, encodeTimes, encodeValues } from "./codec.js";

/**
 * Payloads that hold one entry per series of a group (64 consecutive series ids, usually one
 * host's): a small index (uvarint entries; per entry uvarint id − previous id and uvarint byte
 * length) followed by the entries, so that a reader decodes only the series it wants. Entries
 * are sorted by id; one id may repeat (two batches of one group commit), and then the later
 * entry wins at equal times.
 *
 * Head rows hold points (headEntry); rollup rows hold buckets (chunk-format.ts's rollups).
 */

/** Series ids per group: a group's series share head and rollup rows. */
export const groupShift = 6;
export const groupOf = (seriesId: number): number => Math.floor(seriesId / 2 ** groupShift);

const entries = new ByteWriter(64 * 1024);
const index = new ByteWriter(1024);

/** Packs entries written by `write` (called once per id, in order) behind their index. */
export function packGroup(ids: number[], write: (w: ByteWriter, i: number) => void): Buffer {
  entries.reset();
  index.reset();
  index.uvarint(ids.length);
  let prevId = 0;
  ids.forEach((id, i) => {
    const start = entries.pos;
    write(entries, i);
    index.uvarint(id - prevId);
    index.uvarint(entries.pos - start);
    prevId = id;
  });
  const out = Buffer.allocUnsafe(index.pos + entries.pos);
  out.set(index.view(), 0);
  out.set(entries.view(), index.pos);
  return out;
}

/** Calls `visit` with a reader over each entry whose id is in `wanted` (every entry when undefined), in payload order. */
export function unpackGroup(data: Uint8Array, wanted: ReadonlySet<number> | undefined, visit: (id: number, r: ByteReader) => void): void {
  const r = new ByteReader(data);
  const count = r.uvarint();
  if (count > data.length) throw new CorruptChunk(`${count} entries in ${data.length} bytes`);
  const ids = new Array<number>(count);
  const lengths = new Array<number>(count);
  let id = 0;
  for (let i = 0; i < count; i++) {
    id += r.uvarint();
    ids[i] = id;
    lengths[i] = r.uvarint();
  }
  let pos = r.pos;
  for (let i = 0; i < count; i++) {
    const end = pos + lengths[i]!;
    if (end > data.length) throw new CorruptChunk("a group entry runs past the payload");
    if (wanted === undefined || wanted.has(ids[i]!)) visit(ids[i]!, new ByteReader(data, pos, end));
    pos = end;
  }
}

/** Points of one series in a head row: times strictly increasing, whole ms. */
export interface Entry {
  id: number;
  times: ArrayLike<number>;
  values: ArrayLike<number>;
  from: number;
  to: number;
}

/**
 * A head row's payload: per entry uvarint n; a byte saying whether its times are those of the
 * entry before (a host's series share their collection times, so most entries carry none);
 * else the times; then the values (codec.ts).
 */
export function encodeHead(list: Entry[]): Buffer {
  return packGroup(
    list.map((e) => e.id),
    (w, i) => {
      const e = list[i]!;
      w.uvarint(e.to - e.from);
      const prev = i > 0 ? list[i - 1]! : undefined;
      const shared = prev !== undefined && sameTimes(prev, e);
      w.byte(shared ? 1 : 0);
      if (!shared) encodeTimes(w, e.times, e.from, e.to);
      encodeValues(w, e.values, e.from, e.to);
    },
  );
}

function sameTimes(a: Entry, b: Entry): boolean {
  const n = a.to - a.from;
  if (n !== b.to - b.from) return false;
  for (let k = 0; k < n; k++) if (a.times[a.from + k] !== b.times[b.from + k]) return false;
  return true;
}

/** Decoded points of one entry; the arrays are reused by the next call of `visit`. */
export type Visit = (id: number, times: Float64Array, values: Float64Array, n: number) => void;

let times = new Float64Array(4096);
let values = new Float64Array(4096);

/** Calls `visit` for the points of each entry of a head payload whose id is in `wanted` (every entry when undefined). */
export function decodeHead(data: Uint8Array, wanted: ReadonlySet<number> | undefined, visit: Visit): void {
  // Shared times refer to the entry before in the payload, which may not be wanted: times are
  // decoded for every entry, values only for the wanted ones.
  let n = 0;
  unpackGroup(data, undefined, (id, r) => {
    const count = r.uvarint();
    const shared = r.byte() === 1;
    if (shared ? count !== n : count > r.end - r.pos + 1) throw new CorruptChunk(`a head entry of ${count} points does not fit its bytes`);
    if (count > times.length) {
      times = new Float64Array(count * 2);
      values = new Float64Array(count * 2);
    }
    if (!shared) decodeTimes(r, times, 0, count);
    n = count;
    if (wanted !== undefined && !wanted.has(id)) return;
    decodeValues(r, values, 0, count);
    visit(id, times, values, count);
  });
}
