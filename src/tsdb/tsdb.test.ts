import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { storagePerTest, testServers } from "../../test/support/postgres.js";
import { createLogger } from "../shared/log.js";
import type { Storage } from "../storage/database.js";
import { seriesKey } from "../shared/series-key.js";
import { InvalidInput, openTsdb, SeriesKind, type SeriesRef, type Tsdb, type TsdbOptions } from "./index.js";
import { blockMs } from "./partitions.js";
import { seriesHash } from "./series-index.js";

const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;
const day = 24 * hour;

/** A clock the test moves: the store routes, compacts and expires by it. */
class Clock {
  constructor(public ms: number) {}
  now = () => this.ms;
}

const retention = { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day };

async function open(storage: Storage, clock: Clock, options: Partial<TsdbOptions> = {}): Promise<Tsdb> {
  return openTsdb(storage.pool, {
    limits: { perMetric: 1_000, perAgent: 500 },
    retention,
    log: createLogger("silent"),
    now: clock.now,
    compaction: { maxRowsPerTransaction: 3 },
    ...options,
  });
}

async function ids(tsdb: Tsdb, refs: SeriesRef[], agentId?: string): Promise<number[]> {
  const wanted = new Map(refs.map((r) => [seriesKey(r.metric, r.labels), r]));
  const resolved = await tsdb.series.resolve(wanted, agentId ? { agentId } : {});
  return refs.map((r) => {
    const out = resolved.get(seriesKey(r.metric, r.labels))!;
    if ("refused" in out) throw new Error(out.refused);
    return out.id;
  });
}

const gauge = (metric: string, labels: Record<string, string> = {}): SeriesRef => ({ metric, labels, kind: SeriesKind.gauge });

/** Points as [time, value] pairs. */
async function samples(tsdb: Tsdb, id: number, from = 0, to = 8.64e15): Promise<[number, number][]> {
  const p = (await tsdb.readSamples([id], from, to)).get(id);
  return p ? Array.from(p.times.subarray(0, p.n), (t, i) => [t, p.values[i]!]) : [];
}

