/** ping and traceroute (through the system's programs, no shell) and tcp_connect (node:net). */
import type { JsonObject } from "@bufbuild/protobuf";
import { connect } from "node:net";
import { findProgram, runProgram, type ProgramResult } from "./process.js";
import { capText, failed, remainingMs, succeeded, type DiagnosticResult, type RunContext } from "./result.js";
import type { ValidDiagnostic } from "../../shared/diagnostics.js";

/** What a program run means for the diagnostic when it did not finish normally; undefined when it did. */
function unfinished(name: string, result: ProgramResult, ctx: RunContext, data?: JsonObject): DiagnosticResult | undefined {
  const { text, truncated } = capText(result.stdout, ctx.capBytes);
  if (result.timedOut || (result.aborted && ctx.timedOut())) {
    return {
      state: "timed_out",
      output: { text, ...(data ? { data } : {}), truncated, error: `${name} did not finish within the timeout; stopped` },
    };
  }
  if (result.aborted) return failed(`${name} was stopped: the agent is stopping`, text, data, truncated);
  return undefined;
}

export interface PingSummary extends JsonObject {
  host: string;
  transmitted: number;
  received: number;
  lossPercent: number;
  rttMinMs: number | null;
  rttAvgMs: number | null;
  rttMaxMs: number | null;
}

export function parsePing(host: string, text: string): PingSummary | undefined {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!counts) return undefined;
  const loss = /([\d.]+)% packet loss/.exec(text);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(text);
  const transmitted = Number(counts[1]);
  const received = Number(counts[2]);
  return {
    host,
    transmitted,
    received,
    lossPercent: loss ? Number(loss[1]) : transmitted ? Math.round(((transmitted - received) / transmitted) * 100) : 0,
    rttMinMs: rtt ? Number(rtt[1]) : null,
    rttAvgMs: rtt ? Number(rtt[2]) : null,
    rttMaxMs: rtt ? Number(rtt[3]) : null,
  };
}

export async function runPing(args: Extract<ValidDiagnostic, { kind: "ping" }>, ctx: RunContext): Promise<DiagnosticResult> {
  const ping = await findProgram("ping");
  if (!ping) return failed("ping is not installed");
  const result = await runProgram(ping, ["-n", "-c", String(args.count), "-W", "2", args.host], {
    timeoutMs: remainingMs(ctx),
    capBytes: ctx.capBytes,
    signal: ctx.signal,
  });
  const summary = parsePing(args.host, result.stdout);
  const stopped = unfinished("ping", result, ctx, summary);
  if (stopped) return stopped;
  const { text, truncated } = capText(result.stdout, ctx.capBytes);
  // Cut at the cap: what came so far is the answer, even without the summary.
  if (result.truncated) return succeeded(text, summary, true);
  if (!summary) return failed(result.stderr.trim() || `ping exited with code ${String(result.code)}`, text, undefined, truncated || result.truncated);
  if (summary.received === 0) return failed(`no reply from ${args.host}`, text, summary, truncated || result.truncated);
  return succeeded(text, summary, truncated || result.truncated);
}

