import type { JsonObject } from "@bufbuild/protobuf";

export type DiagnosticState = "succeeded" | "failed" | "timed_out";

export interface DiagnosticOutput {
  text: string;
  data?: JsonObject;
  truncated: boolean;
  error: string;
}

export interface DiagnosticResult {
  state: DiagnosticState;
  output: DiagnosticOutput;
}

/** What every runner gets: a signal that aborts at the timeout (or when the agent stops) and the cap. */
export interface RunContext {
  signal: AbortSignal;
  /** Epoch ms by which the diagnostic must be done. */
  deadline: number;
  capBytes: number;
  /** True once the timeout (not a stop) aborted the signal. */
  timedOut(): boolean;
  /** Where syslog files are looked for; default /var/log/syslog, /var/log/messages. */
  logFiles?: string[];
  /** journalctl to use: a path, or false to skip the journal. Default: found in PATH. */
  journalctl?: string | false;
  /** Most entries disk_usage looks at. */
  maxEntries?: number;
}

export function remainingMs(ctx: RunContext): number {
  return Math.max(1, ctx.deadline - Date.now());
}

export function succeeded(text: string, data?: JsonObject, truncated = false): DiagnosticResult {
  return { state: "succeeded", output: { text, ...(data ? { data } : {}), truncated, error: "" } };
}

export function failed(error: string, text = "", data?: JsonObject, truncated = false): DiagnosticResult {
  return { state: "failed", output: { text, ...(data ? { data } : {}), truncated, error } };
}

export class UnsupportedError extends Error {
  override name = "UnsupportedError";
}

/** 1536 → "1.5 KiB". */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Cuts text to at most `capBytes` UTF-8 bytes, on a character boundary. */
export function capText(text: string, capBytes: number): { text: string; truncated: boolean } {
  if (Buffer.byteLength(text) <= capBytes) return { text, truncated: false };
  let cut = Buffer.from(text).subarray(0, capBytes).toString("utf8");
  if (cut.endsWith("\uFFFD")) cut = cut.slice(0, -1);
  return { text: cut, truncated: true };
}
