import { create } from "@bufbuild/protobuf";
import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { Kind, PushRequestSchema } from "../../gen/metrics/metrics_pb.js";
import { storagePerTest, testServers, type TestServer } from "../../test/support/postgres.js";
import { createLogger } from "../log.js";
import { push } from "../metrics/push.js";
import { SampleRows } from "../metrics/sample-rows.js";
import { SampleWriter } from "../metrics/sample-writer.js";
import { SeriesCache } from "../metrics/series.js";
import type { Storage } from "../storage/database.js";
import { Partitions } from "../storage/partitions.js";
import { LateSamples, rollupLagMs } from "./late-samples.js";
import { leaderLocks } from "./leader.js";
import { rollups, type RollupsHandler } from "./rollups.js";

const minute = 60_000;
const hour = 3_600_000;
const day = 86_400_000;
const signal = new AbortController().signal;

interface Sample {
  series: number;
  t: number;
  value: number;
}

interface Rollup {
  series: number;
  bucket: number;
  min: number;
  max: number;
  sum: number;
  count: number;
  last: number;
}

/** Rollups computed in JavaScript: the expectation. Integer values keep float sums exact in any order. */
function expectedRollups(samples: Sample[], width: number, until: number): Rollup[] {
  const groups = new Map<string, Rollup & { lastT: number }>();
  for (const s of samples) {
    const bucket = Math.floor(s.t / width) * width;
    if (bucket + width > until) continue;
    const key = `${s.series}/${bucket}`;
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { series: s.series, bucket, min: s.value, max: s.value, sum: s.value, count: 1, last: s.value, lastT: s.t });
      continue;
    }
    g.min = Math.min(g.min, s.value);
    g.max = Math.max(g.max, s.value);
    g.sum += s.value;
    g.count++;
    if (s.t > g.lastT) [g.last, g.lastT] = [s.value, s.t];
  }
  return [...groups.values()].map(({ lastT: _, ...r }) => r).sort((a, b) => a.series - b.series || a.bucket - b.bucket);
}

async function storedRollups(storage: Storage, table: "samples_1m" | "samples_1h"): Promise<Rollup[]> {
  const rows = await storage.db.selectFrom(table).selectAll().orderBy("series_id").orderBy("bucket").execute();
  return rows.map((r) => ({ series: r.series_id, bucket: r.bucket.getTime(), min: r.min, max: r.max, sum: r.sum, count: r.count, last: r.last }));
}

async function doneUntil(storage: Storage, tier: "1m" | "1h"): Promise<number | undefined> {
  const row = await storage.db.selectFrom("rollup_state").select("done_until").where("tier", "=", tier).executeTakeFirst();
  return row?.done_until.getTime();
}

/** Samples of `series` every `stepMs` from `from` to `to`, with integer values that vary per minute. */
function makeSamples(series: number[], from: number, to: number, stepMs: number): Sample[] {
  const out: Sample[] = [];
  for (const s of series) {
    for (let t = from + s * 1000, i = 0; t < to; t += stepMs, i++) out.push({ series: s, t, value: ((i * 37 + s * 11) % 101) - 50 });
  }
  return out;
}

async function store(storage: Storage, samples: Sample[]): Promise<void> {
  await new Partitions(storage.db).ensureFor(samples.map((s) => s.t));
  const rows = new SampleRows(samples.length);
  for (const s of samples) rows.add(s.series, s.t, s.value);
  await new SampleWriter(storage.pool).write(rows);
}

/** Runs the handler until it has caught up; returns how many runs that took. */
async function catchUp(handler: RollupsHandler): Promise<number> {
  for (let runs = 1; runs <= 100; runs++) {
    const run = await handler.run(signal);
    if (run && !run.behind) return runs;
  }
  throw new Error("rollups did not catch up in 100 runs");
}