export async function runTcpConnect(args: Extract<ValidDiagnostic, { kind: "tcp_connect" }>, ctx: RunContext): Promise<DiagnosticResult> {
  const limitMs = Math.min(args.timeoutMs, remainingMs(ctx));
  const commandTimeoutFirst = args.timeoutMs > remainingMs(ctx);
  const started = performance.now();
  const outcome = await new Promise<{ connected: boolean; address: string | null; family: string | null; error: string; timedOut: boolean }>(
    (resolve) => {
      const socket = connect({ host: args.host, port: args.port });
      let looked: { address: string; family: string } | undefined;
      let done = false;
      const finish = (value: { connected: boolean; address: string | null; family: string | null; error: string; timedOut: boolean }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        ctx.signal.removeEventListener("abort", onAbort);
        socket.destroy();
        resolve(value);
      };
      const addressOf = () => ({ address: socket.remoteAddress ?? null, family: socket.remoteFamily ?? null });
      const timer = setTimeout(
        () => finish({ connected: false, address: null, family: null, error: `no connection within ${limitMs} ms`, timedOut: true }),
        limitMs,
      );
      const onAbort = () => finish({ connected: false, address: null, family: null, error: "stopped", timedOut: false });
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => finish({ connected: true, ...addressOf(), error: "", timedOut: false }));
      socket.once("lookup", (err: Error | null, address: string, family: string | number) => {
        if (!err) looked = { address, family: typeof family === "number" ? `IPv${family}` : family };
      });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        finish({
          connected: false,
          address: looked?.address ?? null,
          family: looked?.family ?? null,
          error: err.code ? `${err.code}: ${err.message}` : err.message,
          timedOut: false,
        });
      });
    },
  );
  const timeMs = Math.round((performance.now() - started) * 100) / 100;
  const data: JsonObject = {
    host: args.host,
    port: args.port,
    connected: outcome.connected,
    timeMs,
    address: outcome.address,
    family: outcome.family,
    error: outcome.error,
  };
  if (outcome.connected) return succeeded(`connected to ${args.host}:${args.port} (${outcome.address ?? "?"}) in ${timeMs} ms\n`, data);
  const text = `cannot connect to ${args.host}:${args.port}: ${outcome.error}\n`;
  if ((outcome.timedOut && commandTimeoutFirst) || (ctx.signal.aborted && ctx.timedOut())) {
    return { state: "timed_out", output: { text, data, truncated: false, error: "the command's timeout ended the connection attempt" } };
  }
  return failed(outcome.error, text, data);
}

export interface Hop extends JsonObject {
  hop: number;
  address: string | null;
  rttMs: number[];
}

/** Parses traceroute -n or tracepath -n output into hops (one entry per hop, first address seen). */
export function parseTraceroute(text: string): Hop[] {
  const hops = new Map<number, Hop>();
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+):?\s+(.*)$/.exec(line);
    if (!m) continue;
    const hop = Number(m[1]);
    const rest = m[2]!;
    const address = /(?:^|\s)((?:\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F]*:[0-9a-fA-F:]+)(?=\s|$)/.exec(rest)?.[1] ?? null;
    const rttMs = [...rest.matchAll(/([\d.]+)\s?ms/g)].map((r) => Number(r[1]));
    const known = hops.get(hop);
    if (known) {
      known.address ??= address;
      known.rttMs.push(...rttMs);
    } else hops.set(hop, { hop, address, rttMs });
  }
  return [...hops.values()];
}

export async function runTraceroute(args: Extract<ValidDiagnostic, { kind: "traceroute" }>, ctx: RunContext): Promise<DiagnosticResult> {
  const traceroute = await findProgram("traceroute");
  let program: string;
  let argv: string[];
  let name: string;
  if (traceroute) {
    program = traceroute;
    name = "traceroute";
    argv = ["-n", "-m", String(args.maxHops), "-w", "2", args.host];
  } else {
    const tracepath = await findProgram("tracepath");
    if (!tracepath) return failed("traceroute is not installed (neither traceroute nor tracepath was found)");
    program = tracepath;
    name = "tracepath";
    argv = ["-n", "-m", String(args.maxHops), args.host];
  }
  const result = await runProgram(program, argv, { timeoutMs: remainingMs(ctx), capBytes: ctx.capBytes, signal: ctx.signal });
  const data: JsonObject = { host: args.host, program: name, hops: parseTraceroute(result.stdout) };
  const stopped = unfinished(name, result, ctx, data);
  if (stopped) return stopped;
  const { text, truncated } = capText(result.stdout, ctx.capBytes);
  if (result.code !== 0 && !result.truncated)
    return failed(result.stderr.trim() || `${name} exited with code ${String(result.code)}`, text, data, truncated);
  return succeeded(text, data, truncated || result.truncated);
}
