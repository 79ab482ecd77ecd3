import { create } from "@bufbuild/protobuf";
import { ListResponseSchema, MetricInfoSchema, type ListRequest, type ListResponse } from "../../gen/metrics/metrics_pb.js";
import type { InstrumentDeclaration } from "../config/config.js";
import { SeriesKind, type TsdbReads } from "../tsdb/index.js";

export interface ListDeps {
  tsdb: TsdbReads;
  /** The declaration of an application instrument, for its help text (agents' metrics have none). */
  declaration(name: string): InstrumentDeclaration | undefined;
}

/** Answers metrics.API/List from the store's series index. */
export async function list(req: ListRequest, deps: ListDeps): Promise<ListResponse> {
  const rows = await deps.tsdb.series.list(req.prefix);
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
