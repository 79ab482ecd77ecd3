import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { partitionName } from "../storage/partitions.js";
import { copyHeader, copyTrailer, decodeRows, type SampleRows } from "./sample-rows.js";

interface PendingBatch {
  rows: SampleRows;
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

/**
 * Writes samples with group commit: batches that arrive while a write is in flight are
 * coalesced into the next statement. Each caller's promise resolves only after the statement
 * holding its rows has committed.
 *
 * A group goes in with binary COPY, PostgreSQL's fastest path; the day partitions must exist
 * (Partitions.ensureFor). COPY cannot skip rows that are
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

  /** Stores the rows; resolves once they are committed. */
  write(rows: SampleRows): Promise<void> {
    if (rows.rows === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      this.queuedRows += rows.rows;
      if (this.flushing < this.maxConcurrentWrites) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing++;
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup();
        try {
          await this.writeGroup(group.map((b) => b.rows));
          for (const b of group) b.resolve();
        } catch (err) {
          for (const b of group) b.reject(err);
        }
      }
    } finally {
      this.flushing--;
    }
  }

  private async writeGroup(batches: SampleRows[]): Promise<void> {
    // The encoded rows of every batch, by day: each day is one partition, one COPY.
    const days = new Map<number, Buffer[]>();
    for (const batch of batches) {
      for (const day of batch.byDay.keys()) {
        const chunks = days.get(day) ?? [];
        chunks.push(batch.chunk(day));
        days.set(day, chunks);
      }
    }
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      // Straight into each day's partition: routing every row through the parent costs about a
      // fifth of COPY's speed. Several days (rare) go in one transaction, so a batch stays whole.
      if (days.size > 1) await client.query("BEGIN");
      for (const [day, chunks] of days) {
        const copy = client.query(copyFrom(`COPY ${partitionName(day)} (series_id, ts, value) FROM STDIN (FORMAT binary)`));
        await pipeline(Readable.from([copyHeader, ...chunks, copyTrailer]), copy);
      }
      if (days.size > 1) await client.query("COMMIT");
    } catch (err) {
      if (days.size > 1) await client.query("ROLLBACK").catch(() => undefined);
      if ((err as { code?: string }).code !== uniqueViolation) {
        broken = err as Error; // the connection may be unusable: do not return it to the pool
        throw err;
      }
      const { ids, times, values } = decodeRows([...days.values()].flat());
      await client.query(insertSkippingStored, [numberArray(ids), numberArray(times), numberArray(values)]);
    } finally {
      client.release(broken);
    }
  }

  private takeGroup(): PendingBatch[] {
    const group: PendingBatch[] = [];
    let rows = 0;
    while (this.queue.length > 0 && (group.length === 0 || rows + this.queue[0]!.rows.rows <= this.maxRowsPerStatement)) {
      const batch = this.queue.shift()!;
      rows += batch.rows.rows;
      group.push(batch);
    }
    this.queuedRows -= rows;
    return group;
  }
}
