import { createHash } from "node:crypto";
import { sql, type Kysely, type RawBuilder } from "kysely";
import type { TsdbDatabase } from "./tables.js";
import type { Labels } from "../shared/labels.js";
import { seriesKey } from "../shared/series-key.js";
import { InvalidInput, LimitExceeded } from "./errors.js";

/** Kinds stored in series.kind; the same numbers as metrics.Kind in proto/metrics/metrics.proto. */
export const SeriesKind = { counter: 1, gauge: 2, histogram: 3 } as const;
export type SeriesKindNumber = (typeof SeriesKind)[keyof typeof SeriesKind];
const kindNames = ["", "counter", "gauge", "histogram"];

/** A series to resolve: a metric, its labels and its kind. */
export interface SeriesRef {
  metric: string;
  labels: Labels;
  kind: SeriesKindNumber;
}

/** The outcome for one series: its id, or why it was refused. */
export type Resolved = { id: number } | { refused: string };

export interface SeriesLimits {
  /** New series of a metric beyond this many are refused (declared instruments bound their own and are exempt). */
  perMetric: number;
  /** New series created by one agent beyond this many are refused. */
  perAgent: number;
}

/** Who creates series: an agent's writes count against its own limit. */
export interface Writer {
  agentId?: string;
  /** Declared instruments bound their own cardinality: no per-metric limit. */
  unlimited?: boolean;
}

export type MatchOperator = "=" | "!=" | "=~" | "!~";

/** Selects series by one label; a missing label equals "" (as in Prometheus); regexes are anchored. */
export interface LabelMatcher {
  label: string;
  op: MatchOperator;
  value: string;
}

export interface SelectedSeries {
  id: number;
  labels: Labels;
  kind: SeriesKindNumber;
}

export interface MetricSummary {
  metric: string;
  kind: SeriesKindNumber;
  series: number;
  /** Per label key its distinct values, sorted bytewise, at most `maxLabelValues` each. */
  labels: { key: string; values: string[] }[];
}

/** Series one selection may return. */
export const maxSelectedSeries = 10_000;
/** Label values listed per key. */
export const maxLabelValues = 1_000;

/**
 * The unique key of a series: the first 8 bytes of SHA-256 of its canonical text, as a signed
 * 64-bit decimal (any label size fits the index; lookups compare metric and labels too).
 */
export function seriesHash(canonical: string): string {
  return createHash("sha256").update(canonical).digest().readBigInt64BE(0).toString();
}

/**
 * The series index: maps series to ids and selects them by matchers. Hits come from memory;
 * misses are resolved in bulk (one lookup, one insert of the new ones) under the limits, so a
 * cardinality explosion stops at the index.
 */
export class SeriesIndex {
  private readonly ids = new Map<string, { id: number; kind: number }>();

  constructor(
    private readonly db: Kysely<TsdbDatabase>,
    private readonly limits: SeriesLimits,
    private readonly maxCached = 1_000_000,
  ) {}

  /** Resolves every series of `wanted` (keyed by seriesKey); refused series are not created. */
  async resolve(wanted: Map<string, SeriesRef>, writer: Writer = {}): Promise<Map<string, Resolved>> {
    const out = new Map<string, Resolved>();
    const misses: [string, SeriesRef][] = [];
    for (const [key, s] of wanted) {
      const hit = this.ids.get(key);
      if (hit !== undefined && hit.kind === s.kind) out.set(key, { id: hit.id });
      else misses.push([key, s]);
    }
    if (misses.length === 0) return out;

    const hashes = misses.map(([key]) => seriesHash(key));
    const found = await this.lookup(hashes);
    const fresh: [string, SeriesRef, string][] = [];
    misses.forEach(([key, s], i) => {
      const hit = found.get(hashes[i]!);
      if (hit === undefined) fresh.push([key, s, hashes[i]!]);
      else out.set(key, this.check(key, s, hit));
    });
    if (fresh.length > 0) await this.create(fresh, out, writer);
    return out;
  }

  /** A stored series found under a wanted series' hash: the same series, or a collision or a kind clash to refuse. */
  private check(key: string, s: SeriesRef, hit: StoredSeries): Resolved {
    if (seriesKey(hit.metric, hit.labels) !== key)
      return { refused: `series ${describe(s)} has the same 64-bit hash as series ${hit.id}; it cannot be stored` };
    if (hit.kind !== s.kind) return { refused: kindClash(s, hit.kind) };
    return { id: this.remember(key, hit) };
  }

