import { sql, type Kysely } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import { byteaColumn } from "./bytea-column.js";
import { InvalidInput, Overloaded } from "./errors.js";
import { encodeHead, groupOf, type Entry } from "./group-payload.js";
import { blockMs, blockOf, blockOfPartition, headTable, type Partitions } from "./partitions.js";

/** New points of one series; times in whole ms, in any order (the later of two equal times wins). */
export interface SeriesPoints {
  id: number;
  times: ArrayLike<number>;
  values: ArrayLike<number>;
}

export interface AppenderOptions {
  /** Group commits in flight at once. */
  maxConcurrentWrites: number;
  /** Points waiting for a write before new batches are turned away; bounds memory while the database is slow. */
  maxQueuedPoints: number;
  /** Points one group commit writes at most. */
  maxPointsPerWrite: number;
  /**
   * How long after a block ends its head partition still takes points. Later points go to the
   * head partition of the current block as late points, and compaction merges them into their
   * chunks; the compactor waits longer than this before it compacts a block.
   */
  writeGraceMs: number;
  /** The clock that routes points to head partitions; tests move it. */
  now: () => number;
}

export const defaultAppenderOptions: AppenderOptions = {
  maxConcurrentWrites: 2,
  maxQueuedPoints: 4_000_000,
  maxPointsPerWrite: 250_000,
  writeGraceMs: 10 * 60_000,
  now: Date.now,
};

interface Pending {
  batch: SeriesPoints[];
  points: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

// SQLSTATE when a partition refuses a row: sealed by compaction (its CHECK constraint), or dropped.
const refusedByPartition = "23514";

/**
 * Appends points to the head with group commit: batches that arrive while a write is in flight
 * go into the next one. A group commit writes one row per (head partition, group of series)
 * holding the points encoded (group-payload.ts), so a write costs a few rows however many
 * points it carries. Each caller's promise resolves only after the rows holding its points
 * are committed.
 */
export class Appender {
  private queue: Pending[] = [];
  private queuedPoints = 0;
  private flushing = 0;
  /** The newest block this daemon found sealed: its points and older ones go to the current block. */
  private sealedThrough = Number.NEGATIVE_INFINITY;
  private readonly options: AppenderOptions;

  constructor(
    private readonly db: Kysely<TsdbDatabase>,
    private readonly partitions: Partitions,
    options: Partial<AppenderOptions> = {},
  ) {
    this.options = { ...defaultAppenderOptions, ...options };
  }

  /** Appends the batch; resolves once it is committed. Overloaded when too much is waiting already. */
  append(batch: SeriesPoints[]): Promise<void> {
    let points = 0;
    try {
      for (const s of batch) points += checkPoints(s);
    } catch (err) {
      return Promise.reject(err);
    }
    if (points === 0) return Promise.resolve();
    if (this.queuedPoints + points > this.options.maxQueuedPoints) {
      return Promise.reject(new Overloaded("the store is writing behind; retry later"));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ batch, points, resolve, reject });
      this.queuedPoints += points;
      if (this.flushing < this.options.maxConcurrentWrites) void this.flush();
    });
  }

  /**
   * Writes the batch within the caller's transaction, without group commit (for writes that must
   * commit with other rows). The head partitions of the current block must exist already
   * (ensureCurrent): DDL inside the caller's transaction would hold its locks longer.
   */
  async appendIn(tx: Kysely<TsdbDatabase>, batch: SeriesPoints[]): Promise<void> {
    for (const s of batch) checkPoints(s);
    await this.insert(tx, headRows(batch, this.options.now(), this.oldestOpen()));
  }

  /** Creates the head partitions of the current and the next block, if this daemon has not seen them yet. */
  async ensureCurrent(): Promise<void> {
    const current = blockOf(this.options.now());
    await this.partitions.ensure(headTable, [current, current + 1]);
  }

  private async flush(): Promise<void> {
    this.flushing++;
    try {
      while (this.queue.length > 0) {
        // Everything waiting, up to a statement of bounded size (a batch alone may exceed it).
        let points = 0;
        let take = 0;
        while (take < this.queue.length && (take === 0 || points + this.queue[take]!.points <= this.options.maxPointsPerWrite)) {
          points += this.queue[take]!.points;
          take++;
        }
        const group = this.queue.splice(0, take);
        this.queuedPoints -= points;
        try {
          await this.write(group.flatMap((p) => p.batch));
          for (const p of group) p.resolve();
        } catch (err) {
          for (const p of group) p.reject(err);
        }
      }
    } finally {
      this.flushing--;
    }
  }

  private async write(batch: SeriesPoints[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const rows = headRows(batch, this.options.now(), this.oldestOpen());
      await this.partitions.ensure(headTable, new Set(rows.part));
      try {
        await this.insert(this.db, rows);
        return;
      } catch (err) {
        // 23514: a partition sealed by compaction refused the rows (they go to the current block
        // as late points), or another daemon dropped one that we still knew: route again.
        const { code, table } = err as { code?: string; table?: string };
        if (code !== refusedByPartition || attempt >= 2) throw err;
        const sealed = table === undefined ? undefined : blockOfPartition(headTable, table);
        if (sealed !== undefined) this.sealedThrough = Math.max(this.sealedThrough, sealed);
        this.partitions.forget(headTable);
      }
    }
  }

  /** The oldest block whose head partition takes points now: within the write grace, and not sealed by compaction. */
  private oldestOpen(): number {
    return Math.max(blockOf(this.options.now() - this.options.writeGraceMs), this.sealedThrough + 1);
  }

  private async insert(db: Kysely<TsdbDatabase>, rows: HeadRows): Promise<void> {
    const data = byteaColumn(rows.data);
    await sql`
      INSERT INTO tsdb_head (part, grp, lo, hi, n, data)
      SELECT p, g, l, h, n, substring(${data.blob}::bytea FROM o FOR len)
      FROM unnest(${rows.part}::int4[], ${rows.grp}::int4[], ${rows.lo}::int8[], ${rows.hi}::int8[], ${rows.n}::int4[],
                  ${data.offsets}::int4[], ${data.lengths}::int4[]) AS u(p, g, l, h, n, o, len)`.execute(db);
  }
}

