import type { InstrumentKind } from "../config/config.js";
import type { Labels } from "../shared/labels.js";
import { seriesKey } from "../shared/series-key.js";
import { SeriesKind, type SeriesPoints, type SeriesRef, type Tsdb } from "../tsdb/index.js";
import type { Kysely } from "kysely";
import { lockTotals, readTotals, saveTotals } from "./instrument-totals.js";
import { defaultBuckets, type Instruments, type Measurement, type Refused, type StoredValue } from "./instruments.js";

/** One series a measurement moves: a counter or histogram series by `number`, or a gauge to it. */
interface Move {
  key: string;
  ref: SeriesRef;
  number: number;
}

/**
 * Persists Counter, Gauge and Histogram calls, committed before the call answers. Counters and
 * histogram series hold running totals shared by every daemon: instrument_totals keeps them
 * (rows locked while a call advances them), and each new total is appended to the store as a
 * sample in the same transaction. A measurement that would make a total infinite is refused.
 */
export class InstrumentStore {
  constructor(
    private readonly tsdb: Tsdb,
    private readonly instruments: Instruments,
  ) {}

  /** Stores the measurements; returns the refusal of each one that was not stored (by index). */
  async persist(kind: InstrumentKind, measurements: Measurement[]): Promise<Map<number, Refused>> {
    const refused = new Map<number, Refused>();
    if (measurements.length === 0) return refused;
    const moves = measurements.map((m) => this.movesOf(kind, m));
    const wanted = new Map<string, SeriesRef>();
    for (const list of moves) for (const move of list) wanted.set(move.key, move.ref);
    // Declared instruments bound their own cardinality: no per-metric limit.
    const resolved = await this.tsdb.series.resolve(wanted, { unlimited: true });
    const idOf = (key: string): number => {
      const r = resolved.get(key)!;
      // Only a kind clash with series an agent pushed under the same name can refuse an instrument's series.
      if ("refused" in r) throw new InstrumentSeriesRefused(r.refused);
      return r.id;
    };
    await this.tsdb.appendWith(async (tx) => {
      const points: SeriesPoints[] = [];
      if (kind === "gauge") {
        const values = new Map<number, number>();
        for (const list of moves) for (const move of list) values.set(idOf(move.key), move.number);
        const now = Date.now();
        for (const [id, value] of values) points.push({ id, times: [now], values: [value] });
        return { points, result: undefined };
      }
      const rows = await lockTotals(tx, [...new Set([...wanted.keys()].map(idOf))]);
      // Read the clock once the rows are ours, and never before a total's previous sample.
      const now = Date.now();
      const totals = new Map(rows.map((r) => [r.series_id, r]));
      const changed = new Set<number>();
      moves.forEach((list, i) => {
        const next = list.map((move) => totals.get(idOf(move.key))!.total + move.number);
        if (next.some((total) => !Number.isFinite(total))) {
          refused.set(i, {
            kind: "invalid_number",
            info: `number ${measurements[i]!.number} would make the stored total of ${measurements[i]!.metric} infinite`,
          });
          return;
        }
        list.forEach((move, k) => {
          const id = idOf(move.key);
          totals.get(id)!.total = next[k]!;
          changed.add(id);
        });
      });
      if (changed.size === 0) return { points, result: undefined };
      const updated = [...changed].map((id) => {
        const row = totals.get(id)!;
        return { series_id: id, total: row.total, at: Math.max(now, Number(row.at) + 1) };
      });
      await saveTotals(tx, updated);
      for (const u of updated) points.push({ id: u.series_id, times: [u.at], values: [u.total] });
      return { points, result: undefined };
    });
    return refused;
  }

  /**
   * Hands the declared instruments what the store holds of them, for this daemon's /metrics:
   * the running totals of counters and histogram series, and each gauge's latest value within
   * `gaugeLookbackMs` (the raw retention: older samples are gone). Returns how many series.
   */
  async restore<DB>(db: Kysely<DB>, gaugeLookbackMs: number, nowMs = Date.now()): Promise<number> {
    const totals: { instrument: string; metric: string; id: number; labels: StoredValue["labels"] }[] = [];
    const gauges: typeof totals = [];
    for (const { name, kind } of this.instruments.declarations()) {
      const metrics = kind === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
      for (const metric of metrics) {
        for (const s of await this.tsdb.series.select(metric, [])) (kind === "gauge" ? gauges : totals).push({ instrument: name, metric, ...s });
      }
    }
    const values: StoredValue[] = [];
    if (totals.length > 0) {
      const stored = await readTotals(
        db,
        totals.map((t) => t.id),
      );
      for (const t of totals) {
        const value = stored.get(t.id);
        if (value !== undefined) values.push({ instrument: t.instrument, metric: t.metric, labels: t.labels, value });
      }
    }
    if (gauges.length > 0) {
      const stepMs = 24 * 3_600_000;
      const { series } = await this.tsdb.readPoints(
        { seriesIds: gauges.map((g) => g.id), startMs: Math.max(0, nowMs - gaugeLookbackMs), endMs: nowMs, stepMs, increase: false, last: true },
        nowMs,
      );
      for (const g of gauges) {
        const latest = series.get(g.id)?.at(-1)?.last;
        if (latest !== undefined && !Number.isNaN(latest))
          values.push({ instrument: g.instrument, metric: g.metric, labels: g.labels, value: latest });
      }
    }
    this.instruments.restore(values);
    return values.length;
  }

  /** The series a measurement moves: a counter or gauge series, or a histogram's buckets, _sum and _count. */
  private movesOf(kind: InstrumentKind, m: Measurement): Move[] {
    const labels = this.instruments.labelsOf(m);
    const move = (metric: string, seriesLabels: Labels, number: number, seriesKind: SeriesRef["kind"]): Move => ({
      key: seriesKey(metric, seriesLabels),
      ref: { metric, labels: seriesLabels, kind: seriesKind },
      number,
    });
    if (kind === "counter") return [move(m.metric, labels, m.number, SeriesKind.counter)];
    if (kind === "gauge") return [move(m.metric, labels, m.number, SeriesKind.gauge)];
    return [
      ...this.bucketsOf(m.metric).map((le) =>
        move(`${m.metric}_bucket`, { ...labels, le: le === Infinity ? "+Inf" : String(le) }, m.number <= le ? 1 : 0, SeriesKind.histogram),
      ),
      move(`${m.metric}_sum`, labels, m.number, SeriesKind.histogram),
      move(`${m.metric}_count`, labels, 1, SeriesKind.histogram),
    ];
  }

  private bucketsOf(metric: string): number[] {
    const declared = this.instruments.declaration(metric)?.buckets ?? defaultBuckets;
    return [...declared, Infinity];
  }
}

/** An instrument's series clashes with a series of another kind under the same name. */
export class InstrumentSeriesRefused extends Error {
  override name = "InstrumentSeriesRefused";
}
