/**
 * Strict validation of every diagnostic argument. Shared by the agent (before anything runs) and
 * the daemon (before a command is queued): whatever passes here is safe to hand to a program as
 * one element of an argument array, and can never be read as an option or a shell construct.
 */
import { isIP } from "node:net";
import { posix } from "node:path";
import type { Diagnostic } from "../../gen/commands/commands_pb.js";
import { Severity } from "../../gen/commands/commands_pb.js";

/** An argument that is not acceptable; its message says which and why. */
export class DiagnosticError extends Error {
  override name = "DiagnosticError";
}

/** The diagnostics, by the names of Diagnostic's oneof fields (as StreamRequest.allow takes them). */
export const diagnosticNames = ["logs", "disk_usage", "mounts", "ping", "tcp_connect", "connections", "traceroute"] as const;
export type DiagnosticName = (typeof diagnosticNames)[number];

/** The names `specta agent --allow` takes, and the diagnostic each one means. */
export const allowFlagNames: Record<string, DiagnosticName> = {
  logs: "logs",
  "disk-usage": "disk_usage",
  mounts: "mounts",
  ping: "ping",
  connect: "tcp_connect",
  connections: "connections",
  traceroute: "traceroute",
};

const caseNames: Record<NonNullable<Diagnostic["kind"]["case"]>, DiagnosticName> = {
  logs: "logs",
  diskUsage: "disk_usage",
  mounts: "mounts",
  ping: "ping",
  tcpConnect: "tcp_connect",
  connections: "connections",
  traceroute: "traceroute",
};

/** The proto field name of a diagnostic's oneof case (e.g. "diskUsage" → "disk_usage"). */
export function diagnosticName(kind: NonNullable<Diagnostic["kind"]["case"]>): DiagnosticName {
  return caseNames[kind];
}

/**
 * Normalizes one allow-list entry: a flag name ("disk-usage", "connect"), a proto field name
 * ("disk_usage", "tcp_connect") or a oneof case ("diskUsage"). Throws on anything else.
 */
export function normalizeDiagnosticName(name: string): DiagnosticName {
  const trimmed = name.trim();
  if ((diagnosticNames as readonly string[]).includes(trimmed)) return trimmed as DiagnosticName;
  const byFlag = allowFlagNames[trimmed];
  if (byFlag && Object.hasOwn(allowFlagNames, trimmed)) return byFlag;
  if (Object.hasOwn(caseNames, trimmed)) return caseNames[trimmed as keyof typeof caseNames];
  throw new DiagnosticError(`unknown diagnostic "${printable(name)}": expected one of ${Object.keys(allowFlagNames).join(", ")}`);
}

/** Parses `--allow ping,connect,…` (repeatable, comma separated) into proto field names. */
export function parseAllow(values: string[]): DiagnosticName[] {
  const names = new Set<DiagnosticName>();
  for (const value of values) {
    for (const part of value.split(",")) {
      if (part.trim() === "") continue;
      names.add(normalizeDiagnosticName(part));
    }
  }
  return [...names];
}

// ---- Single arguments ----

/** Shows a refused value safely in a message: control characters escaped, long values cut. */
function printable(value: string): string {
  const escaped = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return escaped.slice(1, -1);
}

const hostnameLabel = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A host name (RFC 1123) or an IPv4 / IPv6 address (no zone). Returns it without a trailing dot. */
export function validateHost(host: string, field = "host"): string {
  if (typeof host !== "string" || host === "") throw new DiagnosticError(`${field} is required: a host name or an IP address`);
  if (isIP(host) !== 0) {
    // No zone ids ("fe80::1%eth0") or anything else isIP tolerates: digits, hex, ':' and '.' only.
    if (!/^[0-9A-Fa-f:.]+$/.test(host)) throw new DiagnosticError(`${field} "${printable(host)}" is not a plain IP address`);
    return host;
  }
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253)
    throw new DiagnosticError(`${field} "${printable(host)}" is not a valid host name (1 to 253 characters)`);
  const labels = name.split(".");
  if (!labels.every((label) => hostnameLabel.test(label))) {
    throw new DiagnosticError(
      `${field} "${printable(host)}" is not a valid host name or IP address (labels of letters, digits and '-', not starting or ending with '-')`,
    );
  }
  // An all-numeric dotted name that isIP refused (e.g. 999.1.1.1) is not a host name either.
  if (/^[0-9.]+$/.test(name)) throw new DiagnosticError(`${field} "${printable(host)}" is not a valid IP address`);
  return name;
}

/** A TCP port, 1 to 65535. */
export function validatePort(port: number, field = "port"): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new DiagnosticError(`${field} must be 1 to 65535, got ${String(port)}`);
  return port;
}

/** An absolute, normalized path: no ".." segments, no NUL or control characters, at most 4096 bytes. */
export function validatePath(path: string, field = "path"): string {
  if (typeof path !== "string" || path === "") throw new DiagnosticError(`${field} is required: an absolute path`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(path)) throw new DiagnosticError(`${field} "${printable(path)}" contains control characters`);
  if (path.startsWith("-")) throw new DiagnosticError(`${field} "${printable(path)}" must not start with '-'`);
  if (!path.startsWith("/")) throw new DiagnosticError(`${field} "${printable(path)}" is not an absolute path`);
  if (Buffer.byteLength(path) > 4096) throw new DiagnosticError(`${field} is longer than 4096 bytes`);
  if (path.split("/").some((segment) => segment === "..")) throw new DiagnosticError(`${field} "${printable(path)}" must not contain ".." segments`);
  const normalized = posix.normalize(path);
  const expected = normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
  const given = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  if (expected !== given) throw new DiagnosticError(`${field} "${printable(path)}" is not normalized (write it as "${printable(expected)}")`);
  return expected;
}

