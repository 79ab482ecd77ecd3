import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";

interface PendingBatch {
  ids: number[];
  times: number[];
  values: number[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** PostgreSQL array literal of numbers; much cheaper than pg's generic array serialisation for large batches. */
function numberArray(values: number[]): string {
  return `{${values.join(",")}}`;
}

// The slow path, for a group holding samples that are already stored (a re-sent batch):
// the (series_id, ts) key skips them.
const insertSkippingStored = `
  INSERT INTO samples (series_id, ts, value)
  SELECT s, to_timestamp(t / 1000), v FROM unnest($1::int4[], $2::float8[], $3::float8[]) AS u(s, t, v)
  ON CONFLICT DO NOTHING`;

const uniqueViolation = "23505";
const postgresEpochMs = Date.UTC(2000, 0, 1);
const copySignature = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const rowBytes = 2 + (4 + 4) + (4 + 8) + (4 + 8);

/** Rows in PostgreSQL's binary COPY format: (int4 series_id, timestamptz ts, float8 value). */
export function binaryCopy(ids: number[], times: number[], values: number[]): Buffer {
  const buf = Buffer.allocUnsafe(copySignature.length + 8 + ids.length * rowBytes + 2);
  let o = copySignature.copy(buf, 0);
  o = buf.writeInt32BE(0, o); // flags
  o = buf.writeInt32BE(0, o); // header extension length
  for (let i = 0; i < ids.length; i++) {
    o = buf.writeInt16BE(3, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeInt32BE(ids[i]!, o);
    // timestamptz: int64 microseconds since 2000-01-01 UTC, written as two 32-bit halves (no BigInt).
    const us = (times[i]! - postgresEpochMs) * 1000;
    const high = Math.floor(us / 4294967296);
    o = buf.writeInt32BE(8, o);
    o = buf.writeInt32BE(high, o);
    o = buf.writeUInt32BE(us - high * 4294967296, o);
    o = buf.writeInt32BE(8, o);
    o = buf.writeDoubleBE(values[i]!, o);
  }
  buf.writeInt16BE(-1, o);
  return buf;
}

/**
 * Writes samples with group commit: batches that arrive while a write is in flight are
 * coalesced into the next statement. Each caller's promise resolves only after the statement
 * holding its rows has committed.
 *
 * A group goes in with binary COPY, PostgreSQL's fastest path. COPY cannot skip rows that are
 * already stored, so when the key says a row is (a batch re-sent after a lost answer), the
 * whole COPY is rolled back and the group is written again with INSERT … ON CONFLICT DO NOTHING.
 */
export class SampleWriter {
  private queue: PendingBatch[] = [];
  private queuedRows = 0;
  private flushing = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxConcurrentWrites = 2,
    private readonly maxRowsPerStatement = 200_000,
    /** Rows waiting for a write before new batches are turned away; bounds memory while the database is slow. */
    private readonly maxQueuedRows = 2_000_000,
  ) {}

  /** Whether a batch of `rows` would fit in the queue now. */
  hasRoomFor(rows: number): boolean {
    return this.queuedRows + rows <= this.maxQueuedRows;
  }

  /** Stores the rows (parallel arrays: series id, time in ms, value). */
  write(ids: number[], times: number[], values: number[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push({ ids, times, values, resolve, reject });
      this.queuedRows += ids.length;
      if (this.flushing < this.maxConcurrentWrites) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing++;
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup();
        try {
          const ids = group.length === 1 ? group[0]!.ids : group.flatMap((b) => b.ids);
          const times = group.length === 1 ? group[0]!.times : group.flatMap((b) => b.times);
          const values = group.length === 1 ? group[0]!.values : group.flatMap((b) => b.values);
          await this.writeGroup(ids, times, values);
          for (const b of group) b.resolve();
        } catch (err) {
          for (const b of group) b.reject(err);
        }
      }
    } finally {
      this.flushing--;
    }
  }

  private async writeGroup(ids: number[], times: number[], values: number[]): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await pipeline(Readable.from([binaryCopy(ids, times, values)]), client.query(copyFrom("COPY samples (series_id, ts, value) FROM STDIN (FORMAT binary)")));
    } catch (err) {
      if ((err as { code?: string }).code !== uniqueViolation) {
        broken = err as Error; // the connection may be unusable: do not return it to the pool
        throw err;
      }
      await client.query(insertSkippingStored, [numberArray(ids), numberArray(times), numberArray(values)]);
    } finally {
      client.release(broken);
    }
  }

  private takeGroup(): PendingBatch[] {
    const group: PendingBatch[] = [];
    let rows = 0;
    while (this.queue.length > 0 && (group.length === 0 || rows + this.queue[0]!.ids.length <= this.maxRowsPerStatement)) {
      const batch = this.queue.shift()!;
      rows += batch.ids.length;
      group.push(batch);
    }
    this.queuedRows -= rows;
    return group;
  }
}
