/**
 * What an agent keeps of its self-updates in its state directory, shared by the updater (in the
 * agent) and the supervisor that restarts it (`specta agent`):
 * - releases/<version>/: an installed release (agent.mjs, and a package.json naming its version,
 *   which the bundle reads as its own);
 * - current.json: the release that runs, the one before it, and whether it is on trial (switched
 *   to, not yet reported healthy); absent: the agent of the installed package runs;
 * - updates.json: versions not to try again (refused, rolled back), and a step to report;
 * - release-keys: keys learnt through rotation (a verified manifest's nextKey).
 * Each file is replaced whole (written beside it, then renamed), so a crash leaves the old or the new one.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The release that runs; previous undefined: the installed package's agent. */
export interface CurrentRelease {
  version: string;
  previous?: string;
  /** Switched to, not yet reported healthy: the supervisor rolls back when it stops or does not report in time. */
  trial: boolean;
}

/** A step to report to the daemon once it is reachable (releases.API/ReportUpdate), by its UpdateStep name. */
export interface PendingReport {
  version: string;
  step: "ROLLED_BACK";
  reason: string;
}

export interface UpdateRecord {
  /** Versions not to try again, with why. */
  skip: Record<string, string>;
  report?: PendingReport;
}

export const releaseDir = (stateDir: string, version: string) => join(stateDir, "releases", version);
export const releaseBundle = (stateDir: string, version: string) => join(releaseDir(stateDir, version), "agent.mjs");
const currentFile = (stateDir: string) => join(stateDir, "current.json");
const recordFile = (stateDir: string) => join(stateDir, "updates.json");
export const learntKeysFile = (stateDir: string) => join(stateDir, "release-keys");

/** Writes `file` whole: a crash leaves the old content or the new one. */
export function replaceFile(file: string, content: string | Uint8Array): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, content, { mode: 0o600 });
  renameSync(temp, file);
}

function readJson<T>(file: string): T | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** The running release; undefined for the installed package's agent (also when current.json is unreadable or its bundle is missing). */
export function readCurrent(stateDir: string): CurrentRelease | undefined {
  const current = readJson<CurrentRelease>(currentFile(stateDir));
  if (typeof current?.version !== "string" || !existsSync(releaseBundle(stateDir, current.version))) return undefined;
  return current;
}

/** Switches to `current`; undefined: back to the installed package's agent. */
export function writeCurrent(stateDir: string, current: CurrentRelease | undefined): void {
  if (current) replaceFile(currentFile(stateDir), JSON.stringify(current) + "\n");
  else rmSync(currentFile(stateDir), { force: true });
}

export function readRecord(stateDir: string): UpdateRecord {
  return { skip: {}, ...readJson<UpdateRecord>(recordFile(stateDir)) };
}

export function writeRecord(stateDir: string, record: UpdateRecord): void {
  replaceFile(recordFile(stateDir), JSON.stringify(record) + "\n");
}

/** Installs a verified bundle as releases/<version>/, whole or not at all. */
export function installRelease(stateDir: string, version: string, bundle: Uint8Array): void {
  const dir = releaseDir(stateDir, version);
  const temp = `${dir}.${process.pid}.tmp`;
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp, { recursive: true, mode: 0o700 });
  writeFileSync(join(temp, "agent.mjs"), bundle, { mode: 0o600 });
  writeFileSync(join(temp, "package.json"), JSON.stringify({ name: "specta", version, type: "module" }) + "\n", { mode: 0o600 });
  rmSync(dir, { recursive: true, force: true });
  renameSync(temp, dir);
}

/**
 * The supervisor's rollback of a release that did not report healthy: the previous one runs
 * again, and the failure is recorded, to be reported by it and never tried again.
 */
export function rollBack(stateDir: string, current: CurrentRelease, reason: string): void {
  const record = readRecord(stateDir);
  writeRecord(stateDir, { skip: { ...record.skip, [current.version]: reason }, report: { version: current.version, step: "ROLLED_BACK", reason } });
  writeCurrent(stateDir, current.previous ? { version: current.previous, trial: false } : undefined);
}
