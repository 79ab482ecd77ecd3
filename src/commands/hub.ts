import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../shared/log.js";
import type { Db } from "../storage/database.js";
import pg from "pg";
import type { TokenStore } from "../tokens/tokens.js";
import { currentStreams, refreshStreams } from "./agent-streams.js";
import { Notifier, type Note } from "./notifier.js";
import { withQueued } from "./queue.js";

/** Timings of the command queue; tests shorten them. */
export interface CommandsTuning {
  /** A Keepalive goes out on a stream idle this long; default 15 s. */
  keepaliveMs: number;
  /** Every this often the tables are re-read, in case a notification was missed; default 3 s. */
  recheckMs: number;
  /** Every this often a daemon refreshes its rows of agent_streams; default 20 s (a row older than 1 min is stale). */
  presenceRefreshMs: number;
  /** How often the expiry handler runs; default 1 s. */
  expiryIntervalMs: number;
  /** A delivered or running command times out this long after its timeout; default 30 s. */
  timeoutGraceMs: number;
}

export const defaultCommandsTuning: CommandsTuning = {
  keepaliveMs: 15_000,
  recheckMs: 3_000,
  presenceRefreshMs: 20_000,
  expiryIntervalMs: 1_000,
  timeoutGraceMs: 30_000,
};

/** A one-shot wake-up that is never lost: a wake() before wait() makes the next wait() return at once. */
export class Waker {
  private pending = false;
  private resolve: ((woken: boolean) => void) | undefined;

  wake(): void {
    if (this.resolve) this.resolve(true);
    else this.pending = true;
  }

  /** Ends a wait() in progress as if its time were up (it resolves false); nothing when none is. */
  hurry(): void {
    this.resolve?.(false);
  }

  /** Resolves true when woken, false after `ms` (or when hurried); rejects with the signal's reason when it aborts. */
  wait(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve(true);
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<boolean>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.resolve = undefined;
      };
      const onAbort = () => {
        cleanup();
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve(false);
      }, ms);
      signal.addEventListener("abort", onAbort, { once: true });
      this.resolve = (woken) => {
        cleanup();
        resolve(woken);
      };
    });
  }
}

/** One agent's open Stream on this daemon. */
export interface LocalStream {
  agentId: string;
  /** The credential it was opened with. */
  tokenId: string;
  streamId: string;
  /** Woken when commands may be waiting for it; hurried when a keepalive should go now. */
  waker: Waker;
  /** When it last sent anything (a command or a keepalive); a keepalive goes out once it has been quiet for keepaliveMs. */
  lastSent: number;
  /** Set (and the waker hurried) when a keepalive should go now, with an answer to its agent (answering()). */
  keepaliveNow: boolean;
  /**
   * Aborted with the ConnectError to end with when a newer stream of the same agent replaced
   * this one, or when its credential was revoked (the agent was deregistered or enrolled again).
   */
  ended: AbortSignal;
  /** Set once its agent_streams row is written. */
  registered: boolean;
}

interface StreamEntry extends LocalStream {
  controller: AbortController;
}

/**
 * This daemon's open agent streams and command watchers, woken by the notifier and by a periodic
 * re-check of the tables (one query per daemon and tick, not one per stream). Also keeps this
 * daemon's rows of agent_streams fresh.
 */
