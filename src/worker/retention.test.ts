import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { storagePerTest, testServers, type TestServer } from "../../test/support/postgres.js";
import type { RetentionConfig } from "../config/config.js";
import { createLogger } from "../log.js";
import type { Storage } from "../storage/database.js";
import { Partitions, dayMs, listPartitions, partitionName } from "../storage/partitions.js";
import { leaderLocks } from "./leader.js";
import { retention } from "./retention.js";

const signal = new AbortController().signal;
const keep: RetentionConfig = { samplesMs: 3 * dayMs, minuteRollupsMs: 30 * dayMs, hourRollupsMs: 60 * dayMs };

/** `count` rollup rows of series 1…count, all in the bucket `bucketMs`. */
async function insertRollups(storage: Storage, table: "samples_1m" | "samples_1h", bucketMs: number, count: number): Promise<void> {
  await sql`
    INSERT INTO ${sql.table(table)} (series_id, bucket, min, max, sum, count, last)
    SELECT s, ${new Date(bucketMs)}, 1, 2, 3, 2, 2 FROM generate_series(1, ${count}) AS s`.execute(storage.db);
}

async function rollupBuckets(storage: Storage, table: "samples_1m" | "samples_1h"): Promise<Map<number, number>> {
  const { rows } = await sql<{ bucket: Date; n: number }>`
    SELECT bucket, count(*)::int AS n FROM ${sql.table(table)} GROUP BY bucket`.execute(storage.db);
  return new Map(rows.map((r) => [r.bucket.getTime(), r.n]));
}

describe.each(testServers())("retention on $name PostgreSQL", (server: TestServer) => {
  const open = storagePerTest(server);

  const today = Math.floor(Date.now() / dayMs);
  const days = [today - 10, today - 5, today - 4, today - 3, today - 1, today];
  const oldMinute = (today - 40) * dayMs + 60_000;
  const newMinute = (today - 20) * dayMs;
  const oldHour = (today - 90) * dayMs;
  const newHour = (today - 45) * dayMs;

  async function seed(storage: Storage): Promise<void> {
    await new Partitions(storage.db).ensureDays(days);
    await sql`INSERT INTO samples SELECT 1, to_timestamp(d * 86400 + 3600), d FROM unnest(${`{${days.join(",")}}`}::int[]) AS d`.execute(storage.db);
    await insertRollups(storage, "samples_1m", oldMinute, 2_500);
    await insertRollups(storage, "samples_1m", newMinute, 10);
    await insertRollups(storage, "samples_1h", oldHour, 1_200);
    await insertRollups(storage, "samples_1h", newHour, 10);
  }

  it("drops expired day partitions and old rollup rows in batches, keeping recent ones", async () => {
    const storage = await open();
    await seed(storage);
    const handler = retention({ db: storage.db, partitions: new Partitions(storage.db), retention: keep, log: createLogger("silent"), batchRows: 1_000 });

    const run = await handler.run(signal);
    // Days whose whole span ended more than 3 days ago go; the day holding the cut-off stays.
    expect(run).toEqual({
      partitions: [today - 10, today - 5, today - 4].map(partitionName),
      minuteRows: 2_500,
      hourRows: 1_200,
    });
    expect((await listPartitions(storage.db)).map((p) => p.day)).toEqual([today - 3, today - 1, today]);
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM samples`.execute(storage.db)).rows[0]!.n).toBe(3);
    expect(await rollupBuckets(storage, "samples_1m")).toEqual(new Map([[newMinute, 10]]));
    expect(await rollupBuckets(storage, "samples_1h")).toEqual(new Map([[newHour, 10]]));

    // A second run finds nothing to do.
    await handler.ensure(signal);
    expect(await handler.run(signal)).toEqual({ partitions: [], minuteRows: 0, hourRows: 0 });
  });

  it("postpones dropping partitions while a long query holds samples, and still trims rollups", async () => {
    const storage = await open();
    await seed(storage);
    const reader = await storage.pool.connect();
    try {
      await reader.query("BEGIN");
      await reader.query("SELECT count(*) FROM samples");
      const handler = retention({ db: storage.db, partitions: new Partitions(storage.db), retention: keep, log: createLogger("silent"), lockTimeoutMs: 200 });
      const run = await handler.run(signal);
      expect(run).toMatchObject({ partitions: [], minuteRows: 2_500, hourRows: 1_200 });
      expect(run?.postponed).toMatch(/later run/);
      await reader.query("COMMIT");
      expect(await handler.run(signal)).toMatchObject({ partitions: [today - 10, today - 5, today - 4].map(partitionName) });
    } finally {
      reader.release();
    }
  });

  it("runs on one daemon at a time", async () => {
    const [a, b] = [await open(), await open()];
    await seed(a);
    const handlers = [a, b].map((s) =>
      retention({ db: s.db, partitions: new Partitions(s.db), retention: keep, log: createLogger("silent"), batchRows: 100 }),
    );

    const holder = await a.pool.connect();
    try {
      await holder.query("SELECT pg_advisory_lock($1)", [leaderLocks.retention]);
      expect(await handlers[1]!.run(signal)).toBeUndefined();
      await holder.query("SELECT pg_advisory_unlock($1)", [leaderLocks.retention]);
    } finally {
      holder.release();
    }

    const runs = await Promise.all(handlers.map((h) => h.run(signal)));
    const done = runs.filter((r) => r !== undefined);
    expect(done.flatMap((r) => r.partitions).sort()).toEqual([today - 10, today - 5, today - 4].map(partitionName));
    expect(done.reduce((n, r) => n + r.minuteRows, 0)).toBe(2_500);
    expect(done.reduce((n, r) => n + r.hourRows, 0)).toBe(1_200);
    expect(await rollupBuckets(b, "samples_1m")).toEqual(new Map([[newMinute, 10]]));
  });
});
