import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Command as Commander } from "commander";
import {
  API as CommandsAPI,
  CommandSchema,
  DiagnosticSchema,
  Severity,
  State,
  SubmitRequestSchema,
  type Command,
  type Diagnostic,
  type SubmitRequest,
} from "../../gen/commands/commands_pb.js";
import { parseDuration } from "../shared/duration.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags, type Connection } from "./client.js";

interface RunFlags extends ClientFlags {
  timeout?: string;
  ttl?: string;
  json?: boolean;
}

const usage = `DIAGNOSTIC is one of:
  logs [--severity LEVEL] [--since 1h] [--limit N] [--unit NAME]
  disk-usage PATH [--top N]
  mounts
  ping HOST [--count N]
  connect HOST:PORT [--connect-timeout 5s]
  connections [--listening] [--established]
  traceroute HOST [--max-hops N]
TARGET is an agent id, a hostname, or label:k=v[,k2=v2].`;

/** `specta run`: submits one diagnostic (commands.API/Submit), watches it to its end, prints the result. */
export function runCommand(program: Commander): void {
  addClientOptions(
    program
      .command("run")
      .description("run a diagnostic on one agent or on every agent matching labels, wait and print the result")
      .usage("TARGET DIAGNOSTIC [ARGS…] [--timeout 30s] [--ttl 5m] [--json]")
      .argument("<target>", "agent id, hostname, or label:k=v[,k2=v2]")
      .argument("<diagnostic>", "logs, disk-usage, mounts, ping, connect, connections or traceroute")
      .argument("[args...]", "the diagnostic's arguments")
      .option("--timeout <duration>", "how long the agent may run it (default 30s, at most 10m)")
      .option("--ttl <duration>", "how long it may wait for an agent that is away (default 5m, at most 24h)")
      .option("--json", "print each finished Command as JSON")
      .allowUnknownOption()
      .addHelpText("after", `\n${usage}`),
  ).action((target: string, diagnostic: string, args: string[], flags: RunFlags) =>
    runClient(flags, async (connection) => {
      const request = buildSubmit(target, diagnostic, args, flags);
      const ok = await submitAndWatch(connection, request, flags.json ?? false);
      process.exit(ok ? 0 : 1);
    }),
  );
}

function durationFlag(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new ClientError(`${name} "${text}" is not a duration such as 30s, 5m or 1h`);
  return ms;
}

/** Splits `args` into positionals and `--name value` / `--flag` options (only those in `flags` take no value). */
function splitArgs(args: string[], boolFlags: string[], valueFlags: string[]): { positionals: string[]; options: Map<string, string> } {
  const positionals: string[] = [];
  const options = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (boolFlags.includes(name)) {
      options.set(name, "true");
    } else if (valueFlags.includes(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined) throw new ClientError(`--${name} needs a value`);
      options.set(name, value);
    } else {
      throw new ClientError(`unknown option --${name} for this diagnostic\n${usage}`);
    }
  }
  return { positionals, options };
}

function count(text: string | undefined, name: string): number {
  if (text === undefined) return 0;
  if (!/^\d+$/.test(text)) throw new ClientError(`--${name} "${text}" is not a whole number`);
  return Number(text);
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new ClientError(`expected one ${what}, got ${positionals.length === 0 ? "none" : positionals.join(" ")}`);
  return positionals[0]!;
}

const severities: Record<string, Severity> = {
  emerg: Severity.EMERGENCY,
  emergency: Severity.EMERGENCY,
  alert: Severity.ALERT,
  crit: Severity.CRITICAL,
  critical: Severity.CRITICAL,
  err: Severity.ERROR,
  error: Severity.ERROR,
  warn: Severity.WARNING,
  warning: Severity.WARNING,
  notice: Severity.NOTICE,
  info: Severity.INFO,
  debug: Severity.DEBUG,
};

