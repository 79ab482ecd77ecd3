import type { Duration } from "@bufbuild/protobuf/wkt";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Diagnostic } from "../../gen/commands/commands_pb.js";
import { DiagnosticError, normalizeDiagnosticName, validateDiagnostic as checkDiagnostic, type DiagnosticName } from "../shared/diagnostics.js";

export type { DiagnosticName };

/** Limits documented in proto/commands/commands.proto, checked on Submit. */
export const commandLimits = {
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 10 * 60_000,
  defaultTtlMs: 5 * 60_000,
  maxTtlMs: 24 * 3_600_000,
  /** Output.text and Output.data (as JSON) are each cut at this many bytes. */
  maxOutputBytes: 1024 * 1024,
  maxErrorBytes: 64 * 1024,
} as const;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function checkDuration(d: Duration | undefined, max: number, field: string, fallback: number): number {
  if (!d) return fallback;
  let ms: number;
  try {
    ms = durationMs(d);
  } catch {
    throw invalid(`${field} is not a valid duration`);
  }
  if (!Number.isFinite(ms) || ms <= 0) throw invalid(`${field} must be positive`);
  if (ms > max) throw invalid(`${field} must be at most ${max / 1000} s, got ${ms / 1000} s`);
  return Math.ceil(ms);
}

/**
 * Checks a diagnostic's parameters with the same rules the agent applies before it runs
 * anything (src/shared/diagnostics.ts), so that a bad command is refused at Submit.
 */
export function validateDiagnostic(diagnostic: Diagnostic | undefined): DiagnosticName {
  try {
    return checkDiagnostic(diagnostic).kind;
  } catch (err) {
    throw err instanceof DiagnosticError ? invalid(err.message) : err;
  }
}

/** The command timeout and ttl of a submission, with their defaults, in ms. */
export function validateTiming(timeout: Duration | undefined, ttl: Duration | undefined): { timeoutMs: number; ttlMs: number } {
  return {
    timeoutMs: checkDuration(timeout, commandLimits.maxTimeoutMs, "timeout", commandLimits.defaultTimeoutMs),
    ttlMs: checkDuration(ttl, commandLimits.maxTtlMs, "ttl", commandLimits.defaultTtlMs),
  };
}

/** An agent's allow-list (StreamRequest.allow) as proto field names; empty: everything. */
export function validateAllow(allow: string[]): DiagnosticName[] {
  try {
    return [...new Set(allow.map(normalizeDiagnosticName))];
  } catch (err) {
    throw err instanceof DiagnosticError ? invalid(`allow: ${err.message}`) : err;
  }
}

/** Cuts `text` to at most `maxBytes` bytes of UTF-8 without splitting a character. */
export function capText(text: string, maxBytes: number): { text: string; cut: boolean } {
  if (text.length <= maxBytes / 3) return { text, cut: false };
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return { text, cut: false };
  let end = maxBytes;
  // Back up to the start of a UTF-8 sequence.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return { text: bytes.subarray(0, end).toString("utf8"), cut: true };
}
