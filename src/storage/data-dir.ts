import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/config.js";

/**
 * One process at a time owns a data directory (and so its embedded PostgreSQL, which a second
 * owner would share and later stop): takes `<dataDir>/daemon.pid`, or throws `busy(pid)` as a
 * ConfigError while a live process holds it. A pid file left by a killed process is taken over.
 * Returns the release function.
 */
export function claimDataDir(dataDir: string, busy: (pid: number) => string): () => void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pidFile = join(dataDir, "daemon.pid");
  const pid = readPid(pidFile);
  if (pid !== undefined && pid !== process.pid && isRunning(pid)) throw new ConfigError(busy(pid));
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
    // A killed process may linger as a zombie until its parent reaps it.
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
