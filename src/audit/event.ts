import type { Code } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Principal } from "../tokens/tokens.js";

/** Who made a call: a credential, or nobody (the public instrument calls, enrolment, refused calls). */
export interface AuditActor {
  token_id: string | null;
  name: string | null;
  role: Principal["role"] | "anonymous";
}

/**
 * One write, as the file and URL sinks carry it (one JSON object, snake_case as Golectra's `ts`,
 * `metrics` and `ip_address`) and the database keeps it.
 */
export interface AuditEvent {
  /** When the daemon received the call (ISO 8601, UTC). */
  ts: string;
  /** The procedure ("metrics.API/Push") or HTTP endpoint ("prometheus/api/v1/write"). */
  action: string;
  /** "ok" or the error code the caller got ("invalid_argument"). */
  outcome: string;
  /** The metric names written, each once. */
  metrics: string[];
  ip_address: string | null;
  actor: AuditActor;
}

const anonymous: AuditActor = { token_id: null, name: null, role: "anonymous" };

export function actorOf(principal: Principal | undefined): AuditActor {
  return principal ? { token_id: principal.tokenId, name: principal.name, role: principal.role } : anonymous;
}

/** The outcome of a call that ended with `code` (undefined: it succeeded). */
export function outcomeOf(code: Code | undefined): string {
  return code === undefined ? "ok" : codeToString(code);
}

/** Each name once, in first-seen order. */
export function uniqueNames(names: Iterable<string>): string[] {
  return [...new Set(names)];
}

/** Records an event on every sink without waiting for any (AuditTrail.record). */
export type RecordAudit = (event: AuditEvent) => void;