export class CommandHub {
  readonly daemonId = randomUUID();
  private readonly streams = new Map<string, StreamEntry>();
  private readonly watchers = new Map<string, Set<Waker>>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private lastRefresh = Date.now();
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly db: Db,
    private readonly tokens: TokenStore,
    notifier: Notifier,
    readonly tuning: CommandsTuning,
    private readonly log: Logger,
  ) {
    this.unsubscribe = notifier.on((note) => this.onNote(note));
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe();
    await this.ticking;
  }

  /** How many agent streams this daemon holds. */
  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * Registers a new stream of `agentId`, opened with the credential `tokenId`; an older one on
   * this daemon ends at once. From here on a revocation of the credential ends it: the caller
   * then checks that it was not revoked before (see commands.API/Stream).
   */
  openStream(agentId: string, tokenId: string): LocalStream {
    this.streams.get(agentId)?.controller.abort(replacedError());
    const controller = new AbortController();
    const entry: StreamEntry = {
      agentId,
      tokenId,
      streamId: randomUUID(),
      waker: new Waker(),
      lastSent: Date.now(),
      keepaliveNow: false,
      ended: controller.signal,
      registered: false,
      controller,
    };
    this.streams.set(agentId, entry);
    return entry;
  }

  closeStream(stream: LocalStream): void {
    if (this.streams.get(stream.agentId) === stream) this.streams.delete(stream.agentId);
  }

  /**
   * An answer to `agentId` is going out now (most often to its Push, every 10 s). Its stream's keepalive, when it
   * would fall due within half an interval, goes now too, so that the agent reads both in one
   * wakeup instead of waking again for the keepalive alone (npm run bench:agent). Its streams on
   * other daemons keep their own timers.
   */
  answering(agentId: string): void {
    const local = this.streams.get(agentId);
    if (!local || Date.now() - local.lastSent < this.tuning.keepaliveMs / 2) return;
    local.keepaliveNow = true;
    local.waker.hurry();
  }

  /** A waker for changes of `commandId`; call the returned function when done. */
  watch(commandId: string): { waker: Waker; close(): void } {
    const waker = new Waker();
    let set = this.watchers.get(commandId);
    if (!set) this.watchers.set(commandId, (set = new Set()));
    set.add(waker);
    return {
      waker,
      close: () => {
        set.delete(waker);
        if (set.size === 0 && this.watchers.get(commandId) === set) this.watchers.delete(commandId);
      },
    };
  }

  private onNote(note: Note): void {
    switch (note.kind) {
      case "agent":
        this.streams.get(note.agentId)?.waker.wake();
        break;
      case "command":
        for (const waker of this.watchers.get(note.commandId) ?? []) waker.wake();
        break;
      case "stream": {
        const local = this.streams.get(note.agentId);
        // Notifications may arrive late: the table says which stream is the newest.
        if (local && local.streamId !== note.streamId && local.registered) void this.checkReplaced([local]);
        break;
      }
      case "revoked":
        for (const s of this.streams.values()) if (s.tokenId === note.tokenId) s.controller.abort(revokedError());
        break;
      case "resync":
        this.wakeAll();
        void this.checkRevoked();
        break;
    }
  }

  /** Ends the local streams whose credential was revoked: after a reconnect, the notes may have been missed. */
  private async checkRevoked(): Promise<void> {
    const entries = [...this.streams.values()].filter((s) => s.registered);
    if (entries.length === 0) return;
    try {
      const revoked = await this.tokens.revoked(entries.map((s) => s.tokenId));
      for (const s of entries) if (revoked.has(s.tokenId) && this.streams.get(s.agentId) === s) s.controller.abort(revokedError());
    } catch (err) {
      this.log.warn({ err }, "checking the command streams' credentials failed");
    }
  }

  private wakeAll(): void {
    for (const s of this.streams.values()) s.waker.wake();
    for (const set of this.watchers.values()) for (const w of set) w.wake();
  }

  /** Ends the given local streams whose agent_streams row now names another stream. */
  private async checkReplaced(candidates: StreamEntry[]): Promise<void> {
    try {
      const current = await currentStreams(
        this.db,
        candidates.map((s) => s.agentId),
      );
      for (const s of candidates) {
        if (current.get(s.agentId) !== s.streamId && this.streams.get(s.agentId) === s) s.controller.abort(replacedError());
      }
    } catch (err) {
      this.log.warn({ err }, "checking for replaced command streams failed");
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.schedule();
      });
    }, this.tuning.recheckMs);
    this.timer.unref();
  }

  /** The periodic re-check: wake streams with queued commands and every watcher; refresh presence. */
  private async tick(): Promise<void> {
    for (const set of this.watchers.values()) for (const w of set) w.wake();
    const entries = [...this.streams.values()].filter((s) => s.registered);
    if (entries.length === 0) return;
    try {
      for (const agentId of await withQueued(
        this.db,
        entries.map((s) => s.agentId),
      ))
        this.streams.get(agentId)?.waker.wake();

      if (Date.now() - this.lastRefresh >= this.tuning.presenceRefreshMs) {
        this.lastRefresh = Date.now();
        const alive = await refreshStreams(
          this.db,
          entries.map((s) => s.streamId),
        );
        const gone = entries.filter((s) => !alive.has(s.streamId));
        if (gone.length > 0) await this.checkReplaced(gone);
      }
    } catch (err) {
      this.log.warn({ err }, "re-checking the command queue failed");
    }
  }
}

function replacedError(): ConnectError {
  return new ConnectError("a newer commands.API/Stream of this agent replaced this one", Code.Aborted);
}

/** Unauthenticated, as every later call with the credential: a reason for the agent to stop, not to reconnect (Unavailable). */
export function revokedError(): ConnectError {
  return new ConnectError("this agent's credential was revoked: it was deregistered, or its machine enrolled again", Code.Unauthenticated);
}

/** The command queue's machinery of one daemon: its LISTEN session and its hub. */
export interface CommandsRuntime {
  hub: CommandHub;
  notifier: Notifier;
  stop(): Promise<void>;
}

/**
 * Starts the daemon's LISTEN session (on its own connection, outside the pool) and the hub's
 * re-checks. The session also keeps `tokens`' cache true to revocations made on any daemon.
 */
export async function startCommands(
  db: Db,
  pool: pg.Pool,
  log: Logger,
  tokens: TokenStore,
  tuning: Partial<CommandsTuning> = {},
): Promise<CommandsRuntime> {
  const notifier = new Notifier({ newClient: () => new pg.Client(pool.options), log: log.child({ component: "notifier" }) });
  notifier.on((note) => {
    if (note.kind === "revoked" || note.kind === "changed") tokens.forget(note.tokenId);
    else if (note.kind === "resync") tokens.forgetAll();
  });
  const hub = new CommandHub(db, tokens, notifier, { ...defaultCommandsTuning, ...tuning }, log.child({ component: "command-hub" }));
  await notifier.start();
  hub.start();
  return {
    hub,
    notifier,
    async stop() {
      await hub.stop();
      await notifier.stop();
    },
  };
}
