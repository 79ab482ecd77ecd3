import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { openStorage, type Storage } from "./database.js";
import { migrations } from "./migrations/index.js";
import { Partitions, partitionName } from "./partitions.js";

describe.each(testServers())("storage on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let storage: Storage;
  beforeAll(async () => {
    database = await createTestDatabase(server);
    storage = await openStorage({ databaseUrl: database.url, dataDir: "/nonexistent", log: createLogger("silent") });
  });
  afterAll(async () => {
    await storage?.close();
    await database?.drop();
  });

  it("applies migrations once, even when several daemons start at once", async () => {
    const others = await Promise.all(
      [1, 2, 3].map(() => openStorage({ databaseUrl: database.url, dataDir: "/nonexistent", log: createLogger("silent") })),
    );
    await Promise.all(others.map((s) => s.close()));
    const { rows } = await storage.pool.query("SELECT name FROM kysely_migration");
    expect(rows.map((r: { name: string }) => r.name).sort()).toEqual(Object.keys(migrations));
  });

  it("creates day partitions on demand and drops whole expired days", async () => {
    const partitions = new Partitions(storage.db);
    const day = 86_400_000;
    const now = Date.now();
    await partitions.ensureFor([now, now - 40 * day, now - 40 * day + 1000]);
    const name = (t: number) => partitionName(Math.floor(t / day));
    const listed = async () =>
      (await storage.pool.query("SELECT relname FROM pg_class WHERE relname ~ '^samples_p[0-9]{8}$' ORDER BY 1")).rows.map((r: { relname: string }) => r.relname);
    expect(await listed()).toEqual([name(now - 40 * day), name(now)]);
    expect(await partitions.dropBefore(now - 30 * day)).toEqual([name(now - 40 * day)]);
    expect(await listed()).toEqual([name(now)]);
  });

  it("reports health and a clear error for an unreachable server", async () => {
    expect(await storage.ping()).toBe(true);
    await expect(
      openStorage({ databaseUrl: "postgres://nobody:secret@127.0.0.1:1/nothing", dataDir: "/nonexistent", log: createLogger("silent") }),
    ).rejects.toThrow(/^cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nothing as nobody: .*check --database-url/);
  });
});
