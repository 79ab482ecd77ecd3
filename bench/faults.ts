/**
 * npm run bench:faults — the fault suite at length (issue 10). Counting agents push through the
 * agent's own spool and sender while a scenario hurts the daemon; for each scenario this prints
 * what was generated, acknowledged, stored (counted through metrics.API/Query), lost and
 * doubled, and how long recovery took. test/faults.e2e.test.ts runs the same scenarios briefly.
 *
 * Settings (environment): BENCH_SCENARIOS (comma separated, default all: daemon-kill,
 * postmaster-kill, postmaster-gone), BENCH_AGENTS (4), BENCH_FAULTS per scenario (10),
 * BENCH_INGEST_SECONDS between faults (5), BENCH_SERIES per agent (100).
 *
 * A scenario is a function that returns its figures as named values; add one (a flood, …) to
 * `scenarios` below.
 */
import { appendFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../src/shared/log.js";
import { freePort, RestartableDaemon, tempDir } from "../test/support/daemon.js";
import { killDaemon, killPostmaster, postmasterPid, runFaultScenario, type FaultFigures, type ScenarioOptions } from "../test/support/faults.js";

const agents = Number(process.env.BENCH_AGENTS ?? 4);
const faults = Number(process.env.BENCH_FAULTS ?? 10);
const ingestMs = Number(process.env.BENCH_INGEST_SECONDS ?? 5) * 1000;
const series = Number(process.env.BENCH_SERIES ?? 100);

type Figures = Record<string, string | number>;
type Scenario = (dir: string) => Promise<Figures>;

const options = (dir: string): ScenarioOptions => ({
  dir,
  agents,
  faults,
  ingestMs,
  shape: { series, ticksPerBatch: 40, queuedBatches: 2 },
  log: createLogger("error"),
});

const scenarios: Record<string, Scenario> = {
  /** kill -9 of the daemon during ingest, started again at once on the same data directory. */
  "daemon-kill": async (dir) => countFigures((await runFaultScenario("daemon kill -9", killDaemon, options(dir))).figures),

  /** kill -9 of the embedded PostgreSQL's postmaster during ingest; the daemon restarts it. */
  "postmaster-kill": async (dir) => countFigures((await runFaultScenario("postmaster kill -9", killPostmaster, options(dir))).figures),

  /**
   * The postmaster dies and cannot start again (a setting it refuses): the daemon must give up
   * after its attempts and exit non-zero, so that a supervisor takes over.
   */
  "postmaster-gone": async (dir) => {
    const daemon = new RestartableDaemon(join(dir, "data"), await freePort());
    const proc = await daemon.start();
    try {
      appendFileSync(join(daemon.dataDir, "postgres", "postgresql.conf"), "\nspecta_no_such_setting = 1\n");
      const killed = performance.now();
      process.kill(postmasterPid(daemon.dataDir), "SIGKILL");
      const exit = await Promise.race([proc.exited, sleep(5 * 60_000, undefined, { ref: false })]);
      const gaveUp = proc.logs().find((l) => l.message === "the embedded PostgreSQL cannot be restarted; giving up");
      return {
        "exit code": exit ? String(exit.code) : "none: still running 5 minutes after the kill",
        "seconds from the kill to the exit": ((performance.now() - killed) / 1000).toFixed(1),
        "restart attempts": String(gaveUp?.attempts ?? "none logged"),
      };
    } finally {
      await daemon.stop();
    }
  },
};

function countFigures(f: FaultFigures): Figures {
  return {
    faults: f.faults,
    "points generated": f.generated,
    acknowledged: f.acknowledged,
    stored: f.stored,
    lost: f.lost,
    doubled: f.doubled,
    "given up by the agents": f.givenUp,
    "values exact": String(f.valuesMatch),
    "pushes retried": f.retriedPushes,
    "fault over (ms, from the kill until the daemon listened again / restarted its PostgreSQL)": spread(f.faultMs),
    "recovery (ms, from the kill until every agent was acknowledged after the fault)": spread(f.recoveryMs),
    seconds: f.seconds.toFixed(0),
  };
}

/** "median … max" of a list of milliseconds. */
function spread(ms: number[]): string {
  if (ms.length === 0) return "none";
  const sorted = [...ms].sort((a, b) => a - b);
  return `median ${Math.round(sorted[Math.floor((sorted.length - 1) / 2)]!)}, max ${Math.round(sorted[sorted.length - 1]!)} (${ms.map(Math.round).join(", ")})`;
}

async function main(): Promise<void> {
  const processors = cpus();
  console.log(
    `machine: ${processors[0]?.model.trim() ?? "unknown CPU"}, ${processors.length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${process.platform} ${release()}, Node ${process.version}`,
  );
  console.log(`settings: ${agents} agents × ${series} series, ${faults} faults per scenario, ${ingestMs / 1000} s of ingest between faults`);
  const chosen = (process.env.BENCH_SCENARIOS ?? Object.keys(scenarios).join(",")).split(",").filter(Boolean);
  for (const name of chosen) {
    const scenario = scenarios[name];
    if (!scenario) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
    const dir = tempDir(`specta-bench-faults-`);
    try {
      const figures = await scenario(dir.path);
      console.log(`\n${name}`);
      for (const [key, value] of Object.entries(figures))
        console.log(`  ${key}: ${typeof value === "number" ? value.toLocaleString("en-US") : value}`);
    } finally {
      dir.remove();
    }
  }
}

await main();
