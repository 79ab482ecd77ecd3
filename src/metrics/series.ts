import { sql, type Kysely } from "kysely";
import type { Database, Labels, SeriesKindNumber } from "../storage/schema.js";
import { seriesKey } from "./series-key.js";

/** A series to resolve: a metric, its labels and its kind. */
export interface SeriesKey {
  metric: string;
  labels: Labels;
  kind: SeriesKindNumber;
}

/** The outcome for one series: its id, or why it was refused. */
export type Resolved = { id: number } | { refused: string };

const kindNames = ["", "counter", "gauge", "histogram"];

/**
 * Maps series to ids. Hits come from memory; misses are resolved in bulk (one lookup, one insert
 * of the new ones), under a limit on series per metric that stops a cardinality explosion.
 */
export class SeriesCache {
  private readonly ids = new Map<string, number>();
  /** Kind of each metric seen, so that a metric keeps its first kind. */
  private readonly kinds = new Map<string, number>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly maxSeriesPerMetric: number,
    private readonly maxCached = 1_000_000,
  ) {}

  /**
   * Resolves every key (keyed by seriesKey); refused series are not created. `limit` is the
   * series-per-metric bound (declared instruments bound their own cardinality and pass Infinity).
   */
  async resolve(wanted: Map<string, SeriesKey>, limit = this.maxSeriesPerMetric): Promise<Map<string, Resolved>> {
    const out = new Map<string, Resolved>();
    const misses = new Map<string, SeriesKey>();
    for (const [key, s] of wanted) {
      const id = this.ids.get(key);
      const kind = this.kinds.get(s.metric);
      if (id !== undefined && kind === s.kind) out.set(key, { id });
      else misses.set(key, s);
    }
    if (misses.size === 0) return out;

    const found = await this.lookup([...misses.values()]);
    const fresh = new Map<string, SeriesKey>();
    for (const [key, s] of misses) {
      const hit = found.get(key);
      if (hit === undefined) fresh.set(key, s);
      else if (hit.kind !== s.kind) out.set(key, { refused: kindClash(s, hit.kind) });
      else out.set(key, { id: this.remember(key, s.metric, hit.id, hit.kind) });
    }
    if (fresh.size > 0) await this.create(fresh, out, limit);
    return out;
  }

  private remember(key: string, metric: string, id: number, kind: number): number {
    if (this.ids.size >= this.maxCached) this.ids.clear();
    this.ids.set(key, id);
    this.kinds.set(metric, kind);
    return id;
  }

  private async lookup(keys: SeriesKey[]): Promise<Map<string, { id: number; kind: number }>> {
    const { rows } = await sql<{ id: number; metric: string; labels: Labels; kind: number }>`
      SELECT s.id, s.metric, s.labels, s.kind
      FROM unnest(${keys.map((k) => k.metric)}::text[], ${keys.map((k) => JSON.stringify(k.labels))}::jsonb[]) AS i(metric, labels)
      JOIN series s ON s.metric = i.metric AND s.labels = i.labels`.execute(this.db);
    return new Map(rows.map((r) => [seriesKey(r.metric, r.labels), { id: r.id, kind: r.kind }]));
  }

  /** Creates new series within each metric's limit and kind; fills `out` for every key of `fresh`. */
  private async create(fresh: Map<string, SeriesKey>, out: Map<string, Resolved>, limit: number): Promise<void> {
    const metrics = [...new Set([...fresh.values()].map((s) => s.metric))];
    const { rows: stats } = await sql<{ metric: string; kind: number; n: number }>`
      SELECT metric, min(kind) AS kind, count(*)::int AS n FROM series WHERE metric = ANY(${metrics}::text[]) GROUP BY metric`.execute(this.db);
    const room = new Map(metrics.map((m) => [m, limit]));
    const kinds = new Map<string, number>();
    for (const s of stats) {
      room.set(s.metric, limit - s.n);
      kinds.set(s.metric, s.kind);
    }

    const allowed: [string, SeriesKey][] = [];
    for (const [key, s] of fresh) {
      const kind = kinds.get(s.metric) ?? s.kind;
      kinds.set(s.metric, kind);
      const left = room.get(s.metric) ?? 0;
      if (kind !== s.kind) out.set(key, { refused: kindClash(s, kind) });
      else if (left <= 0) {
        out.set(key, { refused: `metric ${s.metric} has reached its limit of ${limit} series` });
      } else {
        room.set(s.metric, left - 1);
        allowed.push([key, s]);
      }
    }
    if (allowed.length === 0) return;

    await sql`
      INSERT INTO series (metric, labels, kind)
      SELECT * FROM unnest(${allowed.map(([, s]) => s.metric)}::text[], ${allowed.map(([, s]) => JSON.stringify(s.labels))}::jsonb[], ${allowed.map(([, s]) => s.kind)}::int2[])
      ON CONFLICT (metric, labels) DO NOTHING`.execute(this.db);
    // Another daemon may have created some of them meanwhile: read back every id.
    const created = await this.lookup(allowed.map(([, s]) => s));
    for (const [key, s] of allowed) {
      const hit = created.get(key);
      if (!hit) throw new Error(`series ${key} vanished after insert`);
      out.set(key, hit.kind === s.kind ? { id: this.remember(key, s.metric, hit.id, hit.kind) } : { refused: kindClash(s, hit.kind) });
    }
  }
}

function kindClash(s: SeriesKey, existing: number): string {
  return `metric ${s.metric} is a ${kindNames[existing]}, not a ${kindNames[s.kind]}`;
}
