import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { sql } from "kysely";
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
import { callerOf } from "../server/auth.js";
import { storageStep, toConnectError } from "../storage/errors.js";
import { isUuid } from "../storage/ids.js";
import type { Db } from "../storage/database.js";
import type { AgentsTables } from "../agents/agents.table.js";
import { connectedAgents } from "./agent-streams.js";
import type { CommandRow, CommandState, CommandsTables } from "./commands.table.js";
import { revokedError, type CommandHub } from "./hub.js";
import { commandsChannel } from "./notifier.js";
import { capText, commandLimits, validateAllow, validateDiagnostic, validateTiming } from "./validate.js";

export interface CommandsDeps {
  db: Db;
  hub: CommandHub;
  /** Aborted when the daemon begins to stop: streams end with Unavailable. */
  shutdown: AbortSignal;
}

/** Commands taken from the queue per statement on a stream. */
const takeLimit = 100;

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
const openStates: CommandState[] = ["queued", "delivered", "running"];
const reportable: Partial<Record<State, CommandState>> = {
  [State.RUNNING]: "running",
  [State.SUCCEEDED]: "succeeded",
  [State.FAILED]: "failed",
  [State.TIMED_OUT]: "timed_out",
};

/** Whether a command in `state` has ended. */
export function isEnded(state: CommandState): boolean {
  return !openStates.includes(state);
}

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

