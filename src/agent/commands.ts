/**
 * The agent's command loop: keeps commands.API/Stream open, runs each command it receives as a
 * diagnostic (a few at once), and reports RUNNING and then the result with Report. Reconnects
 * with backoff and jitter whenever the stream ends or fails; never stops on a bad command.
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { API as CommandsAPI, OutputSchema, State, type Command, type Output } from "../../gen/commands/commands_pb.js";
import type { Logger } from "../shared/log.js";
import { runDiagnostic, type RunDiagnosticOptions } from "./diagnostics/run.js";
import { normalizeDiagnosticName } from "../shared/diagnostics.js";
import { backoffMs } from "./sender.js";

export interface CommandLoopOptions {
  transport: Transport;
  /** Diagnostics this agent accepts (flag or field names); empty: all. */
  allow: string[];
  log: Logger;
  signal: AbortSignal;
  /** Commands run at once; others wait. Default 4. */
  concurrency?: number;
  /** Reconnect backoff; default 1 s doubling to 30 s, with full jitter. */
  backoff?: { initialMs: number; maxMs: number };
  /** Passed to every diagnostic (tests point logs at a file). */
  diagnostics?: Pick<RunDiagnosticOptions, "outputCapBytes" | "logFiles" | "journalctl" | "maxEntries">;
}

const defaultTimeoutMs = 30_000;
const maxTimeoutMs = 10 * 60_000;
/** Ids of recent commands, so that one delivered again after a reconnect is not run twice. */
const rememberedIds = 1_000;

export async function runCommandLoop(options: CommandLoopOptions): Promise<void> {
  const { log, signal } = options;
  // Sent as proto field names ("tcp_connect"); a bad name stops here, not on the daemon.
  const allow = [...new Set(options.allow.map(normalizeDiagnosticName))];
  const client = createClient(CommandsAPI, options.transport);
  const limit = new Semaphore(Math.max(1, options.concurrency ?? 4));
  const backoff = options.backoff ?? { initialMs: 1_000, maxMs: 30_000 };
  const seen = new Set<string>();
  const inFlight = new Set<Promise<void>>();
  let attempt = 0;
  let lastProblem = "";

  while (!signal.aborted) {
    try {
      for await (const event of client.stream({ allow }, { signal })) {
        if (attempt > 0 || lastProblem) log.info({ afterAttempts: attempt }, "command stream connected");
        attempt = 0;
        lastProblem = "";
        if (event.event.case !== "command") continue; // keepalive
        const command = event.event.value;
        if (!command.id) {
          log.warn("command without an id; ignored");
          continue;
        }
        if (seen.has(command.id)) continue;
        seen.add(command.id);
        if (seen.size > rememberedIds) seen.delete(seen.values().next().value!);
        const task = execute(command, client, limit, options, allow).catch((err: unknown) => {
          log.error({ commandId: command.id, err: (err as Error).message }, "command handling failed");
        });
        inFlight.add(task);
        void task.finally(() => inFlight.delete(task));
      }
      if (signal.aborted) break;
      // The daemon ended the stream (it is draining, for example): reconnect soon.
      log.info("command stream ended; reconnecting");
    } catch (err) {
      if (signal.aborted) break;
      const error = ConnectError.from(err);
      const problem = `${Code[error.code]}: ${error.rawMessage}`;
      // Say it once, not on every retry.
      if (problem !== lastProblem) {
        log.warn({ code: Code[error.code], reason: error.rawMessage }, "command stream failed; retrying");
        lastProblem = problem;
      }
    }
    await sleep(backoffMs(attempt, backoff), undefined, { signal }).catch(() => undefined);
    attempt++;
  }
  await Promise.all(inFlight);
}

async function execute(
  command: Command,
  client: Client<typeof CommandsAPI>,
  limit: Semaphore,
  options: CommandLoopOptions,
  allow: string[],
): Promise<void> {
  const { log, signal } = options;
  const release = await limit.acquire(signal);
  if (!release) return; // stopping before it started: the daemon expires it
  try {
    const name = command.diagnostic?.kind.case ?? "none";
    log.info({ commandId: command.id, diagnostic: name }, "running command");
    await report(client, command.id, State.RUNNING, undefined, options);
    let timeoutMs = defaultTimeoutMs;
    if (command.timeout) {
      const ms = Number(command.timeout.seconds) * 1000 + Math.floor(command.timeout.nanos / 1e6);
      if (Number.isFinite(ms) && ms > 0) timeoutMs = Math.min(ms, maxTimeoutMs);
    }
    let result: Awaited<ReturnType<typeof runDiagnostic>>;
    try {
      if (!command.diagnostic) throw new Error("the command holds no diagnostic");
      result = await runDiagnostic(command.diagnostic, { ...options.diagnostics, timeoutMs, signal, allow });
    } catch (err) {
      result = { state: "failed", output: { text: "", truncated: false, error: `the agent could not run this command: ${(err as Error).message}` } };
    }
    const state = result.state === "succeeded" ? State.SUCCEEDED : result.state === "timed_out" ? State.TIMED_OUT : State.FAILED;
    log.info({ commandId: command.id, diagnostic: name, state: result.state, error: result.output.error || undefined }, "command finished");
    await report(client, command.id, state, toOutput(result.output), options, 5);
  } finally {
    release();
  }
}

function toOutput(output: { text: string; data?: JsonObject; truncated: boolean; error: string }): Output {
  return create(OutputSchema, { text: output.text, truncated: output.truncated, error: output.error, ...(output.data ? { data: output.data } : {}) });
}

/** Reports a state; a final one is retried a few times (the result matters), RUNNING is best effort. */
async function report(
  client: Client<typeof CommandsAPI>,
  commandId: string,
  state: State,
  output: Output | undefined,
  options: CommandLoopOptions,
  attempts = 1,
): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      // Not bound to the agent's signal: a result found while stopping is still worth sending.
      await client.report({ commandId, state, ...(output ? { output } : {}) }, { timeoutMs: options.signal.aborted ? 2_000 : 10_000 });
      return;
    } catch (err) {
      const error = ConnectError.from(err);
      const retry = [Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Internal, Code.Unknown].includes(error.code);
      if (!retry || attempt === attempts - 1 || options.signal.aborted) {
        options.log.warn(
          { commandId, state: State[state], code: Code[error.code], reason: error.rawMessage },
          "could not report the command's state",
        );
        return;
      }
      await sleep(backoffMs(attempt, { initialMs: 500, maxMs: 5_000 }), undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}

/** At most `n` holders at once; waiters are served in order. */
class Semaphore {
  private waiting: (() => void)[] = [];
  private active = 0;

  constructor(private readonly n: number) {}

  /** Resolves with a release function, or undefined when the signal aborts first. */
  async acquire(signal: AbortSignal): Promise<(() => void) | undefined> {
    if (signal.aborted) return undefined;
    if (this.active >= this.n) {
      const granted = await new Promise<boolean>((resolve) => {
        const onAbort = () => {
          this.waiting = this.waiting.filter((w) => w !== go);
          resolve(false);
        };
        const go = () => {
          signal.removeEventListener("abort", onAbort);
          resolve(true);
        };
        this.waiting.push(go);
        signal.addEventListener("abort", onAbort, { once: true });
      });
      if (!granted) return undefined;
    } else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter.
      if (next) next();
      else this.active--;
    };
  }
}