/** The latest time the store takes: the end of year 9999, in Unix ms. */
export const maxTimeMs = 253_402_300_799_999;

/** Checked before a batch joins a group commit, so that one bad batch never fails the others; returns its points. */
function checkPoints(s: SeriesPoints): number {
  if (!Number.isInteger(s.id) || s.id < 1) throw new InvalidInput(`series id ${s.id} is not a series`);
  if (s.times.length !== s.values.length) throw new InvalidInput(`series ${s.id}: ${s.times.length} times but ${s.values.length} values`);
  for (let i = 0; i < s.times.length; i++) {
    const t = s.times[i]!;
    if (!(Number.isInteger(t) && t >= 0 && t <= maxTimeMs))
      throw new InvalidInput(`series ${s.id}: time ${t} is not a whole number of ms between 1970 and 9999`);
  }
  return s.times.length;
}

interface HeadRows {
  part: number[];
  grp: number[];
  lo: number[];
  hi: number[];
  n: number[];
  data: Buffer[];
}

/**
 * The head rows of a batch: its points sorted and deduplicated per series, routed to a head
 * partition (their own block from `oldestOpen` on, else the current block's, as late points),
 * and encoded per (partition, group).
 */
function headRows(batch: SeriesPoints[], nowMs: number, oldestOpen: number): HeadRows {
  // Late points go to the current block, or to the first open one when this clock lags behind a sealed block.
  const late = Math.max(blockOf(nowMs), oldestOpen);
  const buckets = new Map<string, { part: number; grp: number; entries: Entry[]; lo: number; hi: number; n: number }>();
  const add = (part: number, e: Entry) => {
    const grp = groupOf(e.id);
    const key = `${part}:${grp}`;
    let b = buckets.get(key);
    if (!b) buckets.set(key, (b = { part, grp, entries: [], lo: Infinity, hi: -Infinity, n: 0 }));
    b.entries.push(e);
    b.lo = Math.min(b.lo, e.times[e.from]!);
    b.hi = Math.max(b.hi, e.times[e.to - 1]!);
    b.n += e.to - e.from;
  };
  for (const s of batch) {
    if (s.times.length === 0) continue;
    const { times, values } = sortedUnique(s.times, s.values);
    // Split at block boundaries: each piece goes to one partition.
    let from = 0;
    while (from < times.length) {
      const block = blockOf(times[from]!);
      const end = (block + 1) * blockMs;
      let to = from + 1;
      while (to < times.length && times[to]! < end) to++;
      add(block >= oldestOpen ? block : late, { id: s.id, times, values, from, to });
      from = to;
    }
  }
  const rows: HeadRows = { part: [], grp: [], lo: [], hi: [], n: [], data: [] };
  for (const b of buckets.values()) {
    b.entries.sort((x, y) => x.id - y.id);
    rows.part.push(b.part);
    rows.grp.push(b.grp);
    rows.lo.push(b.lo);
    rows.hi.push(b.hi);
    rows.n.push(b.n);
    rows.data.push(encodeHead(b.entries));
  }
  return rows;
}

/** The points in time order with one value per time (the last given); the input arrays when they already are. */
export function sortedUnique(times: ArrayLike<number>, values: ArrayLike<number>): { times: ArrayLike<number>; values: ArrayLike<number> } {
  let ordered = true;
  for (let i = 1; i < times.length && ordered; i++) ordered = times[i]! > times[i - 1]!;
  if (ordered) return { times, values };
  const order = Array.from({ length: times.length }, (_, i) => i);
  // Stable: among equal times the later point stays later, and wins below.
  order.sort((a, b) => times[a]! - times[b]!);
  const t: number[] = [];
  const v: number[] = [];
  for (const i of order) {
    if (t.length > 0 && t[t.length - 1] === times[i]) v[v.length - 1] = values[i]!;
    else {
      t.push(times[i]!);
      v.push(values[i]!);
    }
  }
  return { times: t, values: v };
}