describe.each(testServers())("the time-series store on $name PostgreSQL", (server) => {
  const storage = storagePerTest(server);
  // A block start well in the past, so compaction and the read tiers can be driven by the clock;
  // the first block of its UTC day, so that the few blocks a test writes share one day's partitions
  // (the last block of a day, as between 22:00 and 24:00 UTC, put the next one in another day's).
  const base = Math.floor((Date.now() - 5 * day) / day) * day;

  it("appends and reads back points; equal times keep the last written; a re-sent batch changes nothing", async () => {
    const clock = new Clock(base + 10 * minute);
    const tsdb = await open(await storage(), clock);
    const [a, b] = await ids(tsdb, [gauge("t_temp", { room: "a" }), gauge("t_temp", { room: "b" })]);
    const batch = [
      { id: a!, times: [base + 2000, base + 1000, base + 2000], values: [2, 1, 3] },
      { id: b!, times: [base], values: [-0] },
    ];
    await tsdb.append(batch);
    await tsdb.append(batch);
    expect(await samples(tsdb, a!)).toEqual([
      [base + 1000, 1],
      [base + 2000, 3],
    ]);
    expect(Object.is((await samples(tsdb, b!))[0]![1], -0)).toBe(true);
    await tsdb.append([{ id: a!, times: [base + 1000], values: [9] }]);
    expect(await samples(tsdb, a!)).toEqual([
      [base + 1000, 9],
      [base + 2000, 3],
    ]);
  });

  it("refuses what is not a point, alone: a bad batch never fails the others of its group commit", async () => {
    const tsdb = await open(await storage(), new Clock(base + minute));
    const [id] = await ids(tsdb, [gauge("t_input")]);
    const good = tsdb.append([{ id: id!, times: [base], values: [1] }]);
    for (const bad of [{ times: [base + 0.5] }, { times: [Number.NaN] }, { times: [2 ** 60] }, { times: [-1] }, { times: [base, base + 1] }]) {
      await expect(tsdb.append([{ id: id!, values: [1], ...bad }])).rejects.toBeInstanceOf(InvalidInput);
    }
    await good;
    expect(await samples(tsdb, id!)).toEqual([[base, 1]]);
    const q = { seriesIds: [id!], startMs: base, endMs: base + 1, increase: false, last: false };
    await expect(tsdb.readPoints({ ...q, stepMs: 0 })).rejects.toBeInstanceOf(InvalidInput);
    await expect(tsdb.readPoints({ ...q, stepMs: 1, startMs: base + 2 })).rejects.toBeInstanceOf(InvalidInput);
    await expect(tsdb.series.select("t_input\u0000", [])).rejects.toBeInstanceOf(InvalidInput);
    await expect(tsdb.series.select("t_input", [{ label: "a", op: "=~", value: "\u0000" }])).rejects.toBeInstanceOf(InvalidInput);
    await expect(tsdb.series.list("\u0000")).rejects.toBeInstanceOf(InvalidInput);
  });

  it("compacts closed blocks into chunks and rollups: every point read the same before and after, late points merged", async () => {
    const clock = new Clock(base + 5 * minute);
    const tsdb = await open(await storage(), clock);
    const series = await ids(
      tsdb,
      Array.from({ length: 150 }, (_, i) => gauge("t_load", { host: String(i) })),
    );
    // Three blocks of points every 10 s, written as they happen, in batches of a minute.
    const expected = new Map<number, [number, number][]>(series.map((id) => [id, []]));
    for (let t = base; t < base + 3 * blockMs; t += minute) {
      clock.ms = t + minute;
      const times = Array.from({ length: 6 }, (_, k) => t + k * 10 * second);
      await tsdb.append(series.map((id) => ({ id, times, values: times.map((x) => ((x / 1000) % 97) + id) })));
      for (const id of series) for (const x of times) expected.get(id)!.push([x, ((x / 1000) % 97) + id]);
    }
    const before = await samples(tsdb, series[7]!);
    expect(before).toEqual(expected.get(series[7]!));

    clock.ms = base + 3 * blockMs + hour;
    const run = await tsdb.compact();
    expect(run.dropped.length).toBe(3);
    expect(run.points).toBe(150 * 3 * 120 * 6);
    for (const id of [series[0]!, series[7]!, series[149]!]) expect(await samples(tsdb, id)).toEqual(expected.get(id));
    // Nothing left to do, and the same answer again.
    expect((await tsdb.compact()).chunks).toBe(0);

    // A late point in a compacted block, and a point that replaces one: both land in the head of
    // the current block, are read merged at once, and are merged into the chunk by compaction.
    await tsdb.append([{ id: series[7]!, times: [base + 5 * second, base + 10 * second], values: [-1, -2] }]);
    const merged = [...expected.get(series[7]!)!];
    merged.splice(1, 1, [base + 5 * second, -1], [base + 10 * second, -2]);
    expect(await samples(tsdb, series[7]!)).toEqual(merged);
    clock.ms += 2 * blockMs;
    expect((await tsdb.compact()).chunks).toBe(1);
    expect(await samples(tsdb, series[7]!)).toEqual(merged);
  });

  it("routes a write for a sealed block to an open one: a writer whose clock lags loses nothing and hides nothing", async () => {
    const db = await storage();
    const clock = new Clock(base + 3 * blockMs);
    const tsdb = await open(db, clock, { compaction: { lockTimeoutMs: 200 } });
    const lagging = await open(db, new Clock(base + 10 * minute));
    const [id] = await ids(tsdb, [gauge("t_sealed")]);
    // Its block's head partition, and the next one's (written to, so that it exists: creating a
    // partition would wait for the reader below as the drop does).
    await lagging.append([{ id: id!, times: [base, base + blockMs], values: [1, 4] }]);
    // A reader of the current block keeps the head table locked: the old partition is sealed and
    // compacted, but its drop waits for the next run.
    await tsdb.append([{ id: id!, times: [clock.ms], values: [3] }]);
    const reader = await db.pool.connect();
    try {
      await reader.query("BEGIN");
      await reader.query("SELECT count(*) FROM tsdb_head WHERE part = $1", [Math.floor(clock.ms / blockMs)]);
      const run = await tsdb.compact();
      expect(run.postponed).toEqual([base / blockMs]);
      // The lagging writer still takes block `base` for open: the seal refuses it, and it goes to an open block.
      await lagging.append([{ id: id!, times: [base + second], values: [2] }]);
      expect(await samples(tsdb, id!)).toEqual([
        [base, 1],
        [base + second, 2],
        [base + blockMs, 4],
        [clock.ms, 3],
      ]);
    } finally {
      await reader.query("ROLLBACK");
      reader.release();
    }
    clock.ms += 2 * blockMs;
    await tsdb.compact();
    expect(await samples(tsdb, id!)).toEqual([
      [base, 1],
      [base + second, 2],
      [base + blockMs, 4],
      [base + 3 * blockMs, 3],
    ]);
  });

  it("answers from the 5-minute and hourly rollups what the raw points say", async () => {
    const clock = new Clock(base);
    const tsdb = await open(await storage(), clock);
    const [id] = await ids(tsdb, [{ metric: "t_requests_total", labels: {}, kind: SeriesKind.counter }]);
    let total = 0;
    const times: number[] = [];
    const values: number[] = [];
    for (let t = base; t < base + 2 * blockMs; t += 15 * second) {
      total = t === base + blockMs ? 3 : total + ((t / 1000) % 7); // one reset
      times.push(t);
      values.push(total);
    }
    await tsdb.append([{ id: id!, times, values }]);
    const query = { seriesIds: [id!], startMs: base, endMs: base + 2 * blockMs - 1, stepMs: hour, increase: true, last: true };
    const raw = await tsdb.readPoints(query, base + 2 * blockMs);
    expect(raw.tier).toBe("raw");
    clock.ms = base + 3 * blockMs;
    await tsdb.compact();
    // The same range seen from 40 and 100 days later: older than raw and 5-minute retention.
    const fiveMinutes = await tsdb.readPoints({ ...query, stepMs: 30 * minute }, base + 40 * day);
    const rawHalfHours = await tsdb.readPoints({ ...query, stepMs: 30 * minute }, base + 2 * blockMs);
    const hours = await tsdb.readPoints(query, base + 100 * day);
    expect(fiveMinutes.tier).toBe("5m");
    expect(hours.tier).toBe("1h");
    const strip = (p: typeof raw) => p.series.get(id!)!.map(({ time, min, max, sum, count, last }) => ({ time, min, max, sum, count, last }));
    expect(strip(hours)).toEqual(strip(raw));
    expect(strip(fiveMinutes)).toEqual(strip(rawHalfHours));
    // Increases from rollups compare each bucket's last value with the one before: equal to raw
    // from the second hour on (the reset falls on a bucket start); the first has nothing before it.
    const increases = (p: typeof raw) =>
      p.series
        .get(id!)!
        .slice(1)
        .map((s) => s.increase);
    expect(increases(hours)).toEqual(increases(raw));
  });

  it("counts a batch re-sent after its block was compacted once in the rollups, before and after the next compaction", async () => {
    const clock = new Clock(base + minute);
    const tsdb = await open(await storage(), clock);
    const [id] = await ids(tsdb, [gauge("t_resent")]);
    const batch = [{ id: id!, times: [base, base + second, base + 2 * second], values: [1, 2, 3] }];
    await tsdb.append(batch);
    clock.ms = base + 2 * blockMs;
    await tsdb.compact();
    await tsdb.append(batch);
    await tsdb.append([{ id: id!, times: [base + 2 * second], values: [30] }]);
    const q = { seriesIds: [id!], startMs: base, endMs: base + hour - 1, stepMs: hour, increase: false, last: true };
    const summary = async () => {
      const p = await tsdb.readPoints(q, base + 100 * day);
      expect(p.tier).toBe("1h");
      return p.series.get(id!)!.map(({ count, sum, last }) => ({ count, sum, last }));
    };
    expect(await summary()).toEqual([{ count: 3, sum: 33, last: 30 }]);
    clock.ms += 2 * blockMs;
    await tsdb.compact();
    expect(await summary()).toEqual([{ count: 3, sum: 33, last: 30 }]);
  });

  it("drops partitions whole once they expire, each tier by its own retention", async () => {
    const db = await storage();
    const clock = new Clock(base + 10 * minute);
    const tsdb = await open(db, clock);
    const [id] = await ids(tsdb, [gauge("t_expiring")]);
    await tsdb.append([{ id: id!, times: [base, base + blockMs], values: [1, 2] }]);
    clock.ms = base + 3 * blockMs;
    await tsdb.compact();
    const tables = async () =>
      (
        await db.pool.query<{ name: string }>(
          "SELECT relname AS name FROM pg_class WHERE relname ~ '^tsdb_(chunks|rollups_5m|rollups_1h)_[0-9]{8}$' ORDER BY 1",
        )
      ).rows.map((r) => r.name);
    const dayName = new Date(base).toISOString().slice(0, 10).replaceAll("-", "");
    expect(await tables()).toEqual([`tsdb_chunks_${dayName}`, `tsdb_rollups_1h_${dayName}`, `tsdb_rollups_5m_${dayName}`]);
    const retentionJob = tsdb.jobs.find((j) => j.name === "tsdb-retention")!;
    clock.ms = base + retention.rawMs + 2 * day;
    await retentionJob.ensure(new AbortController().signal);
    expect(await tables()).toEqual([`tsdb_rollups_1h_${dayName}`, `tsdb_rollups_5m_${dayName}`]);
    clock.ms = base + retention.rollups5mMs + 2 * day;
    await retentionJob.ensure(new AbortController().signal);
    expect(await tables()).toEqual([`tsdb_rollups_1h_${dayName}`]);
    expect(await samples(tsdb, id!)).toEqual([]);
  });

  it("sizes and refuses series by metric, by agent, by kind and by hash collision; any label size fits the index", async () => {
    const db = await storage();
    const tsdb = await open(db, new Clock(base), { limits: { perMetric: 3, perAgent: 2 } });
    const refs = Array.from({ length: 5 }, (_, i) => gauge("t_limited", { i: String(i) }));
    const resolved = await tsdb.series.resolve(new Map(refs.map((r) => [seriesKey(r.metric, r.labels), r])));
    expect([...resolved.values()].filter((r) => "refused" in r)).toEqual([
      { refused: "metric t_limited has reached its limit of 3 series" },
      { refused: "metric t_limited has reached its limit of 3 series" },
    ]);
    const agent = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    const agentRefs = Array.from({ length: 3 }, (_, i) => gauge(`t_agent_${i}`));
    const byAgent = await tsdb.series.resolve(new Map(agentRefs.map((r) => [seriesKey(r.metric, r.labels), r])), { agentId: agent });
    expect([...byAgent.values()].filter((r) => "refused" in r)).toEqual([{ refused: "this agent has reached its limit of 2 series" }]);
    const clash = await tsdb.series.resolve(
      new Map([["t_limited\u0000i\u00010", { metric: "t_limited", labels: { i: "0" }, kind: SeriesKind.counter }]]),
    );
    expect([...clash.values()]).toEqual([{ refused: "metric t_limited is a gauge, not a counter" }]);
    // A 64-bit hash collision (made up here: another series stored under this one's key) refuses, never mixes.
    await db.pool.query("INSERT INTO series (metric, labels, kind, key) VALUES ('t_other', '{}', 2, $1)", [seriesHash("t_collides")]);
    const collision = await tsdb.series.resolve(new Map([["t_collides", gauge("t_collides")]]));
    expect([...collision.values()]).toEqual([
      { refused: expect.stringMatching(/^series t_collides\{\} has the same 64-bit hash as series \d+; it cannot be stored$/) },
    ]);
    const big = gauge("t_big", { a: "x".repeat(1024), b: "y".repeat(1024), c: "z".repeat(1024) });
    expect((await ids(tsdb, [big])).length).toBe(1);
    expect(await tsdb.series.select("t_big", [{ label: "a", op: "=", value: "x".repeat(1024) }])).toHaveLength(1);
  });

  it("keeps every point once with two writers, a compaction and readers at the same time", async () => {
    const db = await storage();
    const clock = new Clock(base + 30 * minute);
    const [one, two] = [await open(db, clock), await open(await storage(), clock)];
    const series = await ids(
      one,
      Array.from({ length: 64 }, (_, i) => gauge("t_shared", { i: String(i) })),
    );
    // Old points to compact while both keep writing new ones.
    await one.append(series.map((id) => ({ id, times: [base, base + second], values: [1, 2] })));
    clock.ms = base + blockMs + 30 * minute;
    const writes = Array.from({ length: 20 }, (_, k) =>
      (k % 2 === 0 ? one : two).append(series.map((id) => ({ id, times: [base + blockMs + k * second], values: [k] }))),
    );
    const [run] = await Promise.all([two.compact(), ...writes]);
    expect(run.dropped).toEqual([base / blockMs]);
    for (const id of [series[0]!, series[63]!]) {
      const points = await samples(one, id);
      expect(points.length).toBe(22);
      expect(points.slice(0, 2)).toEqual([
        [base, 1],
        [base + second, 2],
      ]);
    }
  });
});

