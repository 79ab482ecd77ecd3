import { create } from "@bufbuild/protobuf";
import { sql, type Kysely } from "kysely";
import { ListResponseSchema, MetricInfoSchema, type ListRequest, type ListResponse } from "../../gen/metrics/metrics_pb.js";
import type { InstrumentDeclaration } from "../config/config.js";
import { SeriesKind, type Database } from "../storage/schema.js";

/** Label values listed per key, as documented on metrics.LabelValues. */
export const maxLabelValues = 1_000;

export interface ListDeps {
  db: Kysely<Database>;
  /** The declaration of an application instrument, for its help text (agents' metrics have none). */
  declaration(name: string): InstrumentDeclaration | undefined;
}

interface MetricRow {
  metric: string;
  kind: number;
  series: number;
  labels: { key: string; values: string[] }[];
}

/**
 * Answers metrics.API/List in one statement over `series`: per metric its kind and series
 * count, and per label key (jsonb_each_text) its distinct values, the first 1,000 in byte order
 * ("C" collation, so the order does not depend on the database's locale).
 */
export async function list(req: ListRequest, deps: ListDeps): Promise<ListResponse> {
  const { rows } = await sql<MetricRow>`
    WITH s AS (
      SELECT metric, kind, labels FROM series WHERE left(metric, ${req.prefix.length}) = ${req.prefix}
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
      coalesce(jsonb_agg(jsonb_build_object('key', k.key, 'values', k.vals) ORDER BY k.key COLLATE "C") FILTER (WHERE k.key IS NOT NULL), '[]') AS labels
    FROM metrics m LEFT JOIN keys k ON k.metric = m.metric
    GROUP BY m.metric, m.kind, m.series
    ORDER BY m.metric COLLATE "C"`.execute(deps.db);

  return create(ListResponseSchema, {
    metrics: rows.map((r) =>
      create(MetricInfoSchema, {
        name: r.metric,
        kind: r.kind,
        help: helpOf(r.metric, r.kind, deps) ?? "",
        series: BigInt(r.series),
        labels: r.labels,
      }),
    ),
  });
}

/** Help of a declared instrument; a histogram's _bucket, _sum and _count series share their histogram's. */
function helpOf(metric: string, kind: number, deps: ListDeps): string | undefined {
  const own = deps.declaration(metric);
  if (own) return own.help;
  const base = kind === SeriesKind.histogram ? /^(.*)_(bucket|sum|count)$/.exec(metric)?.[1] : undefined;
  const declared = base === undefined ? undefined : deps.declaration(base);
  return declared?.kind === "histogram" ? declared.help : undefined;
}