/** An unsigned count within [min, max]; 0 (unset) means the default. */
export function validateCount(value: number, field: string, range: { min: number; max: number; default: number }): number {
  if (value === 0 || value === undefined) return range.default;
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new DiagnosticError(`${field} must be ${range.min} to ${range.max}, got ${String(value)}`);
  }
  return value;
}

const unitSuffixes = ["service", "socket", "target", "timer", "mount", "automount", "swap", "path", "slice", "scope", "device"];

/** A systemd unit name such as "nginx.service" or "getty@tty1.service", or a plain name ("nginx"); empty means all. */
export function validateUnit(unit: string, field = "unit"): string {
  if (unit === "" || unit === undefined) return "";
  if (unit.length > 256) throw new DiagnosticError(`${field} is longer than 256 characters`);
  if (!/^[A-Za-z0-9@._:-]+$/.test(unit)) throw new DiagnosticError(`${field} "${printable(unit)}" may hold only letters, digits and @ . _ : -`);
  if (unit.startsWith("-") || unit.startsWith("."))
    throw new DiagnosticError(`${field} "${printable(unit)}" must start with a letter, a digit, @, _ or :`);
  if (unit.includes("..")) throw new DiagnosticError(`${field} "${printable(unit)}" must not contain ".."`);
  const dot = unit.lastIndexOf(".");
  if (dot >= 0 && !unitSuffixes.includes(unit.slice(dot + 1))) {
    throw new DiagnosticError(`${field} "${printable(unit)}" must end in .${unitSuffixes.join(", .")} or have no suffix`);
  }
  return unit;
}

/** Syslog priority (0 emergency … 7 debug) of a Severity; unspecified means info. */
export function validateSeverity(severity: Severity, field = "min_severity"): number {
  if (severity === Severity.UNSPECIFIED || severity === undefined) return 6;
  if (!Number.isInteger(severity) || severity < Severity.EMERGENCY || severity > Severity.DEBUG) {
    throw new DiagnosticError(`${field} must be one of the Severity values, got ${String(severity)}`);
  }
  return severity - 1;
}

// ---- Whole diagnostics ----

export type ValidDiagnostic =
  | { kind: "logs"; priority: number; sinceMs: number; limit: number; unit: string }
  | { kind: "disk_usage"; path: string; top: number }
  | { kind: "mounts" }
  | { kind: "ping"; host: string; count: number }
  | { kind: "tcp_connect"; host: string; port: number; timeoutMs: number }
  | { kind: "connections"; listening: boolean; established: boolean }
  | { kind: "traceroute"; host: string; maxHops: number };

interface SecondsNanos {
  seconds: bigint;
  nanos: number;
}

function millis(value: SecondsNanos): number {
  return Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
}

/**
 * Checks every argument of a diagnostic and fills in the proto's defaults. Throws a
 * DiagnosticError naming the first bad argument. `now` is for tests.
 */
export function validateDiagnostic(diagnostic: Diagnostic | undefined, now = Date.now()): ValidDiagnostic {
  const kind = diagnostic?.kind;
  if (!kind || kind.case === undefined) throw new DiagnosticError("no diagnostic given: set one of " + diagnosticNames.join(", "));
  switch (kind.case) {
    case "logs": {
      const v = kind.value;
      let sinceMs = now - 3_600_000;
      if (v.since) {
        sinceMs = millis(v.since);
        if (!Number.isFinite(sinceMs) || sinceMs < 0 || sinceMs > now + 86_400_000 || v.since.nanos < 0 || v.since.nanos > 999_999_999) {
          throw new DiagnosticError("since must be a time between 1970 and tomorrow");
        }
      }
      return {
        kind: "logs",
        priority: validateSeverity(v.minSeverity),
        sinceMs,
        limit: validateCount(v.limit, "limit", { min: 1, max: 10_000, default: 200 }),
        unit: validateUnit(v.unit),
      };
    }
    case "diskUsage":
      return {
        kind: "disk_usage",
        path: validatePath(kind.value.path),
        top: validateCount(kind.value.top, "top", { min: 1, max: 1_000, default: 20 }),
      };
    case "mounts":
      return { kind: "mounts" };
    case "ping":
      return {
        kind: "ping",
        host: validateHost(kind.value.host),
        count: validateCount(kind.value.count, "count", { min: 1, max: 20, default: 4 }),
      };
    case "tcpConnect": {
      const v = kind.value;
      let timeoutMs = 5_000;
      if (v.timeout) {
        timeoutMs = millis(v.timeout);
        if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > 60_000 || v.timeout.nanos < 0) {
          throw new DiagnosticError("timeout must be more than 0 and at most 60 s");
        }
      }
      return { kind: "tcp_connect", host: validateHost(v.host), port: validatePort(v.port), timeoutMs };
    }
    case "connections": {
      const { listening, established } = kind.value;
      // Neither asked for: both.
      return listening || established ? { kind: "connections", listening, established } : { kind: "connections", listening: true, established: true };
    }
    case "traceroute":
      return {
        kind: "traceroute",
        host: validateHost(kind.value.host),
        maxHops: validateCount(kind.value.maxHops, "max_hops", { min: 1, max: 64, default: 30 }),
      };
    default: {
      const unknown: never = kind;
      throw new DiagnosticError(`unknown diagnostic ${String((unknown as { case: unknown }).case)}`);
    }
  }
}
