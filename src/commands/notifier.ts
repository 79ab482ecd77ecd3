import { sql, type RawBuilder } from "kysely";
import type pg from "pg";
import type { Logger } from "../shared/log.js";
import { uuidSource as uuid } from "../storage/ids.js";
import { credentialsChannel, parseCredentialNote, type CredentialNote } from "../tokens/tokens.js";

/** The one PostgreSQL channel of the command queue. */
const commandsChannel = "specta_commands";

/**
 * What a notification on the command queue's channel says, its ids being `Id`s. Payloads:
 * `<agent id>` (a command was queued for the agent), `command:<id>` (a command changed state),
 * `stream:<agent id>:<stream id>` (the agent opened a new stream, which replaces any other).
 */
type CommandNoteOf<Id> = { kind: "agent"; agentId: Id } | { kind: "command"; commandId: Id } | { kind: "stream"; agentId: Id; streamId: Id };

export type CommandNote = CommandNoteOf<string>;

const commandPrefix = "command:";
const streamPrefix = "stream:";

/**
 * The SQL call that sends `note` (pg_notify), for the statement or transaction that makes the
 * change it announces: PostgreSQL delivers it at the commit, and never without it. Its ids are
 * values, or expressions of the rows of that statement (sql.ref("e.id")), one note per row. The
 * payload is the one parseNote reads.
 */
export function notifyCommands(note: CommandNoteOf<string | RawBuilder<unknown>>): RawBuilder<unknown> {
  const text = (part: string | RawBuilder<unknown>) => sql`${part}::text`;
  let payload: RawBuilder<unknown>;
  switch (note.kind) {
    case "agent":
      payload = text(note.agentId);
      break;
    case "command":
      payload = sql`${text(commandPrefix)} || ${text(note.commandId)}`;
      break;
    case "stream":
      payload = sql`${text(streamPrefix)} || ${text(note.agentId)} || ':' || ${text(note.streamId)}`;
      break;
  }
  return sql`pg_notify(${commandsChannel}, ${payload})`;
}

/** What the daemon's LISTEN session hears. */
export type Note =
  | CommandNote
  /** From credentialsChannel: revoked credentials end their streams and leave the caches. */
  | CredentialNote
  /** The LISTEN connection was (re-)established: notifications may have been missed. */
  | { kind: "resync" };

const parsers: Record<string, (payload: string) => Note | undefined> = {
  [commandsChannel]: parseNote,
  [credentialsChannel]: parseCredentialNote,
};

const agentPayload = new RegExp(`^(${uuid})$`);
const commandPayload = new RegExp(`^${commandPrefix}(${uuid})$`);
const streamPayload = new RegExp(`^${streamPrefix}(${uuid}):(${uuid})$`);

/** Parses a payload of the command queue's channel; undefined for anything else. */
export function parseNote(payload: string): CommandNote | undefined {
  let m = agentPayload.exec(payload);
  if (m) return { kind: "agent", agentId: m[1]! };
  m = commandPayload.exec(payload);
  if (m) return { kind: "command", commandId: m[1]! };
  m = streamPayload.exec(payload);
  if (m) return { kind: "stream", agentId: m[1]!, streamId: m[2]! };
  return undefined;
}

export interface NotifierOptions {
  /** A new, unconnected client for the LISTEN session (not one of the pool's). */
  newClient: () => pg.Client;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * One dedicated PostgreSQL session per daemon listening on the command queue's channel and on
 * credentialsChannel, re-established with backoff when it drops. Notifications are only
 * wake-ups: the tables are the truth, and every (re-)connection is announced as a "resync" so
 * that listeners re-read them.
 */
export class Notifier {
  private client: pg.Client | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private readonly listeners = new Set<(note: Note) => void>();
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(private readonly options: NotifierOptions) {
    this.minBackoffMs = options.minBackoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.backoffMs = this.minBackoffMs;
  }

  /** Whether the LISTEN session is up now. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  /** Subscribes to every note; returns the unsubscribe function. */
  on(listener: (note: Note) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Connects once (a failure is logged and retried in the background). */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private emit(note: Note): void {
    for (const listener of this.listeners) {
      try {
        listener(note);
      } catch (err) {
        this.options.log.error({ err }, "notification listener failed");
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = this.options.newClient();
    let lost = false;
    const onLost = (err?: Error) => {
      if (lost) return;
      lost = true;
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
      if (!this.stopped) {
        this.options.log.warn({ err: err?.message, retryMs: this.backoffMs }, "notifications connection lost; reconnecting");
        this.schedule();
      }
    };
    client.on("error", onLost);
    client.on("end", () => onLost());
    client.on("notification", (msg) => {
      const note = msg.payload ? parsers[msg.channel]?.(msg.payload) : undefined;
      if (note) this.emit(note);
    });
    try {
      await client.connect();
      await client.query(
        Object.keys(parsers)
          .map((channel) => `LISTEN ${channel};`)
          .join(" "),
      );
    } catch (err) {
      onLost(err as Error);
      return;
    }
    if (this.stopped || lost) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.backoffMs = this.minBackoffMs;
    this.emit({ kind: "resync" });
  }

  private schedule(): void {
    clearTimeout(this.retry);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
    this.retry = setTimeout(() => void this.connect(), delay);
    this.retry.unref();
  }
}
