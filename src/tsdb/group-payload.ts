import { ByteReader, ByteWriter, CorruptChunk, decodeSeries, encodeSeries, peekCount } from "./codec.js";

/**
 * The payload of one head row: the points of several series (one group commit, one group of
 * series), each encoded on its own (codec.ts) behind a small index, so that a reader decodes only
 * the series it wants. Layout: uvarint entries; per entry uvarint (id − previous id) and uvarint
 * byte length; then the entries' encoded points. Entries are sorted by id; one id may repeat
 * (two batches of one group commit), and then the later entry's points win at equal times.
 */

/** Series ids per group: a group's series share head rows (64 consecutive ids, usually one host's). */
export const groupShift = 6;
export const groupOf = (seriesId: number): number => Math.floor(seriesId / 2 ** groupShift);

export interface Entry {
  id: number;
  /** Strictly increasing, whole ms. */
  times: ArrayLike<number>;
  values: ArrayLike<number>;
  from: number;
  to: number;
}

const segments = new ByteWriter(64 * 1024);
const header = new ByteWriter(1024);

/** Encodes entries already sorted by id (stable: equal ids keep their order). */
export function encodeGroup(entries: Entry[]): Buffer {
  segments.reset();
  header.reset();
  header.uvarint(entries.length);
  let prevId = 0;
  for (const e of entries) {
    const start = segments.pos;
    encodeSeries(segments, e.times, e.values, e.from, e.to);
    header.uvarint(e.id - prevId);
    header.uvarint(segments.pos - start);
    prevId = e.id;
  }
  const out = Buffer.allocUnsafe(header.pos + segments.pos);
  out.set(header.view(), 0);
  out.set(segments.view(), header.pos);
  return out;
}

/** Decoded points of one entry; the arrays are reused by the next call of `visit`. */
export type Visit = (id: number, times: Float64Array, values: Float64Array, n: number) => void;

let times = new Float64Array(4096);
let values = new Float64Array(4096);

/** Calls `visit` for each entry whose id is in `wanted` (every entry when undefined), in payload order. */
export function decodeGroup(data: Uint8Array, wanted: ReadonlySet<number> | undefined, visit: Visit): void {
  const r = new ByteReader(data);
  const count = r.uvarint();
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
    if (end > data.length) throw new CorruptChunk("a head entry runs past the payload");
    if (wanted === undefined || wanted.has(ids[i]!)) {
      const entry = new ByteReader(data, pos, end);
      const n = peekCount(entry);
      if (n > times.length) {
        times = new Float64Array(n * 2);
        values = new Float64Array(n * 2);
      }
      decodeSeries(entry, times, values);
      visit(ids[i]!, times, values, n);
    }
    pos = end;
  }
}