  private remember(key: string, hit: { id: number; kind: number }): number {
    if (this.ids.size >= this.maxCached) this.ids.clear();
    this.ids.set(key, hit);
    return hit.id;
  }

  private async lookup(hashes: string[]): Promise<Map<string, StoredSeries>> {
    const { rows } = await sql<StoredSeries & { key: string }>`
      SELECT id, key::text AS key, kind, metric, labels FROM series WHERE key = ANY(${hashes}::int8[])`.execute(this.db);
    return new Map(rows.map((r) => [r.key, r]));
  }

  /** Creates new series within the limits and each metric's kind; fills `out` for every one of `fresh`. */
  private async create(fresh: [string, SeriesRef, string][], out: Map<string, Resolved>, writer: Writer): Promise<void> {
    const metrics = [...new Set(fresh.map(([, s]) => s.metric))];
    const { rows: stats } = await sql<{ metric: string; kind: number; n: number }>`
      SELECT metric, min(kind) AS kind, count(*)::int AS n FROM series WHERE metric = ANY(${metrics}::text[]) GROUP BY metric`.execute(this.db);
    const metricRoom = new Map(metrics.map((m) => [m, writer.unlimited ? Infinity : this.limits.perMetric]));
    const kinds = new Map<string, number>();
    for (const s of stats) {
      metricRoom.set(s.metric, metricRoom.get(s.metric)! - s.n);
      kinds.set(s.metric, s.kind);
    }
    let agentRoom = Infinity;
    if (writer.agentId !== undefined) {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM series WHERE agent_id = ${writer.agentId}::uuid`.execute(this.db);
      agentRoom = this.limits.perAgent - (rows[0]?.n ?? 0);
    }

    const allowed: [string, SeriesRef, string][] = [];
    for (const entry of fresh) {
      const [key, s] = entry;
      const kind = kinds.get(s.metric) ?? s.kind;
      kinds.set(s.metric, kind);
      const room = metricRoom.get(s.metric)!;
      if (kind !== s.kind) out.set(key, { refused: kindClash(s, kind) });
      else if (room <= 0) out.set(key, { refused: `metric ${s.metric} has reached its limit of ${this.limits.perMetric} series` });
      else if (agentRoom <= 0) out.set(key, { refused: `this agent has reached its limit of ${this.limits.perAgent} series` });
      else {
        metricRoom.set(s.metric, room - 1);
        agentRoom--;
        allowed.push(entry);
      }
    }
    if (allowed.length === 0) return;

    await sql`
      INSERT INTO series (metric, labels, kind, key, agent_id)
      SELECT m, l, k, h, ${writer.agentId ?? null}::uuid
      FROM unnest(${allowed.map(([, s]) => s.metric)}::text[], ${allowed.map(([, s]) => JSON.stringify(s.labels))}::jsonb[],
                  ${allowed.map(([, s]) => s.kind)}::int2[], ${allowed.map(([, , h]) => h)}::int8[]) AS u(m, l, k, h)
      ON CONFLICT (key) DO NOTHING`.execute(this.db);
    // Another daemon may have created some of them meanwhile: read back every id.
    const created = await this.lookup(allowed.map(([, , h]) => h));
    for (const [key, s, h] of allowed) {
      const hit = created.get(h);
      if (!hit) throw new Error(`series ${describe(s)} vanished after insert`);
      out.set(key, this.check(key, s, hit));
    }
  }

  /** The series of `metric` that satisfy every matcher, by id; LimitExceeded beyond maxSelectedSeries. */
  async select(metric: string, matchers: LabelMatcher[]): Promise<SelectedSeries[]> {
    checkText("the metric", metric);
    for (const m of matchers) {
      checkText("a matcher's label", m.label);
      checkText(`matcher ${m.label}'s value`, m.value);
    }
    await this.checkRegexes(matchers);
    // Equalities with a value go through the labels index; the rest are filters.
    const equal: Labels = {};
    for (const m of matchers) if (m.op === "=" && m.value !== "") equal[m.label] = m.value;
    const conditions = [sql`metric = ${metric}`, ...matchers.map(condition)];
    if (Object.keys(equal).length > 0) conditions.push(sql`labels @> ${JSON.stringify(equal)}::jsonb`);
    let rows: SelectedSeries[];
    try {
      ({ rows } = await sql<SelectedSeries>`
        SELECT id, labels, kind FROM series
        WHERE ${sql.join(conditions, sql` AND `)}
        ORDER BY id LIMIT ${maxSelectedSeries + 1}`.execute(this.db));
    } catch (err) {
      // A pattern that compiles alone but not inside ^(?:…)$, e.g. one with embedded options.
      if (hasState(err, invalidRegex)) throw new InvalidInput(`a regular expression of the matchers is invalid: ${(err as Error).message}`);
      throw err;
    }
    if (rows.length > maxSelectedSeries) {
      throw new LimitExceeded(`the query selects more than ${maxSelectedSeries} series of metric ${metric}: narrow it with matchers`);
    }
    return rows;
  }

