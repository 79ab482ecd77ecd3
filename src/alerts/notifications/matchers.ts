import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { MatchOperator, MatcherSchema, type Matcher } from "../../../gen/metrics/metrics_pb.js";
import { storeMatcher, validateMatchers } from "../../metrics/query.js";
import { compileRegex, matchesValue } from "../../promql/regex.js";
import type { StoredMatcher } from "./notifications.table.js";

/** Matchers of silences and routes, at most. */
export const maxMatchers = 50;

/** The contract's matchers as stored, checked (InvalidArgument): labels, operators and regexes that compile. */
export function storedMatchers(matchers: readonly Matcher[], what: string): StoredMatcher[] {
  if (matchers.length > maxMatchers) throw new ConnectError(`${what}: at most ${maxMatchers} matchers`, Code.InvalidArgument);
  validateMatchers([...matchers]);
  return matchers.map((m) => {
    const stored = storeMatcher(m);
    if (stored.op === "=~" || stored.op === "!~") {
      try {
        compileRegex(stored.value);
      } catch (err) {
        throw new ConnectError(`${what}: matcher on ${m.label}: ${(err as Error).message}`, Code.InvalidArgument);
      }
    }
    return stored;
  });
}

const operators: Record<StoredMatcher["op"], MatchOperator> = {
  "=": MatchOperator.EQUAL,
  "!=": MatchOperator.NOT_EQUAL,
  "=~": MatchOperator.REGEX,
  "!~": MatchOperator.NOT_REGEX,
};

/** Stored matchers as the contract's. */
export function contractMatchers(matchers: readonly StoredMatcher[]): Matcher[] {
  return matchers.map((m) => create(MatcherSchema, { label: m.label, operator: operators[m.op], value: m.value }));
}

/** Whether every matcher holds for `labels` (a missing label equals "", as in Prometheus). */
export function labelsMatch(labels: Record<string, string>, matchers: readonly StoredMatcher[]): boolean {
  return matchers.every((m) => matchesValue(m, labels[m.label] ?? ""));
}
