import type pg from "pg";

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

// One statement for a whole group; re-sent samples hit the (series_id, ts) key and are skipped.
const insertSamples = `
  INSERT INTO samples (series_id, ts, value)
  SELECT s, to_timestamp(t / 1000), v FROM unnest($1::int4[], $2::float8[], $3::float8[]) AS u(s, t, v)
  ON CONFLICT DO NOTHING`;

/**
 * Writes samples with group commit: batches that arrive while a write is in flight are
 * coalesced into the next statement. Each caller's promise resolves only after the statement
 * holding its rows has committed.
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
          await this.pool.query(insertSamples, [numberArray(ids), numberArray(times), numberArray(values)]);
          for (const b of group) b.resolve();
        } catch (err) {
          for (const b of group) b.reject(err);
        }
      }
    } finally {
      this.flushing--;
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
