import { sql, type Kysely } from "kysely";
import type { Logger } from "../log.js";
import { dayMs, listPartitions } from "../storage/partitions.js";
import type { Database } from "../storage/schema.js";
import type { Handler } from "./engine.js";
import { rollupLagMs } from "./late-samples.js";
import { asLeader, leaderLocks } from "./leader.js";

const minuteMs = 60_000;
const hourMs = 3_600_000;

export interface RollupSettings {
  /** Minutes are rolled up once they ended this long ago by the database clock (see rollupLagMs). */
  lagMs: number;
  /** Largest time range of raw samples one statement rolls up; the handler shrinks it when statements are slow. */
  maxChunkMs: number;
  /** Time range holding samples that one run rolls up at most, so that a backlog is worked off over several runs. */
  maxRunDataMs: number;
  /** Chunks one run takes at most, empty ones included (a long gap without samples). */
  maxRunChunks: number;
  /** Hours one run rolls up from minutes at most. */
  maxRunHoursMs: number;
  /** Late hours one run redoes at most. */
  maxLateHours: number;
  /** A chunk slower than this halves the next one; one faster than a quarter of it doubles it. */
  slowChunkMs: number;
}

export const defaultRollupSettings: RollupSettings = {
  lagMs: rollupLagMs,
  maxChunkMs: hourMs,
  maxRunDataMs: 6 * hourMs,
  maxRunChunks: 200,
  maxRunHoursMs: 24 * hourMs,
  maxLateHours: 6,
  slowChunkMs: 10_000,
};

/** A time range rolled up by one run, and the rows written for it. */
export interface RollupSpan {
  from: Date;
  to: Date;
  rows: number;
}

export interface RollupRun {
  /** Late hours redone. */
  lateHours: number;
  minutes?: RollupSpan;
  hours?: RollupSpan;
  /** More is waiting than one run takes; the next run goes on. */
  behind: boolean;
}

export interface RollupsHandler extends Handler {
  /** One run; undefined when another daemon holds the leader lock. */
  run(signal: AbortSignal): Promise<RollupRun | undefined>;
}

export interface RollupsOptions {
  db: Kysely<Database>;
  log: Logger;
  settings?: Partial<RollupSettings>;
}

/**
 * Per-minute rollups from raw samples and per-hour rollups from minutes (min, max, sum, count,
 * last), for closed time only, in set-based statements. Progress is rollup_state.done_until per
 * tier; every range is upserted, so redoing one is harmless. Hours noted in late_hours (samples
 * that arrived after their time was rolled up) are redone first. One daemon works at a time.
 */
export function rollups(options: RollupsOptions): RollupsHandler {
  const settings: RollupSettings = { ...defaultRollupSettings, ...options.settings };
  const log = options.log.child({ handler: "rollups" });
  const pace = { chunkMs: settings.maxChunkMs };
  const run = (signal: AbortSignal) =>
    asLeader(options.db, leaderLocks.rollups, async (conn): Promise<RollupRun> => {
      const late = await redoLateHours(conn, settings);
      const minutes = await advanceMinutes(conn, settings, pace, signal);
      const hours = signal.aborted ? undefined : await conn.transaction().execute((tx) => advanceHours(tx, settings));
      return {
        lateHours: late,
        ...(minutes.span ? { minutes: minutes.span } : {}),
        ...(hours?.span ? { hours: hours.span } : {}),
        behind: late === settings.maxLateHours || minutes.behind || (hours?.behind ?? false),
      };
    });
  return {
    name: "rollups",
    coolerMs: 30_000,
    run,
    async ensure(signal) {
      const started = Date.now();
      const result = await run(signal);
      if (result) report(log, result, Date.now() - started);
      else log.debug("another daemon is computing rollups; skipped");
    },
  };
}

function report(log: Logger, run: RollupRun, ms: number): void {
  if (!run.minutes && !run.hours && run.lateHours === 0) return;
  const span = (s?: RollupSpan) => s && { from: s.from.toISOString(), to: s.to.toISOString(), rows: s.rows };
  const fields = { ms, lateHours: run.lateHours, minutes: span(run.minutes), hours: span(run.hours), behind: run.behind };
  // Steady state is a line every 30 s: keep it out of the info log unless something unusual happened.
  if (run.lateHours > 0 || run.behind) log.info(fields, "rollups computed");
  else log.debug(fields, "rollups computed");
}

