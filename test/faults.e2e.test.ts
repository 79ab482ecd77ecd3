/**
 * The fault suite (issue 10), briefly: each scenario of test/support/faults.ts with a few faults.
 * `npm run bench:faults` runs the same scenarios at length and prints their figures.
 */
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/shared/log.js";
import { startTestDaemon, tempDir } from "./support/daemon.js";
import { killDaemon, killPostmaster, postmasterPid, runFaultScenario, type ScenarioOptions } from "./support/faults.js";

const log = createLogger("silent");

describe("agents pushing through their own spool and sender", () => {
  const dirs: { remove(): void }[] = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  const options = (faults: number): ScenarioOptions => {
    const dir = tempDir("specta-faults-");
    dirs.push(dir);
    return { dir: dir.path, agents: 4, faults, ingestMs: 1_000, shape: { series: 50, ticksPerBatch: 40, queuedBatches: 2 }, log };
  };

  it("lose nothing and double nothing across kill -9s of the daemon", async () => {
    const { figures } = await runFaultScenario("daemon kill -9", killDaemon, options(4));
    expect(figures).toMatchObject({ lost: 0, doubled: 0, givenUp: 0, valuesMatch: true });
    expect(figures.stored).toBe(figures.generated);
    expect(figures.retriedPushes).toBeGreaterThan(0); // the kills did interrupt pushes
    // 28 to 38 s in CI runs, 50 s beside other suites: room for a slower machine, not a hang.
  }, 180_000);

  it("lose nothing when the embedded PostgreSQL's postmaster is killed with -9: the daemon restarts it by itself", async () => {
    const { figures, daemonLogs } = await runFaultScenario("postmaster kill -9", killPostmaster, options(2));
    expect(figures).toMatchObject({ lost: 0, doubled: 0, givenUp: 0, valuesMatch: true });
    expect(figures.stored).toBe(figures.generated);
    expect(daemonLogs.filter((l) => l.message === "embedded PostgreSQL restarted")).toHaveLength(2);
    expect(daemonLogs.filter((l) => l.message === "daemon listening")).toHaveLength(1); // the same daemon throughout
  }, 180_000);
});

describe("a daemon whose embedded PostgreSQL cannot be restarted", () => {
  it("gives up after its attempts: failed resolves, /health/live and /health/ready say 503", async () => {
    const daemon = await startTestDaemon({
      flags: { databaseUrl: undefined },
      daemon: { embedded: { checkMs: 100, maxAttempts: 2, backoff: { initialMs: 100, maxMs: 100 } } },
    });
    try {
      expect((await fetch(`${daemon.url}/health/live`)).status).toBe(200);
      // A setting PostgreSQL does not know: every start fails from now on.
      appendFileSync(join(daemon.dataDir, "postgres", "postgresql.conf"), "\nspecta_no_such_setting = 1\n");
      process.kill(postmasterPid(daemon.dataDir), "SIGKILL");
      const err = await daemon.failed;
      expect(err.message).toMatch(/^the embedded PostgreSQL died and could not be restarted in 2 attempts: .*specta_no_such_setting/);
      const live = await fetch(`${daemon.url}/health/live`);
      expect({ status: live.status, body: await live.json() }).toEqual({ status: 503, body: { status: "dead", reason: err.message } });
      const ready = await fetch(`${daemon.url}/health/ready`);
      expect({ status: ready.status, body: await ready.json() }).toMatchObject({ status: 503, body: { failing: ["dead", "database"] } });
    } finally {
      await daemon.stop().catch(() => undefined); // its PostgreSQL is not running: pg_ctl stop fails
    }
  }, 60_000);
});
