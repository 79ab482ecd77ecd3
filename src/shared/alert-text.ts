/** How alerts and rules read, for the CLI's tables and the dashboard (which bundles this module too). */
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Comparison, type Condition } from "../../gen/alerts/alerts_pb.js";
import { Aggregation, MatchOperator, type Matcher } from "../../gen/metrics/metrics_pb.js";

/** The host an alert is about: its host label, else the instance a scraped series carries. */
export const alertHost = (labels: Readonly<Record<string, string>>) => labels.host ?? labels.instance ?? "";

export const comparisonSymbols: Record<Comparison, string> = {
  [Comparison.UNSPECIFIED]: "?",
  [Comparison.GREATER]: ">",
  [Comparison.GREATER_OR_EQUAL]: ">=",
  [Comparison.LESS]: "<",
  [Comparison.LESS_OR_EQUAL]: "<=",
  [Comparison.EQUAL]: "==",
  [Comparison.NOT_EQUAL]: "!=",
};

export const matchOperatorSymbols: Record<MatchOperator, string> = {
  [MatchOperator.UNSPECIFIED]: "?",
  [MatchOperator.EQUAL]: "=",
  [MatchOperator.NOT_EQUAL]: "!=",
  [MatchOperator.REGEX]: "=~",
  [MatchOperator.NOT_REGEX]: "!~",
};

/** A matcher as PromQL writes it: host=~"web-.*". */
export const matcherText = (m: Matcher) => `${m.label}${matchOperatorSymbols[m.operator] ?? "?"}${JSON.stringify(m.value)}`;

/** A condition in one line: its expr, or e.g. `last(node_systemd_unit_state{state="failed"} by host,name over 2m) > 0`. */
export function describeCondition(c: Condition | undefined): string {
  if (!c) return "";
  if (c.expr !== "") return c.expr;
  const aggregation = (Aggregation[c.aggregation === Aggregation.UNSPECIFIED ? Aggregation.AVG : c.aggregation] ?? "").toLowerCase();
  const matchers = c.matchers.length > 0 ? `{${c.matchers.map(matcherText).join(",")}}` : "";
  const by = c.groupBy.length > 0 ? ` by ${c.groupBy.join(",")}` : "";
  const window = `${(c.window ? durationMs(c.window) : 300_000) / 1000}s`;
  return `${aggregation}(${c.metric}${matchers}${by} over ${window}) ${comparisonSymbols[c.comparison] ?? "?"} ${c.threshold}`;
}