describe.each(testServers())("a compaction killed with SIGKILL on $name PostgreSQL", (server) => {
  const storage = storagePerTest(server);

  it("loses nothing and doubles nothing; the next run finishes the job", async () => {
    const db = await storage();
    const base = Math.floor((Date.now() - 3 * day) / blockMs) * blockMs;
    const clock = new Clock(base + minute);
    const tsdb = await open(db, clock, { limits: { perMetric: 10_000, perAgent: 10_000 } });
    // 40 groups of 64 series, 12 head rows each: 480 transactions for the child, one per row's group.
    const series = await ids(
      tsdb,
      Array.from({ length: 40 * 64 }, (_, i) => gauge("t_crash", { i: String(i) })),
    );
    const times = (k: number) => [base + k * minute, base + k * minute + 30 * second];
    for (let k = 0; k < 12; k++) await tsdb.append(series.map((id) => ({ id, times: times(k), values: times(k).map((t) => t / 1000 + id) })));
    const expected = (id: number) => Array.from({ length: 12 }, (_, k) => times(k).map((t): [number, number] => [t, t / 1000 + id])).flat();
    clock.ms = base + 2 * blockMs;

    const url = (db.pool.options as { connectionString: string }).connectionString;
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/compact-once.ts", url, String(clock.ms)], { stdio: "ignore" });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    // Kill it once some groups are compacted and recorded, and others not yet.
    await expect
      .poll(async () => (await db.pool.query("SELECT count(*)::int AS n FROM tsdb_compacted")).rows[0].n, { timeout: 30_000, interval: 20 })
      .toBeGreaterThan(2);
    child.kill("SIGKILL");
    await exited;
    const done = (await db.pool.query("SELECT count(*)::int AS n FROM tsdb_compacted")).rows[0].n;
    expect(done).toBeLessThan(40);

    for (const id of [series[0]!, series[64 * 20]!, series[series.length - 1]!]) expect(await samples(tsdb, id)).toEqual(expected(id));
    const run = await tsdb.compact();
    expect(run.dropped).toEqual([base / blockMs]);
    for (const id of [series[0]!, series[64 * 20]!, series[series.length - 1]!]) expect(await samples(tsdb, id)).toEqual(expected(id));
    const { rows } = await db.pool.query("SELECT count(*)::int AS chunks FROM tsdb_chunks");
    expect(rows[0]).toEqual({ chunks: series.length });
  });
});