/** commands.API: the command queue in PostgreSQL, agent streams, results. */
export function commandsService(deps: CommandsDeps): ServiceImpl<typeof CommandsAPI> {
  const { hub, shutdown } = deps;
  const db = deps.db.withTables<CommandsTables & AgentsTables>();

  const getRow = (id: string) => db.selectFrom("commands").selectAll().where("id", "=", id).executeTakeFirst();

  /** Takes the agent's queued commands, oldest first, marking them delivered (or failed when not allowed) in one statement. */
  const takeQueued = async (agentId: string, allow: string[]): Promise<CommandRow[]> => {
    const allowAll = allow.length === 0;
    const refusal = `this agent does not allow this diagnostic (it allows: ${allow.join(", ")})`;
    const { rows } = await sql<CommandRow>`
      WITH picked AS (
        SELECT id FROM commands
        WHERE agent_id = ${agentId} AND state = 'queued' AND deadline > now()
        ORDER BY created LIMIT ${takeLimit}
        FOR UPDATE SKIP LOCKED
      ), taken AS (
        UPDATE commands c SET
          state = CASE WHEN ${allowAll}::boolean OR c.kind = ANY(${allow}::text[]) THEN 'delivered' ELSE 'failed' END,
          output = CASE WHEN ${allowAll}::boolean OR c.kind = ANY(${allow}::text[]) THEN c.output
                        ELSE jsonb_build_object('error', ${refusal}::text) END,
          delivered = now(),
          updated = now()
        FROM picked WHERE c.id = picked.id
        RETURNING c.*
      )
      SELECT taken.*, pg_notify(${commandsChannel}, 'command:' || taken.id) IS NULL AS notified
      FROM taken ORDER BY created`.execute(db);
    return rows;
  };

  /** Ends a stream's or watch's wait with the code its cause calls for. */
  const streamEnd = (err: unknown, ctx: HandlerContext, ended?: AbortSignal): ConnectError | undefined => {
    if (shutdown.aborted) return new ConnectError("the daemon is shutting down; reconnect to another one", Code.Unavailable);
    if (ended?.aborted) return ConnectError.from(ended.reason);
    if (ctx.signal.aborted) return undefined; // the client left
    return toConnectError(err, "streaming");
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
        const { rows } = await sql`
          WITH up AS (
            INSERT INTO agent_streams (agent_id, stream_id, daemon_id)
            SELECT ${agentId}::uuid, ${local.streamId}::uuid, ${hub.daemonId}::uuid
            WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ${local.tokenId} AND revoked IS NULL)
            ON CONFLICT (agent_id) DO UPDATE SET stream_id = excluded.stream_id, daemon_id = excluded.daemon_id, since = now(), refreshed = now()
            RETURNING agent_id)
          SELECT pg_notify(${commandsChannel}, 'stream:' || agent_id || ':' || ${local.streamId}::text) FROM up`.execute(db);
        if (rows.length === 0) throw revokedError();
        local.registered = true;
        // At once: tells the agent (and proxies) that the stream is up.
        yield keepalive();
        let lastSent = Date.now();
        for (;;) {
          signal.throwIfAborted();
          const taken = await takeQueued(agentId, allow);
          for (const row of taken) {
            if (row.state !== "delivered") continue; // refused by the allow-list: failed already
            yield create(StreamResponseSchema, { event: { case: "command", value: toCommand(row) } });
            lastSent = Date.now();
          }
          if (taken.length === takeLimit) continue;
          const idle = hub.tuning.keepaliveMs - (Date.now() - lastSent);
          if (idle <= 0) {
            yield keepalive();
            lastSent = Date.now();
            continue;
          }
          await local.waker.wait(idle, signal);
        }
      } catch (err) {
        const end = streamEnd(err, ctx, local.ended);
        if (end) throw end;
      } finally {
        hub.closeStream(local);
        await db
          .deleteFrom("agent_streams")
          .where("agent_id", "=", agentId)
          .where("stream_id", "=", local.streamId)
          .execute()
          .catch(() => undefined);
      }
    },

    async report(req, ctx) {
      const agentId = agentOf(ctx);
      const id = checkCommandId(req.commandId);
      const next = reportable[req.state];
      if (!next) throw new ConnectError("state must be STATE_RUNNING, STATE_SUCCEEDED, STATE_FAILED or STATE_TIMED_OUT", Code.InvalidArgument);
      const output = next === "running" ? undefined : capOutput(req.output);
      await storageStep("recording the report", () =>
        db.transaction().execute(async (trx) => {
          const row = await trx
            .selectFrom("commands")
            .select(["state"])
            .where("id", "=", id)
            .where("agent_id", "=", agentId)
            .forUpdate()
            .executeTakeFirst();
          // Another agent's command is as unknown as a missing one.
          if (!row) throw new ConnectError(`no command ${id} for this agent`, Code.NotFound);
          if (isEnded(row.state)) throw new ConnectError(`command ${id} has already ended (${row.state})`, Code.FailedPrecondition);
          if (row.state === "queued") throw new ConnectError(`command ${id} has not been delivered yet`, Code.FailedPrecondition);
          if (next === "running" && row.state === "running") return;
          await trx
            .updateTable("commands")
            .set({ state: next, updated: new Date(), ...(output ? { output: JSON.stringify(toJson(OutputSchema, output)) } : {}) })
            .where("id", "=", id)
            .execute();
          await sql`SELECT pg_notify(${commandsChannel}, ${`command:${id}`})`.execute(trx);
        }),
      );
      return {};
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
        const row = await storageStep("finding the agent", () => {
          const q = db.selectFrom("agents").select("id").where("deregistered", "is", null);
          return (isUuid(name) ? q.where("id", "=", name.toLowerCase()) : q.where("hostname", "=", name)).executeTakeFirst();
        });
        if (!row) throw new ConnectError(`no agent ${JSON.stringify(name.slice(0, 255))} in the inventory`, Code.NotFound);
        agentIds = [row.id];
      } else if (target.case === "selector") {
        const labels = target.value.labels;
        if (Object.keys(labels).length === 0) throw new ConnectError("selector has no labels: give at least one", Code.InvalidArgument);
        const rows = await storageStep("selecting the agents", () =>
          db
            .selectFrom("agents")
            .select("id")
            .where("deregistered", "is", null)
            .where(sql<boolean>`labels @> ${JSON.stringify(labels)}::jsonb`)
            .orderBy("hostname")
            .execute(),
        );
        if (rows.length === 0) throw new ConnectError(`no agent matches the selector ${JSON.stringify(labels)}`, Code.NotFound);
        agentIds = rows.map((r) => r.id);
      } else {
        throw new ConnectError("target is missing: give an agent (id or hostname) or a selector", Code.InvalidArgument);
      }

      const diagnostic = JSON.stringify(toJson(DiagnosticSchema, req.diagnostic!));
      const created = await storageStep("queueing the commands", () =>
        db.transaction().execute(async (trx) => {
          const { rows } = await sql<{ id: string; agent_id: string }>`
            INSERT INTO commands (agent_id, kind, diagnostic, timeout_ms, deadline)
            SELECT a, ${kind}, ${diagnostic}::jsonb, ${timeoutMs}, now() + ${ttlMs} * interval '1 millisecond'
            FROM unnest(${agentIds}::uuid[]) AS a
            RETURNING id, agent_id`.execute(trx);
          // Delivered at commit: wakes the agents' streams on every daemon.
          await sql`SELECT pg_notify(${commandsChannel}, a::text) FROM unnest(${agentIds}::uuid[]) AS a`.execute(trx);
          return rows;
        }),
      );
      const connected = await storageStep("checking which agents are connected", () => connectedAgents(deps.db, agentIds));
      return { commands: created.map((c) => ({ commandId: c.id, agentId: c.agent_id, agentOnline: connected.has(c.agent_id) })) };
    },

    async get(req) {
      const id = checkCommandId(req.commandId);
      const row = await storageStep("reading the command", () => getRow(id));
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
          const row = await getRow(id);
          if (!row) throw new ConnectError(`no command ${id}`, Code.NotFound);
          const version = `${row.state}/${row.updated.getTime()}`;
          if (version !== last) {
            last = version;
            yield { command: toCommand(row) };
          }
          if (isEnded(row.state)) return;
          await watcher.waker.wait(hub.tuning.recheckMs, signal);
        }
      } catch (err) {
        const end = streamEnd(err, ctx);
        if (end) throw end;
      } finally {
        watcher.close();
      }
    },

    async cancel(req) {
      const id = checkCommandId(req.commandId);
      const row = await storageStep("cancelling the command", async () => {
        const { rows } = await sql<CommandRow>`
          WITH c AS (
            UPDATE commands SET state = 'cancelled', updated = now()
            WHERE id = ${id} AND state IN ('queued', 'delivered', 'running')
            RETURNING *)
          SELECT c.*, pg_notify(${commandsChannel}, 'command:' || c.id) IS NULL AS notified FROM c`.execute(db);
        return rows[0] ?? (await getRow(id));
      });
      if (!row) throw new ConnectError(`no command ${id}`, Code.NotFound);
      return { command: toCommand(row) };
    },
  };
}

function keepalive(): StreamResponse {
  return create(StreamResponseSchema, { event: { case: "keepalive", value: create(KeepaliveSchema, { time: timestampFromDate(new Date()) }) } });
}
