/**
 * The agent's one timer. Every collector, and the closing of each batch, is a task that runs at
 * the multiples of its interval counted from the schedule's start, so that tasks whose intervals
 * are multiples of one another (5, 10, 15, 60 s) come due together and run in one turn of the
 * event loop, with one timestamp.
 *
 * Why one timer: on the machines measured (npm run bench:agent, 2-core VMs), waking a sleeping
 * Node process costs 0.2 to 1 ms of CPU whatever it then does. With a timer per collector and a
 * once-a-second event-loop-delay sample the agent woke about 110 times a minute, and those
 * wakeups were most of its CPU; on one timer it wakes once per 5 s, plus its daemon's answers.
 *
 * How late each wakeup is, from the time it was due, is the event loop's delay (eventLoopDelay),
 * measured on wakeups that happen anyway rather than by a timer of its own.
 */
import { createHistogram, performance, type RecordableHistogram } from "node:perf_hooks";

/** The event loop's delay in ns: how late the schedule's wakeups were (read and reset by the runtime collector). */
export const eventLoopDelay: RecordableHistogram = createHistogram();

/** A task's run, given the wall-clock time (ms) of the turn it runs in: the timestamp of what it measures. */
export type Run = (at: number) => Promise<unknown> | undefined;

interface Task {
  intervalMs: number;
  run: Run;
  /** When it is due next, on performance.now()'s clock. */
  next: number;
  inFlight: Promise<unknown> | undefined;
}

/** Timers may fire up to a millisecond before performance.now() says they are due (libuv counts whole ms). */
const earlyMs = 2;

export class Schedule {
  private readonly tasks: Task[] = [];
  /** The multiples of every task's interval are counted from here, so that they coincide. */
  private readonly origin = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /**
   * Runs `run` now and then at every multiple of `intervalMs` from the schedule's start. A run whose promise has
   * not settled when the next is due is not overlapped: that turn is skipped. A run that throws
   * or rejects is the task's own business (it is ignored here) and never stops the others.
   */
  every(intervalMs: number, run: Run): void {
    if (!(intervalMs > 0)) throw new RangeError(`interval must be more than 0 ms, got ${intervalMs}`);
    this.tasks.push({ intervalMs, run, next: this.origin, inFlight: undefined });
    if (!this.stopped) this.arm(0);
  }

  /** Stops running tasks; resolves once the runs in flight have settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.allSettled(this.tasks.map((t) => t.inFlight));
  }

  private arm(inMs: number): void {
    clearTimeout(this.timer);
    const due = performance.now() + inMs;
    this.timer = setTimeout(() => this.tick(due), inMs);
  }

  private tick(due: number): void {
    this.timer = undefined;
    if (this.stopped) return;
    const now = performance.now();
    eventLoopDelay.record(Math.max(1, Math.round((now - due) * 1e6)));
    const at = Date.now();
    for (const task of this.tasks) {
      if (task.next > now + earlyMs) continue;
      // The next multiple of the interval after now: turns missed while the loop was blocked are not made up.
      task.next += Math.max(1, Math.ceil((now + earlyMs - task.next) / task.intervalMs)) * task.intervalMs;
      if (task.inFlight) continue;
      let running: Promise<unknown> | undefined;
      try {
        running = task.run(at);
      } catch {
        continue;
      }
      if (!running) continue;
      // One run at a time per task (checked above), so settling clears this run's mark.
      const settled = () => {
        task.inFlight = undefined;
      };
      task.inFlight = running.then(settled, settled);
    }
    const next = Math.min(...this.tasks.map((t) => t.next));
    this.arm(Math.max(0, next - performance.now()));
  }
}
