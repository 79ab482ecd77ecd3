/**
 * Shared set-up of the end-to-end tests: a real daemon on port 0 in a temporary data
 * directory, either in-process (`startTestDaemon`, `useDaemon`) or as the built CLI in a
 * child process (`spawnDaemon`, which needs `npm run build` first; `npm test` does it).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";
import type { InstrumentDeclaration } from "../../src/config/config.js";
import { resolveDaemonConfig, type DaemonFlags } from "../../src/config/config.js";
import { createLogger } from "../../src/shared/log.js";
import { startDaemon, type DaemonOptions, type RunningDaemon } from "../../src/server/daemon.js";
import { stopEmbeddedPostgres } from "../../src/storage/embedded.js";
import { readLocalAdminToken } from "../../src/tokens/local-admin.js";
import { createTestDatabase, type TestDatabase } from "./postgres.js";

/** The repository root (holds package.json, bin/, dist/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The built CLI. */
export const cliPath = join(repoRoot, "bin", "specta.js");

/** Instruments of the tests' config file: Specta's example histogram, a counter and a gauge with labels. */
export const testInstruments: InstrumentDeclaration[] = [
  {
    name: "page_ready_duration_seconds",
    kind: "histogram",
    help: "Time from navigation until a page is ready for the user, in seconds.",
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100],
    labels: {},
  },
  {
    name: "jobs_done_total",
    kind: "counter",
    help: "Jobs done, by queue.",
    labels: { queue: ["mail", "video"], priority: ["high", "low"] },
  },
  {
    name: "queue_depth",
    kind: "gauge",
    help: "Jobs waiting, by queue and by the transport that reported it.",
    labels: { queue: ["mail", "video"], transport: ["grpc", "connect-1.1", "connect-2", "grpc-web", "json"] },
  },
  {
    name: "upload_size_bytes",
    kind: "histogram",
    help: "Size of uploads.",
    buckets: [1024, 1048576],
    labels: { kind: ["image", "video"] },
  },
  {
    // The longest name Specta accepts: 255 characters.
    name: "m".repeat(255),
    kind: "gauge",
    help: "A metric with a name of the largest allowed length.",
    labels: {},
  },
];

/**
 * A new temporary directory, removed by the returned cleanup. Mode 755: as root, the
 * embedded PostgreSQL runs as its own user, which must reach the daemon's data directory
 * (mkdtemp makes 700 folders).
 */