  /**
   * Compiles every regex of the matchers in PostgreSQL, whose dialect the selection uses; the
   * selection alone would not notice a bad one when no series has the metric.
   */
  private async checkRegexes(matchers: LabelMatcher[]): Promise<void> {
    const regexes = matchers.filter((m) => m.op === "=~" || m.op === "!~");
    for (const m of regexes) {
      try {
        await sql`SELECT '' ~ ${m.value}`.execute(this.db);
      } catch (err) {
        if (hasState(err, invalidRegex)) throw new InvalidInput(`matcher ${m.label}${m.op}${JSON.stringify(m.value)}: ${(err as Error).message}`);
        throw err;
      }
    }
  }

  /**
   * Every metric whose name starts with `prefix`: its kind, series count and per label key its
   * distinct values (the first maxLabelValues in byte order, "C" collation, so the order does
   * not depend on the database's locale). One statement.
   */
  async list(prefix: string): Promise<MetricSummary[]> {
    checkText("the prefix", prefix);
    const { rows } = await sql<MetricSummary>`
      WITH s AS (
        SELECT metric, kind, labels FROM series WHERE left(metric, ${prefix.length}) = ${prefix}
      ),
      pairs AS (
        SELECT DISTINCT s.metric, e.key, e.value FROM s, jsonb_each_text(s.labels) AS e(key, value)
      ),
      ranked AS (
        SELECT metric, key, value, row_number() OVER (PARTITION BY metric, key ORDER BY value COLLATE "C") AS n FROM pairs
      ),
      keys AS (
        SELECT metric, key, array_agg(value ORDER BY value COLLATE "C") AS vals FROM ranked WHERE n <= ${maxLabelValues} GROUP BY metric, key
      ),
      metrics AS (
        SELECT metric, min(kind)::int AS kind, count(*)::float8 AS series FROM s GROUP BY metric
      )
      SELECT m.metric, m.kind, m.series,
        coalesce(json_agg(json_build_object('key', k.key, 'values', k.vals) ORDER BY k.key COLLATE "C") FILTER (WHERE k.key IS NOT NULL), '[]') AS labels
      FROM metrics m LEFT JOIN keys k ON k.metric = m.metric
      GROUP BY m.metric, m.kind, m.series
      ORDER BY m.metric COLLATE "C"`.execute(this.db);
    return rows;
  }
}

/** PostgreSQL text cannot hold NUL: a name or value with one cannot match anything, and is the caller's mistake. */
function checkText(what: string, text: string): void {
  if (text.includes("\u0000")) throw new InvalidInput(`${what} holds a NUL character`);
}

// PostgreSQL's SQLSTATE for an invalid regular expression.
const invalidRegex = "2201B";

function hasState(err: unknown, state: string): boolean {
  return (err as { code?: unknown } | undefined)?.code === state;
}

/** The SQL condition of one matcher; a missing label equals "" (as in Prometheus). */
function condition(m: LabelMatcher): RawBuilder<unknown> {
  const value = sql`coalesce(labels ->> ${m.label}, '')`;
  // Anchored: the whole value must match, as in Prometheus. The pattern alone is checked to
  // compile first (checkRegexes), so wrapping it cannot change what it groups.
  const anchored = `^(?:${m.value})$`;
  switch (m.op) {
    case "=":
      return sql`${value} = ${m.value}`;
    case "!=":
      return sql`${value} <> ${m.value}`;
    case "=~":
      return sql`${value} ~ ${anchored}`;
    case "!~":
      return sql`${value} !~ ${anchored}`;
  }
}

interface StoredSeries {
  id: number;
  kind: number;
  metric: string;
  labels: Labels;
}

function describe(s: SeriesRef): string {
  return `${s.metric}${JSON.stringify(s.labels)}`.slice(0, 300);
}

function kindClash(s: SeriesRef, existing: number): string {
  return `metric ${s.metric} is a ${kindNames[existing]}, not a ${kindNames[s.kind]}`;
}
