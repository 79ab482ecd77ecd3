/**
 * The contract between the agent runtime and its collectors: what a collector is, what it
 * measures, and how it says that it cannot work on this host. The collectors implement it; the
 * list of collectors for this platform is defaults.ts, which the runtime takes (as the
 * OpenTelemetry Collector keeps a component's factory apart from the list of components).
 */

/**
 * Thrown by `collect` when the collector cannot work on this host (no systemd, no sensors, no
 * Docker socket, …). The message starts with "unsupported:".
 */
export class UnsupportedError extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`unsupported: ${reason}`, options);
    this.name = "UnsupportedError";
  }
}

/** One value of one series, measured now. Kind: "counter" (monotonic running total, name ends _total) or "gauge". */
export interface Measurement {
  metric: string;
  labels: Record<string, string>;
  kind: "counter" | "gauge";
  value: number;
}

export interface Collector {
  /** Short name, e.g. "cpu". */
  name: string;
  /** Default interval between runs in ms. */
  intervalMs: number;
  /** One run. Throws when the collector cannot work on this host (the runtime logs that once and goes on). */
  collect(signal: AbortSignal): Promise<Measurement[]>;
}