/** The Diagnostic for `specta run … DIAGNOSTIC ARGS…`; ClientError says what is wrong. */
export function parseDiagnostic(name: string, args: string[], nowMs: number = Date.now()): Diagnostic {
  const d = (kind: NonNullable<MessageInitShape<typeof DiagnosticSchema>["kind"]>) => create(DiagnosticSchema, { kind });
  switch (name) {
    case "logs": {
      const { positionals, options } = splitArgs(args, [], ["severity", "since", "limit", "unit"]);
      if (positionals.length > 0) throw new ClientError(`logs takes no positional arguments, got ${positionals.join(" ")}`);
      const severityName = options.get("severity");
      const minSeverity = severityName === undefined ? Severity.UNSPECIFIED : severities[severityName.toLowerCase()];
      if (minSeverity === undefined) throw new ClientError(`--severity "${severityName}" is not one of ${Object.keys(severities).join(", ")}`);
      const sinceText = options.get("since");
      let since;
      if (sinceText !== undefined) {
        const ago = parseDuration(sinceText);
        const at = ago !== undefined ? nowMs - ago : Date.parse(sinceText);
        if (!Number.isFinite(at)) throw new ClientError(`--since "${sinceText}" is neither a duration (1h) nor a time (2026-11-22T08:00:00Z)`);
        since = timestampFromMs(at);
      }
      return d({
        case: "logs",
        value: { minSeverity, limit: count(options.get("limit"), "limit"), unit: options.get("unit") ?? "", ...(since ? { since } : {}) },
      });
    }
    case "disk-usage": {
      const { positionals, options } = splitArgs(args, [], ["top"]);
      return d({ case: "diskUsage", value: { path: one(positionals, "PATH"), top: count(options.get("top"), "top") } });
    }
    case "mounts":
      splitArgs(args, [], []).positionals.length === 0 || throwExtra("mounts");
      return d({ case: "mounts", value: {} });
    case "ping": {
      const { positionals, options } = splitArgs(args, [], ["count"]);
      return d({ case: "ping", value: { host: one(positionals, "HOST"), count: count(options.get("count"), "count") } });
    }
    case "connect": {
      const { positionals, options } = splitArgs(args, [], ["connect-timeout"]);
      const address = one(positionals, "HOST:PORT");
      const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
      if (!m) throw new ClientError(`"${address}" is not HOST:PORT (IPv6: [::1]:5432)`);
      const timeoutMs = durationFlag(options.get("connect-timeout"), "--connect-timeout");
      return d({
        case: "tcpConnect",
        value: { host: m[1]!, port: Number(m[2]), ...(timeoutMs ? { timeout: durationFromMs(timeoutMs) } : {}) },
      });
    }
    case "connections": {
      const { positionals, options } = splitArgs(args, ["listening", "established"], []);
      if (positionals.length > 0) throwExtra("connections");
      const listening = options.has("listening");
      const established = options.has("established");
      return d({ case: "connections", value: listening || established ? { listening, established } : { listening: true, established: true } });
    }
    case "traceroute": {
      const { positionals, options } = splitArgs(args, [], ["max-hops"]);
      return d({ case: "traceroute", value: { host: one(positionals, "HOST"), maxHops: count(options.get("max-hops"), "max-hops") } });
    }
    default:
      throw new ClientError(`unknown diagnostic "${name}"\n${usage}`);
  }
}

function throwExtra(name: string): never {
  throw new ClientError(`${name} takes no arguments`);
}

