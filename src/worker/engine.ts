import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../shared/log.js";

/** One kind of background work: `ensure()` does one unit of it, then the engine sleeps `coolerMs`. */
export interface Handler {
  name: string;
  coolerMs: number;
  /** Set for single-leader work: the advisory lock that one daemon of those sharing a database holds while it runs. */
  leaderLock?: number;
  ensure(signal: AbortSignal): Promise<void>;
}

/** Runs `work` while holding the advisory lock `key`; resolves false at once, without running it, when another daemon holds it. */
export type Leadership = (key: number, work: () => Promise<void>) => Promise<boolean>;

/**
 * Runs each handler in its own loop. A failing handler is logged with its name and retried
 * after its cooler; it never stops the others. stop() ends every loop and waits for them.
 */
export class Engine {
  private readonly controller = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(
    private readonly handlers: Handler[],
    private readonly log: Logger,
    private readonly leadership?: Leadership,
  ) {
    const leaderOnly = handlers.find((h) => h.leaderLock !== undefined);
    if (leaderOnly && !leadership) throw new Error(`handler ${leaderOnly.name} needs leader election, but the engine has none`);
  }

  start(): void {
    // Each handler's loop waits on the one signal.
    setMaxListeners(this.handlers.length + 10, this.controller.signal);
    this.loops = this.handlers.map((handler) => this.run(handler));
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await Promise.all(this.loops);
  }

  /** A leader-only turn, timed inside the lock: the runs of one handler logged by all daemons never overlap. */
  private async lead(handler: Handler, signal: AbortSignal, log: Logger): Promise<void> {
    const startedAt = Date.now();
    try {
      await handler.ensure(signal);
    } finally {
      log.debug({ startedAt, endedAt: Date.now() }, "ran as leader");
    }
  }

  private async run(handler: Handler): Promise<void> {
    const { signal } = this.controller;
    const log = this.log.child({ handler: handler.name });
    while (!signal.aborted) {
      try {
        if (handler.leaderLock === undefined) await handler.ensure(signal);
        else if (!(await this.leadership!(handler.leaderLock, () => this.lead(handler, signal, log)))) log.debug("another daemon runs this; skipped");
      } catch (err) {
        if (signal.aborted) break;
        log.error({ err }, "handler failed; retrying after its cooler");
      }
      try {
        await sleep(handler.coolerMs, undefined, { signal });
      } catch {
        break; // aborted while cooling down
      }
    }
  }
}
