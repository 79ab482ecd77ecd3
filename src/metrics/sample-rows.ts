import { dayMs } from "../storage/partitions.js";

/** Bytes of one row in PostgreSQL's binary COPY format: (int4 series_id, timestamptz ts, float8 value). */
const rowBytes = 2 + (4 + 4) + (4 + 8) + (4 + 8);
const postgresEpochMs = Date.UTC(2000, 0, 1);

/** What a binary COPY stream starts and ends with. */
export const copyHeader = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]);
export const copyTrailer = Buffer.from([0xff, 0xff]);

interface DayRows {
  buf: Buffer;
  used: number;
}

/**
 * A batch's samples, encoded once, as they are added, into binary COPY rows grouped by UTC day
 * (each day is one samples partition): no per-row objects or arrays to build, copy and collect.
 */
export class SampleRows {
  readonly byDay = new Map<number, DayRows>();
  /** Every time added, for the late-sample check. */
  readonly times: number[] = [];
  private lastDay = Number.NaN;
  private last: DayRows | undefined;

  /** `capacity`: the most rows this batch can hold. */
  constructor(private readonly capacity: number) {}

  get rows(): number {
    return this.times.length;
  }

  add(seriesId: number, timeMs: number, value: number): void {
    const day = Math.floor(timeMs / dayMs);
    let d = day === this.lastDay ? this.last! : this.byDay.get(day);
    if (!d) {
      d = { buf: Buffer.allocUnsafe(this.capacity * rowBytes), used: 0 };
      this.byDay.set(day, d);
    }
    this.lastDay = day;
    this.last = d;
    const { buf } = d;
    let o = d.used;
    o = buf.writeInt16BE(3, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeInt32BE(seriesId, o);
    // timestamptz: int64 microseconds since 2000-01-01 UTC, written as two 32-bit halves (no BigInt).
    const us = (timeMs - postgresEpochMs) * 1000;
    const high = Math.floor(us / 4294967296);
    o = buf.writeInt32BE(8, o);
    o = buf.writeInt32BE(high, o);
    o = buf.writeUInt32BE(us - high * 4294967296, o);
    o = buf.writeInt32BE(8, o);
    d.used = buf.writeDoubleBE(value, o);
    this.times.push(timeMs);
  }

  /** The encoded rows of one day. */
  chunk(day: number): Buffer {
    const d = this.byDay.get(day)!;
    return d.buf.subarray(0, d.used);
  }
}

/** Reads rows back (for the rare INSERT … ON CONFLICT path). */
export function decodeRows(chunks: Buffer[]): { ids: number[]; times: number[]; values: number[] } {
  const ids: number[] = [];
  const times: number[] = [];
  const values: number[] = [];
  for (const chunk of chunks) {
    for (let o = 0; o < chunk.length; o += rowBytes) {
      ids.push(chunk.readInt32BE(o + 6));
      const us = chunk.readInt32BE(o + 14) * 4294967296 + chunk.readUInt32BE(o + 18);
      times.push(us / 1000 + postgresEpochMs);
      values.push(chunk.readDoubleBE(o + 26));
    }
  }
  return { ids, times, values };
}
