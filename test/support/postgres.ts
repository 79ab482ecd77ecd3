/**
 * Real PostgreSQL servers for the tests: the one named by SPECTA_TEST_DATABASE_URL (in CI the
 * machine's PostgreSQL service, which .ci/run starts) and an embedded one that the global set-up
 * starts for the whole run. Every test gets a fresh database on a server.
 */
import { randomBytes } from "node:crypto";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterEach, inject } from "vitest";
import { createLogger } from "../../src/shared/log.js";
import { openStorage, type Db, type Storage } from "../../src/storage/database.js";

export interface TestServer {
  /** "external" (SPECTA_TEST_DATABASE_URL) or "embedded". */
  name: string;
  /** URL of a maintenance database on the server, for CREATE DATABASE. */
  url: string;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

declare module "vitest" {
  export interface ProvidedContext {
    embeddedPostgresUrl: string;
  }
}

/** The servers to run storage suites on. With CI=true a missing external server fails the run instead of being skipped. */
export function testServers(): TestServer[] {
  const servers: TestServer[] = [{ name: "embedded", url: inject("embeddedPostgresUrl") }];
  const external = process.env.SPECTA_TEST_DATABASE_URL;
  if (external) servers.unshift({ name: "external", url: external });
  else if (process.env.CI === "true") {
    throw new Error("CI=true but SPECTA_TEST_DATABASE_URL is not set: the storage suites must run on the machine's PostgreSQL too");
  }
  return servers;
}

/** The first server: the external one when configured, else the embedded one. */
export function defaultTestServer(): TestServer {
  return testServers()[0]!;
}

/** Creates an empty database on `server`; drop() removes it. */
export async function createTestDatabase(server: TestServer = defaultTestServer()): Promise<TestDatabase> {
  const name = `specta_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return {
    url: withDatabase(server.url, name),
    async drop() {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A handle on the database at `url` as the daemon hands it to its features (Db), on a pool of `max` connections; destroy() ends it. */
export function openDb(url: string, max: number): Db {
  const pool = new pg.Pool({ connectionString: url, max });
  // An idle connection that the server ends (the test's database dropped WITH (FORCE) while the
  // pool is closing, a PostgreSQL killed on purpose) is an 'error' of the pool, which without a
  // listener throws in the test process, as it does on a client checked out between two queries;
  // the queries on it fail on their own.
  pool.on("error", () => undefined);
  pool.on("connect", (client) => client.on("error", () => undefined));
  return new Kysely<object>({ dialect: new PostgresDialect({ pool }) });
}

/** The same server URL with another database name (keeps ?host=… for unix sockets). */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * For a describe block: `open()` gives a Storage on a fresh database of `server` (one database
 * per test, shared by every open() in it); after each test all are closed and the database dropped.
 */
export function storagePerTest(server: TestServer): () => Promise<Storage> {
  const opened: Storage[] = [];
  let database: TestDatabase | undefined;
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await database?.drop();
    database = undefined;
  });
  return async () => {
    database ??= await createTestDatabase(server);
    const storage = await openStorage({ databaseUrl: database.url, dataDir: "/nonexistent", log: createLogger("silent") });
    opened.push(storage);
    return storage;
  };
}