export function tempDir(prefix = "specta-test-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, 0o755);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Writes a JSON config file into `dir` and returns its path. */
export function writeConfigFile(dir: string, config: Record<string, unknown>, name = "specta.json"): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export interface TestDaemonOptions {
  /** Contents of a config file passed with the `config` flag; none: the built-in defaults. */
  config?: Record<string, unknown>;
  /** Extra flags (addr is always 127.0.0.1:0, dataDir a fresh temp dir). */
  flags?: Partial<DaemonFlags>;
  /** The environment resolveDaemonConfig sees (never the test runner's own SPECTA_* variables). */
  env?: NodeJS.ProcessEnv;
  /** Non-configuration settings of startDaemon (e.g. the command queue's timings). */
  daemon?: DaemonOptions;
}

export interface TestDaemon extends RunningDaemon {
  dataDir: string;
  /** host:port, as gRPC clients in other languages want it. */
  address: string;
  /** The daemon's local admin token (`<dataDir>/admin.token`), for RPCs that need a credential. */
  adminToken(): string;
}

/** Reads the admin token a daemon keeps in its data directory. */
export function adminTokenOf(dataDir: string): string {
  const token = readLocalAdminToken(dataDir);
  if (!token) throw new Error(`no admin token in ${dataDir}`);
  return token;
}

/**
 * Starts a daemon in this process on 127.0.0.1:0 in a fresh data directory, on a fresh database
 * of the tests' PostgreSQL (test/support/postgres.ts); stop() also drops the database and
 * removes the directory.
 */
export async function startTestDaemon(options: TestDaemonOptions = {}): Promise<TestDaemon> {
  const dir = tempDir();
  let db: TestDatabase | undefined;
  const cleanup = async () => {
    try {
      await db?.drop();
    } finally {
      dir.remove();
    }
  };
  try {
    db = await createTestDatabase();
    const configFile = options.config ? writeConfigFile(dir.path, options.config, "config.json") : undefined;
    const flags: DaemonFlags = {
      addr: "127.0.0.1:0",
      dataDir: join(dir.path, "data"),
      databaseUrl: db.url,
      ...(configFile ? { config: configFile } : {}),
      ...options.flags,
    };
    const config = resolveDaemonConfig(flags, options.env ?? {});
    const daemon = await startDaemon(config, createLogger("silent"), options.daemon);
    return {
      ...daemon,
      dataDir: config.dataDir,
      address: `127.0.0.1:${daemon.port}`,
      adminToken: () => adminTokenOf(config.dataDir),
      async stop() {
        try {
          await daemon.stop();
        } finally {
          await cleanup();
        }
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Starts one daemon for the enclosing file or describe block (beforeAll) and stops it after
 * (afterAll). Use the returned getter inside tests: `const daemon = useDaemon(); … daemon().url`.
 */
export function useDaemon(options: TestDaemonOptions = {}): () => TestDaemon {
  let daemon: TestDaemon | undefined;
  beforeAll(async () => {
    daemon = await startTestDaemon(options);
  });
  afterAll(async () => {
    await daemon?.stop();
  });
  return () => {
    if (!daemon) throw new Error("the daemon is not running (useDaemon's beforeAll failed or has not run)");
    return daemon;
  };
}

/**
 * The environment for child processes: the runner's, without its SPECTA_* variables, so that
 * a developer's own settings cannot change what a test sees.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("SPECTA_")) env[key] = value;
  return { ...env, ...extra };
}

/** Throws a clear message when the CLI has not been built. */
export function requireBuild(): void {
  if (!existsSync(join(repoRoot, "dist", "src", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` before these tests (`npm test` does it)");
  }
}

/** One parsed JSON log line of the daemon. */
export type LogLine = { level?: string; message?: string; [key: string]: unknown };

/** A `specta` process started by spawnSpecta, with its output collected. */
export interface SpectaProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** stdout's JSON lines, parsed (other lines are left out). */
  logs(): LogLine[];
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `predicate`; rejects on exit or after `timeoutMs`. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGKILLs the process if it is still running, and removes its temp dir. */
  cleanup(): Promise<void>;
}

/** Runs `node ...nodeArgs bin/specta.js ...args` with a hermetic environment (see childEnv) plus `env`. */
export function spawnSpecta(
  args: string[],
  env: Record<string, string> = {},
  onCleanup?: () => void | Promise<void>,
  nodeArgs: string[] = [],
): SpectaProcess {
  requireBuild();
  const child = spawn(process.execPath, [...nodeArgs, cliPath, ...args], {
    cwd: repoRoot,
    env: childEnv(env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once("exit", (code, signal) => resolveExit({ code, signal }));
  });
  const parse = (): LogLine[] =>
    out
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as LogLine];
        } catch {
          return [];
        }
      });
  let running = true;
  void exited.then(() => (running = false));

  return {
    child,
    stdout: () => out,
    stderr: () => err,
    logs: parse,
    exited,
    waitForLog(predicate, timeoutMs = 20_000) {
      return new Promise<LogLine>((resolveLine, reject) => {
        const check = () => {
          const line = parse().find(predicate);
          if (line) {
            done();
            resolveLine(line);
          }
        };
        const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
          check();
          done();
          reject(new Error(`specta exited (${signal ?? code}) before the expected log line\nstdout:\n${out}\nstderr:\n${err}`));
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no expected log line within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          child.stdout.off("data", check);
          child.off("exit", onExit);
        };
        child.stdout.on("data", check);
        child.once("exit", onExit);
        check();
      });
    },
    async cleanup() {
      if (running) {
        child.kill("SIGKILL");
        await exited;
      }
      await onCleanup?.();
    },
  };
}

/** A `specta daemon` child process listening on 127.0.0.1:0 in a fresh data directory. */
export interface SpawnedDaemon extends SpectaProcess {
  url: string;
  port: number;
  dataDir: string;
}

/**
 * Starts the built CLI's `specta daemon --addr 127.0.0.1:0 --data-dir <temp>` on a fresh
 * database of the tests' PostgreSQL (SPECTA_DATABASE_URL) and waits for its "daemon listening"
 * log line. `env` adds variables (e.g. SPECTA_SHUTDOWN_TIMEOUT), `nodeArgs` Node's own options
 * (those NODE_OPTIONS does not take, e.g. --inspect).
 */
export async function spawnDaemon(args: string[] = [], env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<SpawnedDaemon> {
  const dir = tempDir();
  const dataDir = join(dir.path, "data");
  let db: TestDatabase | undefined;
  try {
    db = await createTestDatabase();
  } catch (err) {
    dir.remove();
    throw err;
  }
  const database = db;
  const proc = spawnSpecta(
    ["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir, ...args],
    { SPECTA_LOG_LEVEL: "info", SPECTA_DATABASE_URL: database.url, ...env },
    async () => {
      try {
        await database.drop();
      } finally {
        dir.remove();
      }
    },
    nodeArgs,
  );
  try {
    const line = await proc.waitForLog((l) => l.message === "daemon listening");
    const url = String(line.url);
    return { ...proc, url, port: Number(new URL(url).port), dataDir };
  } catch (err) {
    await proc.cleanup();
    throw err;
  }
}

/** What a finished `specta` run printed and how it exited. */
export interface SpectaRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/specta.js ...args` to the end (hermetic environment, see childEnv) and collects its output. */
export function runSpecta(args: string[], env: Record<string, string> = {}): Promise<SpectaRun> {
  const child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done({ code, stdout, stderr }));
  });
}

/** A TCP port that was free a moment ago, for a daemon that must keep its address across restarts. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * `specta daemon` on a fixed port and data directory, on its embedded PostgreSQL unless `env`
 * names another, that a test kills and starts again as a supervisor would: clients keep its URL.
 */
export class RestartableDaemon {
  private current: SpectaProcess | undefined;

  constructor(
    readonly dataDir: string,
    readonly port: number,
    private readonly env: Record<string, string> = {},
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The running process (its logs, its pid). */
  get proc(): SpectaProcess {
    if (!this.current) throw new Error("the daemon has not been started");
    return this.current;
  }

  /** Starts it and waits for its "daemon listening" line. */
  async start(): Promise<SpectaProcess> {
    this.current = spawnSpecta(["daemon", "--addr", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir], { SPECTA_LOG_LEVEL: "info", ...this.env });
    await this.current.waitForLog((l) => l.message === "daemon listening", 60_000);
    return this.current;
  }

  /** kill -9: nothing drains, and its embedded PostgreSQL (detached) keeps running. */
  async kill(): Promise<void> {
    this.proc.child.kill("SIGKILL");
    await this.proc.exited;
  }

  /** SIGTERM (it drains and stops its embedded PostgreSQL); a PostgreSQL left by a killed daemon is stopped too. */
  async stop(): Promise<void> {
    if (this.current && this.current.child.exitCode === null && this.current.child.signalCode === null) {
      this.current.child.kill("SIGTERM");
      await this.current.exited;
    }
    if (!this.env.SPECTA_DATABASE_URL) await stopEmbeddedPostgres(this.dataDir, createLogger("silent")).catch(() => undefined);
  }
}
