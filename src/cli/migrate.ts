import type { Command } from "commander";
import { resolveDaemonConfig, type DaemonFlags } from "../config/config.js";
import { claimDataDir } from "../storage/data-dir.js";
import { createLogger } from "../shared/log.js";
import { fail } from "./util.js";

type MigrateFlags = Pick<DaemonFlags, "dataDir" | "databaseUrl" | "config">;

export function migrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("apply pending database migrations to the daemon's database, print their names and exit")
    .option("--data-dir <dir>", "the daemon's data directory, whose embedded PostgreSQL is migrated when no URL is given (env SPECTA_DATA_DIR)")
    .option("--database-url <url>", "postgres:// URL of the PostgreSQL to migrate (env SPECTA_DATABASE_URL)")
    .option("--config <file>", "JSON configuration file (env SPECTA_CONFIG, default <data-dir>/specta.json)")
    .action(async (flags: MigrateFlags) => {
      try {
        const applied = await migrateDatabase(flags);
        process.stdout.write(applied.length === 0 ? "up to date\n" : applied.map((name) => `applied ${name}\n`).join(""));
      } catch (err) {
        fail(err);
      }
    });
}

/** Opens the database the daemon would use (which applies pending migrations), closes it, and returns what was applied. */
async function migrateDatabase(flags: MigrateFlags): Promise<string[]> {
  // The same resolution as the daemon's, so that this migrates the database the daemon will open.
  const config = resolveDaemonConfig(flags);
  // Logs go to stderr so that stdout holds only the result; info lines (starting PostgreSQL…) would be noise.
  const log = createLogger("warn", process.stderr);
  // The embedded PostgreSQL belongs to the daemon of its data directory: closing it would stop
  // a running daemon's server, so refuse while one runs, and hold the directory meanwhile.
  const release = config.databaseUrl
    ? () => undefined
    : claimDataDir(
        config.dataDir,
        (pid) =>
          `a specta daemon (pid ${pid}) is using the data directory ${config.dataDir} and applied the migrations it knows when it started; stop it first to migrate its embedded PostgreSQL`,
      );
  try {
    const { openStorage } = await import("../storage/database.js");
    const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log });
    await storage.close();
    return storage.applied;
  } finally {
    release();
  }
}
