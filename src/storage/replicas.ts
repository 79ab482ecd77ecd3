import pg from "pg";
import type { Logger } from "../shared/log.js";
import type { Handler } from "../worker/engine.js";
import { describeUrl } from "./database.js";

/** A streaming replica of the primary, as the last check found it. */
export interface Replica {
  /** Its URL without a password, for logs. */
  location: string;
  /** host:port/database, for metric labels. */
  name: string;
  pool: pg.Pool;
  /** Whether the last check reached it. */
  up: boolean;
  /** How far it was behind the primary at the last check, in ms (0: it had replayed all the primary had); undefined when down. */
  lagMs: number | undefined;
  /** Up and at most the bound behind: reads may go to it. */
  usable: boolean;
}

/**
 * The primary's streaming replicas that read-only work goes to. check() (a job of the daemon)
 * measures each one's lag: 0 when it has replayed the WAL position the primary had just before,
 * else the age of the last transaction it replayed; so an idle primary does not make its replicas
 * look behind. pick() hands out the usable ones in turn; undefined means: read from the primary.
 */
export class Replicas {
  readonly replicas: Replica[];

  constructor(
    urls: string[],
    private readonly primary: pg.Pool,
    private readonly maxLagMs: number,
    private readonly log: Logger,
  ) {
    this.replicas = urls.map((url) => {
      const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 2_000, idleTimeoutMillis: 30_000 });
      // An idle connection that breaks must not crash the daemon; the next check marks the replica down.
      pool.on("error", () => undefined);
      pool.on("connect", (client) => client.on("error", () => undefined));
      const u = new URL(url);
      return { location: describeUrl(url), name: `${u.hostname}:${u.port || 5432}${u.pathname}`, pool, up: false, lagMs: undefined, usable: false };
    });
  }

  private next = 0;

  /** A usable replica, in turn; undefined when none is. */
  pick(): Replica | undefined {
    const usable = this.replicas.filter((r) => r.usable);
    if (usable.length === 0) return undefined;
    this.next = (this.next + 1) % usable.length;
    return usable[this.next];
  }

  /** Measures every replica's lag and logs each one that becomes usable or unusable. */
  async check(): Promise<void> {
    let primaryLsn: string;
    try {
      primaryLsn = (await this.primary.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
    } catch {
      return; // The primary is away: the database check says so; keep the replicas' last state.
    }
    await Promise.all(this.replicas.map((replica) => this.checkOne(replica, primaryLsn)));
  }

  private async checkOne(replica: Replica, primaryLsn: string): Promise<void> {
    let reason: string | undefined;
    try {
      const { rows } = await replica.pool.query<{ caught_up: boolean | null; behind_ms: number | null }>({
        text: `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS caught_up,
                      (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS behind_ms`,
        values: [primaryLsn],
      });
      const { caught_up: caughtUp, behind_ms: behindMs } = rows[0]!;
      replica.up = true;
      replica.lagMs = caughtUp ? 0 : (behindMs ?? Number.POSITIVE_INFINITY);
      if (caughtUp === null) reason = "it is not a standby (pg_last_wal_replay_lsn() is null)";
      else if (replica.lagMs > this.maxLagMs) reason = `it is ${Math.round(replica.lagMs)} ms behind the primary (at most ${this.maxLagMs} ms)`;
    } catch (err) {
      replica.up = false;
      replica.lagMs = undefined;
      reason = `it cannot be reached: ${(err as Error).message}`;
    }
    const usable = reason === undefined;
    if (usable !== replica.usable) {
      if (usable) this.log.info({ replica: replica.location }, "database replica usable: reads go to it again");
      else this.log.warn({ replica: replica.location, reason }, "database replica skipped: reads go elsewhere");
    }
    replica.usable = usable;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.pool.end().catch(() => undefined)));
  }
}

/** Checks the replicas every second (every daemon, for its own reads). */
export function replicaCheck(replicas: Replicas): Handler {
  return { name: "replica-check", coolerMs: 1_000, ensure: () => replicas.check() };
}