/** Rolls up closed minutes after the '1m' done_until, one chunk per transaction, within the run's bounds. */
async function advanceMinutes(
  conn: Kysely<Database>,
  settings: RollupSettings,
  pace: { chunkMs: number },
  signal: AbortSignal,
): Promise<{ span?: RollupSpan; behind: boolean }> {
  let span: RollupSpan | undefined;
  let dataMs = 0;
  for (let chunks = 0; chunks < settings.maxRunChunks; chunks++) {
    if (signal.aborted || dataMs >= settings.maxRunDataMs) return { span, behind: true };
    const started = Date.now();
    const chunk = await conn
      .transaction()
      .execute((tx) => nextMinutes(tx, settings.lagMs, pace.chunkMs))
      .catch((err: unknown) => {
        // A statement that timed out would time out again on the same range: retry a smaller one.
        pace.chunkMs = resized(pace.chunkMs, 0.5, settings.maxChunkMs);
        throw err;
      });
    if (!chunk) return { span, behind: false };
    const elapsed = Date.now() - started;
    if (elapsed > settings.slowChunkMs) pace.chunkMs = resized(pace.chunkMs, 0.5, settings.maxChunkMs);
    else if (elapsed < settings.slowChunkMs / 4) pace.chunkMs = resized(pace.chunkMs, 2, settings.maxChunkMs);
    if (chunk.rows > 0) dataMs += chunk.to.getTime() - chunk.from.getTime();
    span = { from: span?.from ?? chunk.from, to: chunk.to, rows: (span?.rows ?? 0) + chunk.rows };
  }
  return { span, behind: true };
}

/** A chunk length scaled by `factor`, in whole minutes between one minute and `maxMs`. */
function resized(chunkMs: number, factor: number, maxMs: number): number {
  return Math.min(maxMs, Math.max(minuteMs, Math.floor((chunkMs * factor) / minuteMs) * minuteMs));
}

/** One transaction: the next chunk of closed minutes, and the '1m' done_until moved past it. */
async function nextMinutes(tx: Kysely<Database>, lagMs: number, chunkMs: number): Promise<RollupSpan | undefined> {
  await tune(tx);
  const state = await readState(tx, lagMs);
  const from = state.minutes ?? (await firstSampleDay(tx));
  if (from === undefined) return undefined;
  const to = Math.min(from + chunkMs, state.horizon);
  if (to <= from) return undefined;
  const rows = await rollUpMinutes(tx, from, to);
  await setDoneUntil(tx, "1m", to);
  return { from: new Date(from), to: new Date(to), rows };
}

/** One transaction: hour rollups for the closed hours between the '1h' and the '1m' done_until. */
async function advanceHours(tx: Kysely<Database>, settings: RollupSettings): Promise<{ span?: RollupSpan; behind: boolean }> {
  await tune(tx);
  const state = await readState(tx, settings.lagMs);
  if (state.minutes === undefined) return { behind: false };
  const from = state.hours ?? (await firstMinuteHour(tx));
  if (from === undefined) return { behind: false };
  const closed = Math.floor(state.minutes / hourMs) * hourMs;
  const to = Math.min(closed, from + settings.maxRunHoursMs);
  if (to <= from) return { behind: false };
  const rows = await rollUpHours(tx, from, to);
  await setDoneUntil(tx, "1h", to);
  return { span: { from: new Date(from), to: new Date(to), rows }, behind: to < closed };
}

/**
 * One transaction: takes the oldest late hours and redoes, within each, the minutes and the
 * hour already rolled up. Deleting first locks those rows: a batch noting one of these hours
 * meanwhile waits for the commit and inserts it again, so the next run redoes it once more.
 */
async function redoLateHours(conn: Kysely<Database>, settings: RollupSettings): Promise<number> {
  return conn.transaction().execute(async (tx) => {
    const { rows } = await sql<{ hour: Date }>`
      DELETE FROM late_hours WHERE hour IN (SELECT hour FROM late_hours ORDER BY hour LIMIT ${settings.maxLateHours})
      RETURNING hour`.execute(tx);
    if (rows.length === 0) return 0;
    await tune(tx);
    const state = await readState(tx, settings.lagMs);
    for (const hour of rows.map((r) => r.hour.getTime())) {
      // Time past done_until is not rolled up yet: the normal progress covers it.
      const minutesEnd = Math.min(hour + hourMs, state.minutes ?? hour);
      if (minutesEnd > hour) await rollUpMinutes(tx, hour, minutesEnd);
      if (state.hours !== undefined && hour + hourMs <= state.hours) await rollUpHours(tx, hour, hour + hourMs);
    }
    return rows.length;
  });
}

