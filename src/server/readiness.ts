/** A named check that says whether a dependency (e.g. the database) can serve. */
export type ReadinessCheck = () => boolean;

/** Whether the daemon can serve: every check passes and it is not shutting down. */
export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private stopping = false;
  private waiters: (() => void)[] = [];

  add(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
    this.notify();
  }

  markStopping(): void {
    this.stopping = true;
    this.notify();
  }

  ready(): boolean {
    return !this.stopping && [...this.checks.values()].every((check) => check());
  }

  /** Names of the checks that fail now, for /health/ready. */
  failing(): string[] {
    const names = [...this.checks].filter(([, check]) => !check()).map(([name]) => name);
    return this.stopping ? ["stopping", ...names] : names;
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
