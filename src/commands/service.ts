import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  API as CommandsAPI,
  CommandSchema,
  DiagnosticSchema,
  KeepaliveSchema,
  OutputSchema,
  State,
  type Command,
  type Output,
  StreamResponseSchema,
  type StreamResponse,
} from "../../gen/commands/commands_pb.js";
import { activeAgentId, agentIdsWithLabels } from "../fleet/inventory.js";
import type { Db } from "../storage/database.js";
import { isUuid } from "../storage/ids.js";
import { audited } from "../audit/declare.js";
import { callerOf, rules } from "../tokens/access.js";
import { connectedAgents, registerStream, unregisterStream } from "./agent-streams.js";
import type { CommandRow, CommandState } from "./commands.table.js";
import { revokedError, type CommandHub } from "./hub.js";
import * as queue from "./queue.js";
import { capText, commandLimits, validateAllow, validateDiagnostic, validateTiming } from "./validate.js";

export interface CommandsDeps {
  db: Db;
  hub: CommandHub;
  /** Aborted when the daemon begins to stop: streams end with Unavailable. */
  shutdown: AbortSignal;
}

/** Who may call commands.API: agents hold the streams and report; admins command; viewers look. */
export const commandsAccess = rules(CommandsAPI, {
  stream: ["agent"],
  report: ["agent"],
  submit: ["admin"],
  get: ["viewer", "admin"],
  watch: ["viewer", "admin"],
  cancel: ["admin"],
});

/** The writes of commands.API, audited (Report is the agent's answer to a command, kept with it). */
export const commandsAudit = audited(CommandsAPI, { submit: {}, cancel: {} });

export const stateNames: Record<CommandState, State> = {
  queued: State.QUEUED,
  delivered: State.DELIVERED,
  running: State.RUNNING,
  succeeded: State.SUCCEEDED,
  failed: State.FAILED,
  timed_out: State.TIMED_OUT,
  expired: State.EXPIRED,
  cancelled: State.CANCELLED,
};
const reportable: Partial<Record<State, queue.Report["state"]>> = {
  [State.RUNNING]: "running",
  [State.SUCCEEDED]: "succeeded",
  [State.FAILED]: "failed",
  [State.TIMED_OUT]: "timed_out",
};

/** A stored row as a commands.Command. */
export function toCommand(row: CommandRow): Command {
  return create(CommandSchema, {
    id: row.id,
    agentId: row.agent_id,
    diagnostic: fromJson(DiagnosticSchema, row.diagnostic as JsonValue, { ignoreUnknownFields: true }),
    timeout: durationFromMs(row.timeout_ms),
    state: stateNames[row.state],
    created: timestampFromDate(row.created),
    deadline: timestampFromDate(row.deadline),
    updated: timestampFromDate(row.updated),
    ...(row.output != null ? { output: fromJson(OutputSchema, row.output as JsonValue, { ignoreUnknownFields: true }) } : {}),
  });
}

function checkCommandId(id: string): string {
  const trimmed = id.trim();
  if (!isUuid(trimmed)) throw new ConnectError(`command id ${JSON.stringify(id.slice(0, 100))} is not a UUID`, Code.InvalidArgument);
  return trimmed.toLowerCase();
}

function agentOf(ctx: HandlerContext): string {
  const agentId = callerOf(ctx).agentId;
  if (!agentId) throw new ConnectError("this call needs an agent credential", Code.PermissionDenied);
  return agentId;
}

/** Caps an agent's output at the contract's limits; anything cut sets `truncated`. */
export function capOutput(output: Output | undefined): Output {
  const out = create(OutputSchema, { truncated: output?.truncated ?? false });
  if (!output) return out;
  const text = capText(output.text, commandLimits.maxOutputBytes);
  out.text = text.text;
  const error = capText(output.error, commandLimits.maxErrorBytes);
  out.error = error.text;
  let dataCut = false;
  if (output.data) {
    const json = JSON.stringify(toJson(OutputSchema, create(OutputSchema, { data: output.data })));
    if (Buffer.byteLength(json) > commandLimits.maxOutputBytes) dataCut = true;
    else out.data = output.data;
  }
  out.truncated = out.truncated || text.cut || error.cut || dataCut;
  return out;
}

