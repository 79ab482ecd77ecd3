/**
 * Runs one diagnostic on this host: arguments validated first (nothing runs when one is bad),
 * programs through spawn with an argument array (never a shell), a timeout that kills the
 * program's process group, and an output cap.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { Diagnostic } from "../../../gen/commands/commands_pb.js";
import { runDiskUsage } from "./disk-usage.js";
import { runLogs } from "./logs.js";
import { runPing, runTcpConnect, runTraceroute } from "./network.js";
import { capText, failed, UnsupportedError, type DiagnosticResult, type RunContext } from "./result.js";
import { runConnections, runMounts } from "./system.js";
import { DiagnosticError, diagnosticName, normalizeDiagnosticName, validateDiagnostic, type ValidDiagnostic } from "../../shared/diagnostics.js";

export { DiagnosticError } from "../../shared/diagnostics.js";
export type { DiagnosticResult, DiagnosticOutput, DiagnosticState } from "./result.js";

export const defaultOutputCapBytes = 2 ** 20;
/** How long past its timeout a diagnostic may take to wind down before it is abandoned. */
const graceMs = 2_000;

export interface RunDiagnosticOptions {
  timeoutMs: number;
  /** Most bytes of output text (and of structured data, roughly); default 1 MiB. */
  outputCapBytes?: number;
  /** Aborting stops the diagnostic (the agent is stopping): state failed. */
  signal?: AbortSignal;
  /** Diagnostics this agent accepts (flag, field or case names); empty or unset: all. */
  allow?: string[];
  /** Syslog files to read when the journal is unavailable; default /var/log/syslog, /var/log/messages. */
  logFiles?: string[];
  /** journalctl to use (a path), or false to skip the journal; default: looked up in PATH. */
  journalctl?: string | false;
  /** Most directory entries disk_usage looks at; default 2,000,000. */
  maxEntries?: number;
}

export async function runDiagnostic(
  diagnostic: Diagnostic,
  options: RunDiagnosticOptions,
): Promise<{ state: "succeeded" | "failed" | "timed_out"; output: { text: string; data?: JsonObject; truncated: boolean; error: string } }> {
  const kind = diagnostic.kind.case;
  if (kind === undefined) return failed("no diagnostic given");
  const name = diagnosticName(kind);
  if (options.allow && options.allow.length > 0) {
    let allowed: string[];
    try {
      allowed = options.allow.map(normalizeDiagnosticName);
    } catch (err) {
      return failed((err as Error).message);
    }
    if (!allowed.includes(name)) return failed(`diagnostic ${name} is not allowed on this agent (--allow ${options.allow.join(",")})`);
  }
  let args: ValidDiagnostic;
  try {
    args = validateDiagnostic(diagnostic);
  } catch (err) {
    if (err instanceof DiagnosticError) return failed(`invalid ${name} arguments: ${err.message}`);
    throw err;
  }
  const timeoutMs = Number.isFinite(options.timeoutMs) && options.timeoutMs > 0 ? options.timeoutMs : 30_000;
  const capBytes = options.outputCapBytes ?? defaultOutputCapBytes;
  if (options.signal?.aborted) return failed("stopped before it started: the agent is stopping");

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onStop = () => controller.abort();
  options.signal?.addEventListener("abort", onStop, { once: true });
  const ctx: RunContext = {
    signal: controller.signal,
    deadline: Date.now() + timeoutMs,
    capBytes,
    timedOut: () => timedOut,
    ...(options.logFiles ? { logFiles: options.logFiles } : {}),
    ...(options.journalctl !== undefined ? { journalctl: options.journalctl } : {}),
    ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
  };
  let abandon: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      dispatch(args, ctx),
      // Something that ignores the signal (a hung filesystem call) cannot hold the command.
      new Promise<DiagnosticResult>((resolve) => {
        abandon = setTimeout(
          () => resolve({ state: "timed_out", output: { text: "", truncated: false, error: `${name} did not finish within ${timeoutMs} ms` } }),
          timeoutMs + graceMs,
        );
      }),
    ]);
    return finish(result, name, timeoutMs, timedOut, options.signal, capBytes);
  } catch (err) {
    if (err instanceof UnsupportedError) return failed(err.message);
    const code = (err as NodeJS.ErrnoException).code;
    return failed(`${name} failed: ${(err as Error).message}${code && !(err as Error).message.includes(code) ? ` (${code})` : ""}`);
  } finally {
    clearTimeout(timer);
    clearTimeout(abandon);
    options.signal?.removeEventListener("abort", onStop);
  }
}

function finish(
  result: DiagnosticResult,
  name: string,
  timeoutMs: number,
  timedOut: boolean,
  stop: AbortSignal | undefined,
  capBytes: number,
): DiagnosticResult {
  const { text, truncated } = capText(result.output.text, capBytes);
  const output = { ...result.output, text, truncated: result.output.truncated || truncated };
  if (result.state !== "timed_out" && timedOut) {
    return { state: "timed_out", output: { ...output, error: `${name} did not finish within ${timeoutMs} ms; the output is partial` } };
  }
  if (result.state === "succeeded" && stop?.aborted)
    return { state: "failed", output: { ...output, error: "stopped: the agent is stopping; the output is partial" } };
  if (result.state === "timed_out" && !output.error) output.error = `${name} did not finish within ${timeoutMs} ms`;
  return { state: result.state, output };
}

function dispatch(args: ValidDiagnostic, ctx: RunContext): Promise<DiagnosticResult> {
  switch (args.kind) {
    case "logs":
      return runLogs(args, ctx);
    case "disk_usage":
      return runDiskUsage(args, ctx);
    case "mounts":
      return runMounts(ctx);
    case "ping":
      return runPing(args, ctx);
    case "tcp_connect":
      return runTcpConnect(args, ctx);
    case "connections":
      return runConnections(args, ctx);
    case "traceroute":
      return runTraceroute(args, ctx);
  }
}