describe.each(testServers())("rollups on $name PostgreSQL", (server: TestServer) => {
  const open = storagePerTest(server);

  const now = Date.now();
  // Three days of samples, every 23 s (so minutes hold 2 or 3 samples), ending 10 minutes ago.
  const from = Math.floor((now - 3 * day) / hour) * hour + 17 * minute;
  const samples = makeSamples([1, 2, 3], from, now - 10 * minute, 23_000);

  it("rolls up every closed minute and hour exactly, a bounded span per run", async () => {
    const storage = await open();
    await store(storage, samples);
    const handler = rollups({ db: storage.db, log: createLogger("silent") });

    const first = (await handler.run(signal))!;
    expect(first.behind).toBe(true);
    // At most 6 hours of samples per run (the chunks before the first sample are empty).
    expect(first.minutes!.to.getTime()).toBeLessThanOrEqual(from + 7 * hour);
    expect(await catchUp(handler)).toBeGreaterThanOrEqual(10);

    const minutesUntil = (await doneUntil(storage, "1m"))!;
    const hoursUntil = (await doneUntil(storage, "1h"))!;
    // Closed minutes only, and none of the last rollupLagMs.
    expect(minutesUntil % minute).toBe(0);
    expect(minutesUntil).toBeLessThanOrEqual(Date.now() - rollupLagMs);
    expect(minutesUntil).toBeGreaterThan(Date.now() - rollupLagMs - 2 * minute);
    expect(hoursUntil).toBe(Math.floor(minutesUntil / hour) * hour);

    expect(await storedRollups(storage, "samples_1m")).toEqual(expectedRollups(samples, minute, minutesUntil));
    const hours = await storedRollups(storage, "samples_1h");
    expect(hours).toEqual(expectedRollups(samples, hour, hoursUntil));
    expect(hours.length).toBeGreaterThanOrEqual(3 * 70);

    // Nothing new: a run changes nothing.
    const idle = (await handler.run(signal))!;
    expect(idle).toMatchObject({ lateHours: 0, behind: false });
    expect(await storedRollups(storage, "samples_1h")).toEqual(hours);
  });

  it("rolls up late samples again: the minutes and the hour they fall in", async () => {
    const storage = await open();
    await store(storage, samples);
    const handler = rollups({ db: storage.db, log: createLogger("silent") });
    await catchUp(handler);
    const recent = (await doneUntil(storage, "1m"))! - 30_500;

    // An agent replays its spool: samples in long rolled-up hours, between and after existing
    // ones (a new `last`), a series never seen before, and one in the last rolled-up minute.
    const h1 = Math.floor((now - 2 * day) / hour) * hour;
    const h2 = Math.floor((now - day) / hour) * hour;
    const late: Sample[] = [
      { series: 1, t: h1 + 5 * minute + 59_500, value: 1000 },
      { series: 2, t: h1 + 30 * minute + 500, value: -1000 },
      { series: 7, t: h2 + 42 * minute, value: 7 },
      { series: 7, t: h2 + 43 * minute, value: 8 },
      { series: 3, t: recent, value: 33 },
    ];
    const lateSamples = new LateSamples(storage.db);
    await store(storage, late);
    await lateSamples.record(late.map((s) => s.t));
    const noted = await storage.db.selectFrom("late_hours").select("hour").orderBy("hour").execute();
    expect(noted.map((r) => r.hour.getTime())).toEqual([h1, h2, Math.floor(recent / hour) * hour]);

    const run = (await handler.run(signal))!;
    expect(run.lateHours).toBe(3);
    expect(await storage.db.selectFrom("late_hours").selectAll().execute()).toEqual([]);
    const all = [...samples, ...late];
    const minutesUntil = (await doneUntil(storage, "1m"))!;
    expect(await storedRollups(storage, "samples_1m")).toEqual(expectedRollups(all, minute, minutesUntil));
    expect(await storedRollups(storage, "samples_1h")).toEqual(expectedRollups(all, hour, (await doneUntil(storage, "1h"))!));
  });

  it("notes late hours from Push, and nothing for fresh samples", async () => {
    const storage = await open();
    const lateSamples = new LateSamples(storage.db);
    const deps = {
      series: new SeriesCache(storage.db, 100),
      partitions: new Partitions(storage.db),
      writer: new SampleWriter(storage.pool),
      retentionMs: 30 * day,
      lateSamples,
    };
    const batch = (times: number[]) =>
      create(PushRequestSchema, {
        series: [{ metric: "cpu_usage", kind: Kind.GAUGE, labels: { host: "a" }, times, values: times.map((_, i) => i) }],
      });
    await push(batch([Date.now() - 5_000, Date.now() - 1_000]), deps);
    expect(await storage.db.selectFrom("late_hours").selectAll().execute()).toEqual([]);

    const old = Date.now() - 5 * hour;
    await push(batch([old, old + 1000, Date.now()]), deps);
    const noted = await storage.db.selectFrom("late_hours").select("hour").execute();
    expect(noted.map((r) => r.hour.getTime())).toEqual([Math.floor(old / hour) * hour]);
  });

  it("runs on one daemon at a time: concurrent runs neither fail nor double-count", async () => {
    const [a, b] = [await open(), await open()];
    await store(a, samples);
    const settings = { maxRunDataMs: 12 * hour };
    const handlers = [a, b].map((s) => rollups({ db: s.db, log: createLogger("silent"), settings }));

    // While another session holds the leader lock, a run skips at once.
    const holder = await a.pool.connect();
    try {
      await holder.query("SELECT pg_advisory_lock($1)", [leaderLocks.rollups]);
      expect(await handlers[1]!.run(signal)).toBeUndefined();
      await holder.query("SELECT pg_advisory_unlock($1)", [leaderLocks.rollups]);
    } finally {
      holder.release();
    }

    let skipped = 0;
    for (let round = 0; round < 100; round++) {
      const runs = await Promise.all(handlers.map((h) => h.run(signal)));
      skipped += runs.filter((r) => r === undefined).length;
      if (runs.some((r) => r && !r.behind)) break;
    }
    await catchUp(handlers[0]!);
    expect(skipped).toBeGreaterThan(0);
    expect(await storedRollups(a, "samples_1m")).toEqual(expectedRollups(samples, minute, (await doneUntil(a, "1m"))!));
    expect(await storedRollups(b, "samples_1h")).toEqual(expectedRollups(samples, hour, (await doneUntil(b, "1h"))!));
  });

  it("starts on an empty database without failing", async () => {
    const storage = await open();
    const handler = rollups({ db: storage.db, log: createLogger("silent") });
    expect(await handler.run(signal)).toEqual({ lateHours: 0, behind: false });
    await new Partitions(storage.db).ensureDays([Math.floor(Date.now() / day)]);
    await handler.ensure(signal);
    expect(await doneUntil(storage, "1m")).toBeDefined();
    expect(await doneUntil(storage, "1h")).toBeUndefined();
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM samples_1m`.execute(storage.db)).rows[0]!.n).toBe(0);
  });
});
