import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import type { InstrumentKind } from "../config/config.js";
import type { Partitions } from "../storage/partitions.js";
import { SeriesKind, type Labels } from "../storage/schema.js";
import type { Instruments, Measurement } from "./instruments.js";
import { seriesKey } from "./series-key.js";
import type { SeriesCache, SeriesKey } from "./series.js";

// Counters and histogram series hold running totals shared by every daemon: the total is
// advanced in instrument_totals (row lock) and the new total stored as a sample.
const addToTotals = `
  WITH t AS (
    INSERT INTO instrument_totals AS c (series_id, total)
    SELECT * FROM unnest($1::int4[], $2::float8[])
    ON CONFLICT (series_id) DO UPDATE SET total = c.total + excluded.total
    RETURNING series_id, total
  )
  INSERT INTO samples (series_id, ts, value) SELECT series_id, $3, total FROM t
  ON CONFLICT (series_id, ts) DO UPDATE SET value = GREATEST(samples.value, excluded.value)`;

const setGauges = `
  INSERT INTO samples (series_id, ts, value)
  SELECT s, $3, v FROM unnest($1::int4[], $2::float8[]) AS u(s, v)
  ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value`;

/** Persists Counter, Gauge and Histogram calls: one statement per call, committed before the call answers. */
export class InstrumentStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly series: SeriesCache,
    private readonly partitions: Partitions,
    private readonly instruments: Instruments,
  ) {}

  async persist(kind: InstrumentKind, measurements: Measurement[]): Promise<void> {
    if (measurements.length === 0) return;
    // Per series: the sum of increments (counters, histograms) or the last value (gauges).
    const updates = new Map<string, { key: SeriesKey; number: number }>();
    const add = (metric: string, labels: Labels, number: number, seriesKind: SeriesKey["kind"]) => {
      const k = seriesKey(metric, labels);
      const u = updates.get(k);
      if (u && kind !== "gauge") u.number += number;
      else updates.set(k, { key: { metric, labels, kind: seriesKind }, number });
    };
    for (const m of measurements) {
      const labels = this.instruments.labelsOf(m);
      if (kind === "counter") add(m.metric, labels, m.number, SeriesKind.counter);
      else if (kind === "gauge") add(m.metric, labels, m.number, SeriesKind.gauge);
      else {
        for (const le of this.bucketsOf(m.metric)) {
          add(`${m.metric}_bucket`, { ...labels, le: le === Infinity ? "+Inf" : String(le) }, m.number <= le ? 1 : 0, SeriesKind.histogram);
        }
        add(`${m.metric}_sum`, labels, m.number, SeriesKind.histogram);
        add(`${m.metric}_count`, labels, 1, SeriesKind.histogram);
      }
    }

    const resolved = await this.series.resolve(new Map([...updates].map(([k, u]) => [k, u.key])), Infinity);
    const ids: number[] = [];
    const numbers: number[] = [];
    for (const [k, u] of updates) {
      const r = resolved.get(k);
      // Only a kind clash with series an agent pushed under the same name can refuse an instrument's series.
      if (!r || "refused" in r) throw new ConnectError(r && "refused" in r ? r.refused : `series ${k} was not resolved`, Code.FailedPrecondition);
      ids.push(r.id);
      numbers.push(u.number);
    }
    const now = new Date();
    await this.partitions.ensureFor([now.getTime()]);
    await this.pool.query(kind === "gauge" ? setGauges : addToTotals, [ids, numbers, now]);
  }

  private bucketsOf(metric: string): number[] {
    // prom-client's default buckets when a histogram declares none.
    const declared = this.instruments.declaration(metric)?.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
    return [...declared, Infinity];
  }
}
