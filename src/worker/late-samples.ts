import { sql, type Kysely } from "kysely";
import type { Database } from "../storage/schema.js";

/**
 * How long after a minute ends the rollups leave it alone, so that samples still on their way
 * (collected, batched, in a Push call) land before their minute is rolled up. Rollups never
 * cover time later than the database clock minus this lag.
 */
export const rollupLagMs = 2 * 60_000;

const hourMs = 3_600_000;
/** How often the database clock is compared with ours. */
const clockCheckMs = 30_000;
/** Head room of the in-memory pre-filter; the database re-checks exactly with its own clock. */
const preFilterSlackMs = 30_000;

/**
 * The ingest side of late data. After a batch is committed, notes in late_hours the hours of
 * its samples that rollups may already have passed, so that the rollups handler redoes them.
 *
 * Why "older than the database clock minus the lag" rather than "older than rollup_state's
 * done_until": a rollup that started before the batch committed cannot see it, yet may commit
 * a done_until past it just after this check read the old value. Such a rollup only covers time
 * older than its own start minus the lag, which is older than this statement's now() minus the
 * lag; so this test catches every sample a rollup may have missed, with no lock and no read. In
 * steady state both tests pick the same (no) samples; during a rollup backlog this one also
 * notes hours not rolled up yet, which the handler drops cheaply.
 */
export class LateSamples {
  /** Database clock minus ours, in ms; only used to skip the statement for batches of fresh samples. */
  private clockOffsetMs = 0;
  private clockCheckedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly db: Kysely<Database>,
    /** At most the rollups' lag: a smaller one notes more hours, a larger one would miss some. */
    private readonly lagMs = rollupLagMs,
  ) {}

  /** Call after the samples at `timesMs` are committed: one small statement, and only when some are old. */
  async record(timesMs: readonly number[]): Promise<void> {
    this.checkClock();
    const earliest = oldHours(timesMs, Date.now() + this.clockOffsetMs - this.lagMs + preFilterSlackMs);
    if (earliest.size === 0) return;
    const hours = `{${[...earliest.keys()].join(",")}}`;
    const firsts = `{${[...earliest.values()].join(",")}}`;
    await sql`
      INSERT INTO late_hours (hour)
      SELECT to_timestamp(h / 1000) FROM unnest(${hours}::float8[], ${firsts}::float8[]) AS u(h, t)
      WHERE to_timestamp(t / 1000) < now() - ${this.lagMs}::float8 * interval '1 millisecond'
      ON CONFLICT DO NOTHING`.execute(this.db);
  }

  /** Refreshes the clock offset in the background, at most every 30 s; ingest never waits for it. */
  private checkClock(): void {
    const started = Date.now();
    if (started - this.clockCheckedAt < clockCheckMs) return;
    this.clockCheckedAt = started;
    sql<{ ms: number }>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`.execute(this.db).then(
      ({ rows }) => {
        const ended = Date.now();
        if (rows[0]) this.clockOffsetMs = rows[0].ms - (started + ended) / 2;
      },
      () => undefined, // tried again after the next interval; meanwhile the statement's own now() stays exact
    );
  }
}

/** Hour start → earliest time in that hour, for the times before `beforeMs`. */
function oldHours(timesMs: readonly number[], beforeMs: number): Map<number, number> {
  const earliest = new Map<number, number>();
  for (const t of timesMs) {
    if (!(t < beforeMs)) continue;
    const hour = Math.floor(t / hourMs) * hourMs;
    const seen = earliest.get(hour);
    if (seen === undefined || t < seen) earliest.set(hour, t);
  }
  return earliest;
}
