/** A named check that says whether a dependency (e.g. the database) can serve. */
export type ReadinessCheck = () => boolean;

/** Whether the daemon can serve: every check passes and it is not shutting down. */
export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private stopping = false;
  private dead: string | undefined;
  private waiters: (() => void)[] = [];

  add(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
    this.notify();
  }

  markStopping(): void {
    this.stopping = true;
    this.notify();
  }

  /** The daemon cannot go on (`reason` says why): it is neither live nor ready from now on. */
  markDead(reason: string): void {
    this.dead = reason;
    this.notify();
  }

  /** Why the daemon is not live, for /health/live; undefined while it is. */
  deadReason(): string | undefined {
    return this.dead;
  }

  ready(): boolean {
    return this.failing().length === 0;
  }

  /** Names of the checks that fail now, for /health/ready. */
  failing(): string[] {
    const names = [...this.checks].filter(([, check]) => !check()).map(([name]) => name);
    return [...(this.dead !== undefined ? ["dead"] : []), ...(this.stopping ? ["stopping"] : []), ...names];
  }

  /** Callers whose check changes state call this so that watchers look again. */
  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next notify(), or within 5 s (checks may change without one), or on abort. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, 5_000);
      signal.addEventListener("abort", done, { once: true });
      this.waiters.push(done);
    });
  }
}