/** The SubmitRequest for a target, a diagnostic and its arguments. */
export function buildSubmit(target: string, diagnostic: string, args: string[], flags: Pick<RunFlags, "timeout" | "ttl"> = {}): SubmitRequest {
  const timeoutMs = durationFlag(flags.timeout, "--timeout");
  const ttlMs = durationFlag(flags.ttl, "--ttl");
  let targetField: MessageInitShape<typeof SubmitRequestSchema>["target"];
  if (target.startsWith("label:")) {
    const labels: Record<string, string> = {};
    for (const pair of target.slice("label:".length).split(",")) {
      const at = pair.indexOf("=");
      if (at <= 0) throw new ClientError(`"${pair}" in ${target} is not key=value`);
      labels[pair.slice(0, at)] = pair.slice(at + 1);
    }
    targetField = { case: "selector", value: { labels } };
  } else {
    if (target === "") throw new ClientError("TARGET is empty");
    targetField = { case: "agent", value: target };
  }
  return create(SubmitRequestSchema, {
    target: targetField,
    diagnostic: parseDiagnostic(diagnostic, args),
    ...(timeoutMs ? { timeout: durationFromMs(timeoutMs) } : {}),
    ...(ttlMs ? { ttl: durationFromMs(ttlMs) } : {}),
  });
}

const stateNames: Record<State, string> = {
  [State.UNSPECIFIED]: "unknown",
  [State.QUEUED]: "queued",
  [State.DELIVERED]: "delivered",
  [State.RUNNING]: "running",
  [State.SUCCEEDED]: "succeeded",
  [State.FAILED]: "failed",
  [State.TIMED_OUT]: "timed out",
  [State.EXPIRED]: "expired",
  [State.CANCELLED]: "cancelled",
};
const ended = new Set([State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.EXPIRED, State.CANCELLED]);

/** Submits, watches every command to its end and prints it; true when all succeeded. */
export async function submitAndWatch(connection: Connection, request: SubmitRequest, json: boolean): Promise<boolean> {
  const client = daemonClient(CommandsAPI, connection);
  const { commands } = await client.submit(request);
  const several = commands.length > 1;
  for (const c of commands) {
    if (!c.agentOnline) process.stderr.write(`specta: agent ${c.agentId} is not connected now; the command waits for it until its ttl\n`);
  }
  const results = await Promise.all(
    commands.map(async (c) => {
      let last: Command | undefined;
      for await (const r of client.watch({ commandId: c.commandId })) {
        last = r.command;
        if (last && ended.has(last.state)) break;
      }
      return last;
    }),
  );
  let ok = true;
  for (const command of results) {
    if (!command) {
      ok = false;
      continue;
    }
    ok &&= command.state === State.SUCCEEDED;
    if (json) {
      process.stdout.write(JSON.stringify(toJson(CommandSchema, command)) + "\n");
      continue;
    }
    if (several) process.stdout.write(`== agent ${command.agentId}: ${stateNames[command.state]}\n`);
    const text = command.output?.text ?? "";
    if (text) process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
    else if (command.state === State.SUCCEEDED) process.stderr.write(`specta: ${nothingToShow(command)}\n`);
    if (command.output?.truncated) process.stderr.write("specta: the output was cut at the output cap\n");
    if (command.state !== State.SUCCEEDED) {
      const why = command.output?.error ? `: ${command.output.error}` : "";
      process.stderr.write(`specta: command ${command.id} ${stateNames[command.state]}${why}\n`);
    }
  }
  return ok;
}

/** What a command that succeeded without output found, so that an empty answer does not read as a fault. */
export function nothingToShow(command: Command): string {
  const kind = command.diagnostic?.kind;
  if (kind?.case !== "logs") return `${command.diagnostic?.kind.case ?? "the command"} succeeded with no output`;
  const logs = kind.value;
  const severity = Object.entries(severities)
    .reverse()
    .find(([, s]) => s === logs.minSeverity)?.[0];
  const filters = [
    ...(logs.minSeverity !== Severity.UNSPECIFIED && severity ? [`at ${severity} or above`] : []),
    ...(logs.since ? [`since ${timestampDate(logs.since).toISOString()}`] : []),
    ...(logs.unit ? [`of unit ${logs.unit}`] : []),
  ];
  const source = command.output?.data?.source;
  return `no log entries${filters.length > 0 ? ` ${filters.join(", ")}` : ""}${typeof source === "string" && source ? ` in ${source}` : ""}`;
}
