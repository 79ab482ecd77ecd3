/**
 * `specta agent` once it runs an installed release: the process stays as a supervisor that runs
 * the agent of the release in current.json (src/agent/release-state.ts) as a child process,
 * starts the next one when the child exits for an update, and rolls back a release on trial that
 * exits, or does not report healthy in time, before it has reported healthy. Signals go to the
 * child; the supervisor exits with its code.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readCurrent, releaseBundle, rollBack } from "../agent/release-state.js";
import type { Logger } from "../shared/log.js";

/** How a supervised agent asks to be started again (an installed update): EX_TEMPFAIL. */
export const restartExitCode = 75;

/** Set in a supervised agent's environment: it runs in its own process, and exits when its supervisor is gone. */
export const supervisedVariable = "SPECTA_AGENT_SUPERVISED";

/** The V8 flags bin/specta.js sets for the agent (why: there), given on the command line to a release's bundle, which bin/specta.js does not start. */
const agentV8Flags = ["--no-opt", "--no-maglev", "--optimize-for-size"];

export interface SupervisorOptions {
  stateDir: string;
  /** How long a release on trial has to report healthy. */
  healthTimeoutMs: number;
  log: Logger;
}

/** Supervises until the agent stops for good; never returns. */
export async function supervise({ stateDir, healthTimeoutMs, log }: SupervisorOptions): Promise<never> {
  let child: ChildProcess | undefined;
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => {
      stopping = true;
      child?.kill(signal);
    });
  }
  // The same command line and environment, with the bundle of the release (or of this package).
  const args = process.argv.slice(2);
  for (;;) {
    if (stopping) process.exit(0);
    const current = readCurrent(stateDir);
    const bundle = current ? releaseBundle(stateDir, current.version) : process.argv[1]!;
    log.info({ version: current?.version ?? "installed package", trial: current?.trial ?? false }, "starting the agent");
    const started = spawn(process.execPath, [...agentV8Flags, bundle, ...args], {
      stdio: "inherit",
      env: { ...process.env, [supervisedVariable]: "1" },
      // Its own process group: a terminal's Ctrl-C reaches it once, through the supervisor, not twice (which would not drain).
      detached: true,
    });
    child = started;
    let timedOut = false;
    const timer =
      current?.trial === true
        ? setTimeout(() => {
            if (!readCurrent(stateDir)?.trial) return;
            timedOut = true;
            started.kill("SIGTERM");
            setTimeout(() => started.kill("SIGKILL"), 5_000).unref();
          }, healthTimeoutMs)
        : undefined;
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      started.once("exit", (code, signal) => resolve({ code, signal })),
    );
    clearTimeout(timer);
    child = undefined;
    if (stopping) process.exit(code ?? 0);
    if (code === restartExitCode) continue;
    const now = readCurrent(stateDir);
    if (now?.trial) {
      const reason = timedOut
        ? `version ${now.version} did not report healthy within ${healthTimeoutMs / 1000} s`
        : `version ${now.version} exited (${signal ?? `code ${code}`}) before it reported healthy`;
      log.error({ version: now.version, previous: now.previous ?? "installed package", reason }, "rolling back the update");
      rollBack(stateDir, now, reason);
      continue;
    }
    process.exit(code ?? 1);
  }
}

/** In a supervised agent: exits when the supervisor is gone (killed), rather than run unsupervised beside a new one. */
export function exitWithSupervisor(): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, 1_000).unref();
}
