import { Kysely, Migrator, PostgresDialect } from "kysely";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createTestDatabase, testServers } from "../../test/support/postgres.js";
import { createLogger } from "../shared/log.js";
import { seriesKey } from "../shared/series-key.js";
import { openStorage } from "../storage/database.js";
import { migrations } from "../storage/migrations/index.js";
import { openTsdb, SeriesKind, type SeriesRef } from "./index.js";

const minute = 60_000;
const hour = 60 * minute;
const day = 24 * hour;

describe.each(testServers())("upgrading a row-per-sample database in place on $name PostgreSQL", (server) => {
  it("moves every raw sample into chunks and old rollups into rollup tiers, with the same series ids", async () => {
    const database = await createTestDatabase(server);
    try {
      // The schema as the previous release left it: migrations up to the commands table.
      const pool = new pg.Pool({ connectionString: database.url, max: 2 });
      const legacy = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
      const { error } = await new Migrator({ db: legacy, provider: { getMigrations: async () => migrations } }).migrateTo("2026_11_22_0004_commands");
      expect(error).toBeUndefined();

      const today = Math.floor(Date.now() / day) * day;
      const rawDays = [today - 2 * day, today - day];
      const series: SeriesRef[] = [
        { metric: "node_cpu_seconds_total", labels: { host: "a", cpu: "0" }, kind: SeriesKind.counter },
        { metric: "node_load1", labels: { host: "a", note: "é ünïcode, commas" }, kind: SeriesKind.gauge },
        { metric: "node_load1", labels: {}, kind: SeriesKind.gauge },
      ];
      const ids: number[] = [];
      for (const s of series) {
        const { rows } = await pool.query<{ id: number }>("INSERT INTO series (metric, labels, kind) VALUES ($1, $2, $3) RETURNING id", [
          s.metric,
          JSON.stringify(s.labels),
          s.kind,
        ]);
        ids.push(rows[0]!.id);
      }
      const expected = new Map<number, [number, number][]>(ids.map((id) => [id, []]));
      for (const dayStart of rawDays) {
        const name = `samples_p${new Date(dayStart).toISOString().slice(0, 10).replaceAll("-", "")}`;
        await pool.query(
          `CREATE TABLE ${name} PARTITION OF samples FOR VALUES FROM ('${new Date(dayStart).toISOString()}') TO ('${new Date(dayStart + day).toISOString()}')`,
        );
        for (const [k, id] of ids.entries()) {
          const points: [number, number][] = [];
          // (+ 0: pg sends −0 in an array as 0, so the legacy rows hold 0.)
          for (let t = dayStart; t < dayStart + day; t += 7 * minute)
            points.push([t, k === 0 ? (t - rawDays[0]!) / 1000 : Math.round(Math.sin(t) * 1000) / 100 + 0]);
          await pool.query("INSERT INTO samples SELECT $1, to_timestamp(t / 1000.0), v FROM unnest($2::float8[], $3::float8[]) AS u(t, v)", [
            id,
            points.map((p) => p[0]),
            points.map((p) => p[1]),
          ]);
          expected.get(id)!.push(...points);
        }
      }
      // Rollups from before the oldest raw day (raw samples long gone), and one inside it (recomputed from raw).
      const oldDay = today - 40 * day;
      for (let m = 0; m < 10; m++) {
        await pool.query("INSERT INTO samples_1m VALUES ($1, $2, $3, $4, $5, $6, $7)", [
          ids[1],
          new Date(oldDay + m * minute),
          m,
          m + 10,
          10 * m,
          10,
          m + 5,
        ]);
      }
      await pool.query("INSERT INTO samples_1m VALUES ($1, $2, 0, 0, 0, 1, 0)", [ids[1], new Date(rawDays[0]!)]);
      const olderDay = today - 200 * day;
      for (let h = 0; h < 3; h++)
        await pool.query("INSERT INTO samples_1h VALUES ($1, $2, $3, $4, $5, $6, $7)", [
          ids[0],
          new Date(olderDay + h * hour),
          h,
          10 * h,
          5,
          2,
          4 * h,
        ]);
      await pool.end();

      const storage = await openStorage({ databaseUrl: database.url, dataDir: "/nonexistent", log: createLogger("silent") });
      try {
        const tsdb = await openTsdb(storage.pool, {
          limits: { perMetric: 100, perAgent: 100 },
          retention: { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day },
          log: createLogger("silent"),
        });
        const { rows: left } = await storage.pool.query(
          "SELECT to_regclass('samples') AS a, to_regclass('samples_1m') AS b, to_regclass('samples_1h') AS c",
        );
        expect(left[0]).toEqual({ a: null, b: null, c: null });

        // The same series resolve to the same ids: the migration's SQL hash is the store's hash.
        const resolved = await tsdb.series.resolve(new Map(series.map((s) => [seriesKey(s.metric, s.labels), s])));
        expect(series.map((s) => resolved.get(seriesKey(s.metric, s.labels)))).toEqual(ids.map((id) => ({ id })));

        // Every raw sample, value for value.
        const points = await tsdb.readSamples(ids, 0, 8.64e15);
        for (const id of ids) {
          const p = points.get(id)!;
          expect(Array.from(p.times.subarray(0, p.n), (t, i) => [t, p.values[i]])).toEqual(expected.get(id));
        }

        // Minute rows summed into 5-minute buckets; hour rows as they were.
        const fiveMinutes = await tsdb.readPoints(
          { seriesIds: [ids[1]!], startMs: oldDay, endMs: oldDay + 9 * minute, stepMs: 5 * minute, increase: false, last: true },
          today,
        );
        expect(fiveMinutes.tier).toBe("5m");
        expect(fiveMinutes.series.get(ids[1]!)!.map(({ time, min, max, sum, count, last }) => [time - oldDay, min, max, sum, count, last])).toEqual([
          [0, 0, 14, 100, 50, 9],
          [5 * minute, 5, 19, 350, 50, 14],
        ]);
        const hours = await tsdb.readPoints(
          { seriesIds: [ids[0]!], startMs: olderDay, endMs: olderDay + day - 1, stepMs: day, increase: false, last: true },
          today,
        );
        expect(hours.tier).toBe("1h");
        expect(hours.series.get(ids[0]!)!.map(({ time, min, max, sum, count, last }) => [time - olderDay, min, max, sum, count, last])).toEqual([
          [0, 0, 20, 15, 6, 8],
        ]);
      } finally {
        await storage.close();
      }
    } finally {
      await database.drop();
    }
  });
});
