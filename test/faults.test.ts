/**
 * The fault suite (issue 10), briefly: each scenario of test/support/faults.ts with a few faults.
 * `npm run bench:faults` runs the same scenarios at length and prints their figures.
 */
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { tempDir } from "./support/daemon.js";
import { killDaemon, runFaultScenario } from "./support/faults.js";

const log = createLogger("silent");

describe("agents pushing through their own spool and sender", () => {
  const dir = tempDir("specta-faults-");
  afterAll(() => dir.remove());

  it("lose nothing and double nothing across kill -9s of the daemon", async () => {
    const { figures } = await runFaultScenario("daemon kill -9", killDaemon, {
      dir: dir.path,
      agents: 4,
      faults: 4,
      ingestMs: 1_500,
      shape: { series: 50, ticksPerBatch: 40, queuedBatches: 2 },
      log,
    });
    expect(figures).toMatchObject({ lost: 0, doubled: 0, givenUp: 0, valuesMatch: true });
    expect(figures.retriedPushes).toBeGreaterThan(0); // the kills did interrupt pushes
    expect(figures.stored).toBe(figures.generated);
  }, 60_000);
});
