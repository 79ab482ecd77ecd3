import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { ConfigError, resolveDaemonConfig, type DaemonFlags } from "../config/config.js";
import { createLogger } from "../log.js";
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
  const release = config.databaseUrl ? () => undefined : claimDataDir(config.dataDir);
  try {
    const { openStorage } = await import("../storage/database.js");
    const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log });
    await storage.close();
    return storage.applied;
  } finally {
    release();
  }
}

/**
 * The embedded PostgreSQL belongs to the daemon of its data directory: closing would stop a
 * running daemon's server. So refuse while one runs, and hold the daemon's pid file meanwhile
 * so that a daemon starting now waits for us instead of sharing the server.
 */
function claimDataDir(dataDir: string): () => void {
  const pidFile = join(dataDir, "daemon.pid");
  const pid = readPid(pidFile);
  if (pid !== undefined && pid !== process.pid && isRunning(pid)) {
    throw new ConfigError(
      `a specta daemon (pid ${pid}) is using the data directory ${dataDir} and applied the migrations it knows when it started; stop it first to migrate its embedded PostgreSQL`,
    );
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(pidFile, `${process.pid}\n`);
  return () => rmSync(pidFile, { force: true });
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    // A killed daemon may linger as a zombie until its parent reaps it.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    if (process.platform === "linux") return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
