import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { eventLoopDelay, Schedule } from "./schedule.js";

describe("the agent's schedule", () => {
  let schedule: Schedule | undefined;
  afterEach(async () => {
    await schedule?.stop();
  });

  it("runs tasks whose intervals are multiples of one another in the same turn, with one timestamp", async () => {
    schedule = new Schedule();
    const turns: { task: string; at: number; turn: number }[] = [];
    let turn = 0;
    // A counter bumped once per turn of the event loop (in its check phase) tells turns apart.
    const bump = () => {
      turn++;
      if (schedule) immediate = setImmediate(bump);
    };
    let immediate = setImmediate(bump);
    for (const [task, intervalMs] of [
      ["fast", 40],
      ["double", 80],
      ["triple", 120],
    ] as const) {
      schedule.every(intervalMs, (at) => {
        turns.push({ task, at, turn });
        return undefined;
      });
    }
    await sleep(500);
    await schedule.stop();
    schedule = undefined;
    clearImmediate(immediate);
    const of = (task: string) => turns.filter((t) => t.task === task);
    expect(of("fast").length).toBeGreaterThanOrEqual(6);
    expect(of("double").length).toBeGreaterThanOrEqual(3);
    expect(of("triple").length).toBeGreaterThanOrEqual(2);
    // Every run of the slower tasks shares its turn and its timestamp with a run of the fast one.
    for (const run of [...of("double"), ...of("triple")]) {
      expect(of("fast").some((f) => f.turn === run.turn && f.at === run.at)).toBe(true);
    }
  });

  it("does not overlap a run still in flight, and one task's failure does not stop the others", async () => {
    schedule = new Schedule();
    let slowRuns = 0;
    let inFlight = 0;
    let mostInFlight = 0;
    schedule.every(20, async () => {
      slowRuns++;
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await sleep(70);
      inFlight--;
    });
    let failures = 0;
    schedule.every(20, () => {
      failures++;
      throw new Error("broken collector");
    });
    let rejections = 0;
    schedule.every(20, () => {
      rejections++;
      return Promise.reject(new Error("broken collector"));
    });
    await sleep(300);
    const stopping = schedule.stop();
    schedule = undefined;
    await stopping;
    // stop() waited for the slow run in flight.
    expect(inFlight).toBe(0);
    expect(mostInFlight).toBe(1);
    expect(slowRuns).toBeGreaterThanOrEqual(2);
    expect(slowRuns).toBeLessThanOrEqual(6);
    expect(failures).toBeGreaterThanOrEqual(5);
    expect(rejections).toBeGreaterThanOrEqual(5);
  });

  it("records how late its wakeups were as the event loop's delay, and makes up no missed turns", async () => {
    schedule = new Schedule();
    let runs = 0;
    schedule.every(200, () => {
      runs++;
      return undefined;
    });
    await sleep(10);
    eventLoopDelay.reset();
    const end = Date.now() + 700;
    while (Date.now() < end) {
      // the event loop is blocked: the turn due meanwhile comes late
    }
    const before = runs;
    await sleep(30);
    expect(eventLoopDelay.max / 1e6).toBeGreaterThan(400);
    // One late turn, not the three it missed (the next is due 90 ms or so after it).
    expect(runs - before).toBe(1);
  });
});
