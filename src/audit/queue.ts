import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../shared/log.js";

/** Where a sink writes: one call per batch; a rejection means nothing of the batch was kept (it is retried). */
export interface SinkWriter<T> {
  /** For metrics and logs: "file", "url", "database". */
  name: string;
  /** `signal` aborts when the daemon stops waiting for the sink. */
  write(batch: T[], signal: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

export interface SinkQueueOptions {
  /** Events waiting at most; beyond, new ones are dropped (counted). */
  capacity: number;
  /** Events per write at most. */
  batchSize: number;
  /** How long a write waits for more events once one is queued: a quiet daemon still writes in batches. */
  lingerMs: number;
  /** Retries after a failed write wait this, doubling up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
}

export interface SinkQueueEvents {
  dropped(sink: string, count: number): void;
  written(sink: string, count: number): void;
  failed(sink: string): void;
}

/** Logs at most one line per this many milliseconds per sink and kind (drops, failures). */
const logEveryMs = 10_000;

/**
 * A bounded in-memory queue in front of one sink, drained by one loop: push() never waits, so a
 * slow or dead sink never delays the call that produced an event; when the queue is full the
 * event is dropped, counted and logged (at most once per 10 s). A failed write is retried with
 * backoff, the batch kept at the head of the queue.
 */
export class SinkQueue<T> {
  private queue: T[] = [];
  private wake: (() => void) | undefined;
  private stopping = false;
  private readonly loop: Promise<void>;
  private droppedSinceLog = 0;
  private lastDropLog = -Infinity;
  private lastFailureLog = -Infinity;
  private readonly abort = new AbortController();
  /** Aborted on stop(): a write waiting for more events goes at once. */
  private readonly lingering = new AbortController();

  constructor(
    private readonly writer: SinkWriter<T>,
    private readonly options: SinkQueueOptions,
    private readonly events: SinkQueueEvents,
    private readonly log: Logger,
  ) {
    this.loop = this.run();
  }

  get length(): number {
    return this.queue.length;
  }

  /** Queues `item`; false when the queue is full and it was dropped. */
  push(item: T): boolean {
    if (this.stopping || this.queue.length >= this.options.capacity) {
      this.dropped(1);
      return false;
    }
    this.queue.push(item);
    this.wake?.();
    return true;
  }

  /** Writes what is queued, trying until `deadlineMs` (performance.now()); what is left then is dropped (counted). */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.lingering.abort();
    this.wake?.();
    const timer = setTimeout(() => this.abort.abort(), Math.max(0, deadlineMs - performance.now()));
    await this.loop;
    clearTimeout(timer);
    if (this.queue.length > 0) this.dropped(this.queue.splice(0).length);
    await this.writer.close?.().catch((err: unknown) => this.log.warn({ sink: this.writer.name, err }, "audit sink did not close cleanly"));
  }

  private dropped(count: number): void {
    this.events.dropped(this.writer.name, count);
    this.droppedSinceLog += count;
    const now = performance.now();
    if (now - this.lastDropLog >= logEveryMs) {
      this.log.warn(
        { sink: this.writer.name, dropped: this.droppedSinceLog, capacity: this.options.capacity },
        "audit events dropped: the sink's queue is full",
      );
      this.lastDropLog = now;
      this.droppedSinceLog = 0;
    }
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    let backoff = this.options.backoffMs;
    while (!signal.aborted) {
      if (this.queue.length === 0) {
        if (this.stopping) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if (this.queue.length < this.options.batchSize && !this.stopping) {
        await sleep(this.options.lingerMs, undefined, { signal: this.lingering.signal }).catch(() => undefined);
      }
      const batch = this.queue.slice(0, this.options.batchSize);
      try {
        await this.writer.write(batch, signal);
        this.queue.splice(0, batch.length);
        this.events.written(this.writer.name, batch.length);
        backoff = this.options.backoffMs;
      } catch (err) {
        this.events.failed(this.writer.name);
        const now = performance.now();
        if (now - this.lastFailureLog >= logEveryMs) {
          this.log.warn({ sink: this.writer.name, err, queued: this.queue.length, retryInMs: backoff }, "audit sink write failed; retrying");
          this.lastFailureLog = now;
        }
        await sleep(backoff, undefined, { signal }).catch(() => undefined);
        backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
      }
    }
  }
}
