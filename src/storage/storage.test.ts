import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../shared/log.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { openStorage, type Storage } from "./database.js";
import { migrations } from "./migrations/index.js";

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

  it("reports health and a clear error for an unreachable server", async () => {
    expect(await storage.ping()).toBe(true);
    await expect(
      openStorage({ databaseUrl: "postgres://nobody:secret@127.0.0.1:1/nothing", dataDir: "/nonexistent", log: createLogger("silent") }),
    ).rejects.toThrow(/^cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nothing as nobody: .*check --database-url/);
  });
});