interface RollupState {
  /** The latest minute end that may be rolled up now: the database clock minus the lag, in whole minutes. */
  horizon: number;
  minutes?: number;
  hours?: number;
}

async function readState(tx: Kysely<Database>, lagMs: number): Promise<RollupState> {
  const { rows } = await sql<{ horizon: Date; minutes: Date | null; hours: Date | null }>`
    SELECT date_bin('1 minute', now() - ${lagMs}::float8 * interval '1 millisecond', timestamptz '2000-01-01 00:00:00+00') AS horizon,
      (SELECT done_until FROM rollup_state WHERE tier = '1m') AS minutes,
      (SELECT done_until FROM rollup_state WHERE tier = '1h') AS hours`.execute(tx);
  const row = rows[0]!;
  return {
    horizon: row.horizon.getTime(),
    ...(row.minutes ? { minutes: row.minutes.getTime() } : {}),
    ...(row.hours ? { hours: row.hours.getTime() } : {}),
  };
}

/** Where minute rollups start on a fresh database: the oldest day partition (no scan of the samples). */
async function firstSampleDay(tx: Kysely<Database>): Promise<number | undefined> {
  const oldest = (await listPartitions(tx))[0];
  return oldest && oldest.day * dayMs;
}

/** Where hour rollups start on a fresh database: the hour of the oldest minute rollup. */
async function firstMinuteHour(tx: Kysely<Database>): Promise<number | undefined> {
  const { rows } = await sql<{ first: Date | null }>`SELECT min(bucket) AS first FROM samples_1m`.execute(tx);
  const first = rows[0]?.first;
  return first ? Math.floor(first.getTime() / hourMs) * hourMs : undefined;
}

/** Room for the big GROUP BY in memory, and no JIT compile (seconds on some plans) for a statement run every 30 s. */
async function tune(tx: Kysely<Database>): Promise<void> {
  await sql`SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true), set_config('statement_timeout', '300s', true)`.execute(tx);
}

/*
 * `last` is the value at the latest time of the bucket. max() over [epoch, value] arrays finds it
 * in the same hash aggregate as the other columns (arrays compare element by element; epoch
 * seconds as float8 keep microsecond order); array_agg(value ORDER BY ts DESC) would sort every
 * group and take about twice as long. Buckets are UTC-aligned whatever the session time zone.
 */

/** Upserts the minute rollups of the raw samples in [fromMs, toMs); returns the rows written. */
async function rollUpMinutes(tx: Kysely<Database>, fromMs: number, toMs: number): Promise<number> {
  const result = await sql`
    INSERT INTO samples_1m (series_id, bucket, min, max, sum, count, last)
    SELECT series_id, date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00'),
      min(value), max(value), sum(value), count(*), (max(ARRAY[date_part('epoch', ts), value]))[2]
    FROM samples
    WHERE ts >= ${new Date(fromMs)} AND ts < ${new Date(toMs)}
    GROUP BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
      min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count, last = excluded.last`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}

/** Upserts the hour rollups of the minute rollups in [fromMs, toMs); returns the rows written. */
async function rollUpHours(tx: Kysely<Database>, fromMs: number, toMs: number): Promise<number> {
  const result = await sql`
    INSERT INTO samples_1h (series_id, bucket, min, max, sum, count, last)
    SELECT series_id, date_bin('1 hour', bucket, timestamptz '2000-01-01 00:00:00+00'),
      min(min), max(max), sum(sum), sum(count), (max(ARRAY[date_part('epoch', bucket), last]))[2]
    FROM samples_1m
    WHERE bucket >= ${new Date(fromMs)} AND bucket < ${new Date(toMs)}
    GROUP BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
      min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count, last = excluded.last`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}

async function setDoneUntil(tx: Kysely<Database>, tier: "1m" | "1h", untilMs: number): Promise<void> {
  await sql`
    INSERT INTO rollup_state (tier, done_until) VALUES (${tier}, ${new Date(untilMs)})
    ON CONFLICT (tier) DO UPDATE SET done_until = excluded.done_until`.execute(tx);
}
