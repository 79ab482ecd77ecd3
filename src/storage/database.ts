import { Kysely, Migrator, PostgresDialect, type MigrationProvider } from "kysely";
import pg from "pg";
import type { Logger } from "../shared/log.js";
import { startEmbeddedPostgres, type EmbeddedPostgres, type SupervisionOptions } from "./embedded.js";
import { StorageError, isUnavailable } from "./errors.js";
import { migrations } from "./migrations/index.js";

/**
 * The database as the daemon hands it to its features: a kysely instance that knows no tables.
 * Each feature declares its own tables (`*.table.ts`) and its repositories see this handle through
 * them, `db.withTables<TheirTables>()`; a transaction (`db.transaction()`) is such a handle too, so
 * one feature's repository can join another's transaction. Why not one interface of every table:
 * storage would import the features (upward), and kysely's types are invariant in the database
 * interface, so a handle typed by all tables would not pass where one typed by a feature's is
 * expected without a cast.
 */
export type Db = Kysely<object>;

export interface StorageOptions {
  /** postgres://… URL; without one an embedded PostgreSQL runs in `<dataDir>/postgres`. */
  databaseUrl?: string;
  dataDir: string;
  poolSize?: number;
  log: Logger;
  /** Restart the embedded PostgreSQL if it dies (see SupervisionOptions); unused with a URL. */
  supervise?: SupervisionOptions;
}

export interface Storage {
  db: Db;
  pool: pg.Pool;
  /** Where the data lives, for log lines and errors (never with a password). */
  location: string;
  /** Names of the migrations this open applied (empty when the schema was up to date). */
  applied: string[];
  /** Whether the last check reached the database. */
  healthy(): boolean;
  /** Runs one round trip and updates healthy(). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

const embeddedDatabase = "specta";

// bigint (count(*), sums of counts) as a JS number: counts here stay far below 2^53.
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Opens the database (starting the embedded one if no URL is given) and applies migrations. */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  const { log } = options;
  let embedded: EmbeddedPostgres | undefined;
  let config: pg.PoolConfig;
  let location: string;
  if (options.databaseUrl) {
    config = { connectionString: options.databaseUrl };
    location = describeUrl(options.databaseUrl);
  } else {
    embedded = await startEmbeddedPostgres(options.dataDir, log, options.supervise);
    await createDatabaseIfMissing(embedded);
    config = { host: embedded.socketDir, port: embedded.port, user: embedded.user, database: embeddedDatabase };
    location = `embedded PostgreSQL in ${embedded.socketDir}`;
  }

  const pool = new pg.Pool({
    ...config,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // A stuck statement cannot hold a connection (and a caller) forever.
    options: "-c statement_timeout=60000",
    types,
  });
  let healthy = false;
  pool.on("error", (err) => {
    healthy = false;
    log.warn({ err: err.message }, "idle database connection failed");
  });
  // A connection that drops while checked out (a COPY, a leader's lock, a transaction) fails its
  // query, and also emits "error" on the client, which pg-pool leaves unhandled during checkout:
  // without this listener a database outage would crash the daemon.
  pool.on("connect", (client) => {
    client.on("error", (err) => {
      healthy = false;
      log.warn({ err: err.message }, "database connection failed");
    });
  });

  try {
    await pool.query("SELECT 1");
    healthy = true;
  } catch (err) {
    await pool.end().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    const reason = (err as Error).message || String(err);
    throw new StorageError(
      options.databaseUrl
        ? `cannot connect to ${location}: ${reason}; check --database-url / SPECTA_DATABASE_URL and that the server is running`
        : `cannot connect to the ${location}: ${reason}`,
    );
  }

  const db: Db = new Kysely<object>({ dialect: new PostgresDialect({ pool }) });
  let applied: string[];
  try {
    applied = await migrate(db, log);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
  log.info({ database: location }, "database ready");

  return {
    db,
    pool,
    location,
    applied,
    healthy: () => healthy,
    async ping() {
      try {
        await pool.query("SELECT 1");
        healthy = true;
      } catch (err) {
        healthy = false;
        if (!isUnavailable(err)) log.warn({ err }, "database check failed");
      }
      return healthy;
    },
    async close() {
      await db.destroy();
      await embedded?.stop();
    },
  };
}

/** Applies pending migrations; kysely serializes concurrent migrators with an advisory lock, so several daemons may start at once. */
export async function migrate(db: Db, log: Logger): Promise<string[]> {
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  const applied = (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new StorageError(`migration ${failed ?? ""} failed: ${(error as Error).message ?? String(error)}`);
  }
  return applied;
}

async function createDatabaseIfMissing(embedded: EmbeddedPostgres): Promise<void> {
  const client = new pg.Client({ host: embedded.socketDir, port: embedded.port, user: embedded.user, database: "postgres" });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [embeddedDatabase]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${embeddedDatabase}`);
  } finally {
    await client.end();
  }
}

/** "PostgreSQL at host:port/db as user", without the password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL at ${u.hostname || "localhost"}:${u.port || 5432}${u.pathname || "/"} as ${decodeURIComponent(u.username) || "the default user"}`;
  } catch {
    return "PostgreSQL (the database URL does not parse as a URL)";
  }
}