/** commands.API: agent streams, results and the command queue (queue.ts). */
export function commandsService(deps: CommandsDeps): ServiceImpl<typeof CommandsAPI> {
  const { db, hub, shutdown } = deps;

  /** What ends a stream's or watch's wait, given its cause `err`: the error to end with, or undefined when the client left. */
  const streamEnd = (err: unknown, ctx: HandlerContext, ended?: AbortSignal): unknown => {
    if (shutdown.aborted) return new ConnectError("the daemon is shutting down; reconnect to another one", Code.Unavailable);
    if (ended?.aborted) return ConnectError.from(ended.reason);
    if (ctx.signal.aborted) return undefined; // the client left
    return err;
  };

  return {
    async *stream(req, ctx): AsyncGenerator<StreamResponse> {
      const agentId = agentOf(ctx);
      const allow = validateAllow(req.allow);
      const local = hub.openStream(agentId, callerOf(ctx).tokenId);
      const signal = AbortSignal.any([ctx.signal, shutdown, local.ended]);
      try {
        // Only while the credential is valid: a revocation that came before openStream (and
        // after the credential was verified) sent a note that found no stream to end.
        if (!(await registerStream(db, { agentId, streamId: local.streamId, daemonId: hub.daemonId, tokenId: local.tokenId }))) throw revokedError();
        local.registered = true;
        // At once: tells the agent (and proxies) that the stream is up.
        // lastSent before each yield: an answering() while the message is out must see it sent.
        local.lastSent = Date.now();
        yield keepalive();
        // Whether commands may be waiting: at first, and whenever the waker was woken (not hurried, not timed out).
        let look = true;
        for (;;) {
          signal.throwIfAborted();
          if (look) {
            const taken = await queue.take(db, agentId, allow);
            for (const row of taken) {
              if (row.state !== "delivered") continue; // refused by the allow-list: failed already
              local.lastSent = Date.now();
              yield create(StreamResponseSchema, { event: { case: "command", value: toCommand(row) } });
            }
            if (taken.length === queue.takeLimit) continue;
          }
          const idle = hub.tuning.keepaliveMs - (Date.now() - local.lastSent);
          if (idle <= 0 || local.keepaliveNow) {
            local.keepaliveNow = false;
            local.lastSent = Date.now();
            yield keepalive();
            look = false;
            continue;
          }
          look = await local.waker.wait(idle, signal);
        }
      } catch (err) {
        const end = streamEnd(err, ctx, local.ended);
        if (end !== undefined) throw end;
      } finally {
        hub.closeStream(local);
        await unregisterStream(db, agentId, local.streamId).catch(() => undefined);
      }
    },

    async report(req, ctx) {
      const agentId = agentOf(ctx);
      const id = checkCommandId(req.commandId);
      const state = reportable[req.state];
      if (!state) throw new ConnectError("state must be STATE_RUNNING, STATE_SUCCEEDED, STATE_FAILED or STATE_TIMED_OUT", Code.InvalidArgument);
      const output = state === "running" ? undefined : JSON.stringify(toJson(OutputSchema, capOutput(req.output)));
      const outcome = await queue.report(db, { agentId, commandId: id, state, output });
      if ("recorded" in outcome) return {};
      switch (outcome.refused) {
        case "unknown":
          throw new ConnectError(`no command ${id} for this agent`, Code.NotFound);
        case "ended":
          throw new ConnectError(`command ${id} has already ended (${outcome.state})`, Code.FailedPrecondition);
        case "queued":
          throw new ConnectError(`command ${id} has not been delivered yet`, Code.FailedPrecondition);
      }
    },

    async submit(req) {
      const kind = validateDiagnostic(req.diagnostic);
      const { timeoutMs, ttlMs } = validateTiming(req.timeout, req.ttl);
      const target = req.target;
      let agentIds: string[];
      if (target.case === "agent") {
        const name = target.value.trim();
        if (name === "") throw new ConnectError("target agent is empty: give an agent id or a hostname", Code.InvalidArgument);
        // A hostname names at most one active agent (a unique index): never more than one row.
        const id = await activeAgentId(db, isUuid(name) ? { id: name.toLowerCase() } : { hostname: name });
        if (!id) throw new ConnectError(`no agent ${JSON.stringify(name.slice(0, 255))} in the inventory`, Code.NotFound);
        agentIds = [id];
      } else if (target.case === "selector") {
        const labels = target.value.labels;
        if (Object.keys(labels).length === 0) throw new ConnectError("selector has no labels: give at least one", Code.InvalidArgument);
        agentIds = await agentIdsWithLabels(db, labels);
        if (agentIds.length === 0) throw new ConnectError(`no agent matches the selector ${JSON.stringify(labels)}`, Code.NotFound);
      } else {
        throw new ConnectError("target is missing: give an agent (id or hostname) or a selector", Code.InvalidArgument);
      }

      const diagnostic = JSON.stringify(toJson(DiagnosticSchema, req.diagnostic!));
      const created = await queue.submit(db, { agentIds, kind, diagnostic, timeoutMs, ttlMs });
      const connected = await connectedAgents(db, agentIds);
      return { commands: created.map((c) => ({ commandId: c.id, agentId: c.agent_id, agentOnline: connected.has(c.agent_id) })) };
    },

    async get(req) {
      const id = checkCommandId(req.commandId);
      const row = await queue.get(db, id);
      if (!row) throw new ConnectError(`no command ${id}`, Code.NotFound);
      return { command: toCommand(row) };
    },

    async *watch(req, ctx) {
      const id = checkCommandId(req.commandId);
      const watcher = hub.watch(id);
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      try {
        let last = "";
        for (;;) {
          const row = await queue.get(db, id);
          if (!row) throw new ConnectError(`no command ${id}`, Code.NotFound);
          const version = `${row.state}/${row.updated.getTime()}`;
          if (version !== last) {
            last = version;
            yield { command: toCommand(row) };
          }
          if (queue.isEnded(row.state)) return;
          await watcher.waker.wait(hub.tuning.recheckMs, signal);
        }
      } catch (err) {
        const end = streamEnd(err, ctx);
        if (end !== undefined) throw end;
      } finally {
        watcher.close();
      }
    },

    async cancel(req) {
      const id = checkCommandId(req.commandId);
      const row = await queue.cancel(db, id);
      if (!row) throw new ConnectError(`no command ${id}`, Code.NotFound);
      return { command: toCommand(row) };
    },
  };
}

function keepalive(): StreamResponse {
  return create(StreamResponseSchema, { event: { case: "keepalive", value: create(KeepaliveSchema, { time: timestampFromDate(new Date()) }) } });
}
