import { describe, expect, it } from "vitest";
import { createLogger } from "../shared/log.js";
import { SinkQueue, type SinkQueueOptions } from "./queue.js";

const options: SinkQueueOptions = { capacity: 5, batchSize: 2, lingerMs: 10, backoffMs: 10, maxBackoffMs: 40 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sink that is down until `up` is set, and keeps the batches it takes. */
function sink() {
  const state = { up: false, batches: [] as number[][], attempts: 0 };
  return {
    state,
    writer: {
      name: "test",
      async write(batch: number[]) {
        state.attempts++;
        if (!state.up) throw new Error("down");
        state.batches.push([...batch]);
      },
    },
  };
}

function counts() {
  const c = { dropped: 0, written: 0, failed: 0 };
  return {
    c,
    events: { dropped: (_: string, n: number) => (c.dropped += n), written: (_: string, n: number) => (c.written += n), failed: () => c.failed++ },
  };
}

describe("a sink's queue", () => {
  it("never waits: a full queue drops and counts; a down sink is retried with backoff and gets what was kept, in order, in batches", async () => {
    const { state, writer } = sink();
    const { c, events } = counts();
    const queue = new SinkQueue(writer, options, events, createLogger("silent"));
    const accepted = Array.from({ length: 8 }, (_, i) => queue.push(i));
    expect(accepted).toEqual([true, true, true, true, true, false, false, false]);
    expect(c.dropped).toBe(3);
    while (state.attempts < 3) await sleep(5);
    expect(c.failed).toBeGreaterThanOrEqual(3);
    state.up = true;
    while (c.written < 5) await sleep(5);
    expect(state.batches).toEqual([[0, 1], [2, 3], [4]]);
    expect(queue.length).toBe(0);
    await queue.stop(performance.now() + 1000);
  });

  it("writes what is queued when stopped, and drops (counts) what a dead sink still holds at the deadline", async () => {
    const live = sink();
    live.state.up = true;
    const a = counts();
    const queue = new SinkQueue(live.writer, { ...options, lingerMs: 60_000 }, a.events, createLogger("silent"));
    queue.push(1);
    await sleep(20);
    // Stopping does not wait out the linger.
    await queue.stop(performance.now() + 5000);
    expect(live.state.batches).toEqual([[1]]);
    expect(queue.push(4)).toBe(false);

    const dead = sink();
    const b = counts();
    const stuck = new SinkQueue(dead.writer, options, b.events, createLogger("silent"));
    stuck.push(1);
    stuck.push(2);
    await stuck.stop(performance.now() + 200);
    expect(b.c.dropped).toBe(2);
    expect(stuck.length).toBe(0);
  });
});
