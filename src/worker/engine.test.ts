import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../shared/log.js";
import { Engine, type Handler } from "./engine.js";

/** A logger whose JSON lines are kept for the test to read. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger("info", sink), lines };
}

describe("the worker engine", () => {
  it("runs each handler in its own loop, logs a failure with the handler's name, retries it after its cooler, and stops cleanly", async () => {
    const { log, lines } = capturedLogger();
    let failing = 0;
    let healthy = 0;
    const handlers: Handler[] = [
      {
        name: "always-fails",
        coolerMs: 20,
        async ensure() {
          failing++;
          throw new Error("boom");
        },
      },
      {
        name: "counts",
        coolerMs: 10,
        async ensure() {
          healthy++;
        },
      },
    ];
    const engine = new Engine(handlers, log);
    engine.start();
    await expect.poll(() => failing, { timeout: 2_000 }).toBeGreaterThanOrEqual(3);
    expect(healthy).toBeGreaterThan(failing); // the failing handler never stopped the other
    const started = Date.now();
    await engine.stop();
    expect(Date.now() - started).toBeLessThan(2_000);
    const ranAtStop = healthy;
    await new Promise((r) => setTimeout(r, 50));
    expect(healthy).toBe(ranAtStop);
    const errors = lines.filter((l) => l.level === "error");
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors[0]).toMatchObject({ handler: "always-fails", err: expect.objectContaining({ message: "boom" }) });
  });
});
