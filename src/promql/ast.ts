/**
 * PromQL's abstract syntax tree as Specta evaluates it: what parse.ts builds from the concrete
 * tree of @prometheus-io/lezer-promql, with every expression's type known, so that the evaluator
 * never meets a construct it does not support (those are refused while parsing).
 */

/** The types of PromQL values (Prometheus' parser.ValueType). */
export type ValueType = "scalar" | "vector" | "matrix" | "string";

export type MatchOp = "=" | "!=" | "=~" | "!~";

/** A label matcher; `__name__` matchers select the metric name. */
export interface Matcher {
  label: string;
  op: MatchOp;
  value: string;
}

export interface NumberLiteral {
  kind: "number";
  type: "scalar";
  value: number;
}

export interface StringLiteral {
  kind: "string";
  type: "string";
  value: string;
}

/** An instant vector selector: every matcher, the metric name as a `__name__` equality among them. */
export interface VectorSelector {
  kind: "selector";
  type: "vector";
  matchers: Matcher[];
  offsetMs: number;
}

export interface MatrixSelector {
  kind: "matrix";
  type: "matrix";
  selector: VectorSelector;
  rangeMs: number;
}

export type AggregateOp = "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" | "topk" | "bottomk" | "quantile";

export interface Aggregate {
  kind: "aggregate";
  type: "vector";
  op: AggregateOp;
  /** topk's and bottomk's k, quantile's φ. */
  param: Expr | undefined;
  expr: Expr;
  /** by (…) or without (…); `without: false` with no labels is one group of everything. */
  grouping: string[];
  without: boolean;
}

export interface Call {
  kind: "call";
  type: ValueType;
  func: string;
  args: Expr[];
}

export type ArithmeticOp = "+" | "-" | "*" | "/" | "%" | "^";
export type ComparisonOp = "==" | "!=" | ">" | "<" | ">=" | "<=";
export type SetOp = "and" | "or" | "unless";
export type BinaryOp = ArithmeticOp | ComparisonOp | SetOp;

/** How the two vectors of a binary operation are matched (Prometheus' parser.VectorMatching). */
export interface VectorMatching {
  card: "one-to-one" | "many-to-one" | "one-to-many" | "many-to-many";
  /** on (…) when true, ignoring (…) when false. */
  on: boolean;
  labels: string[];
  /** group_left (…) / group_right (…): labels copied from the "one" side. */
  include: string[];
}

export interface Binary {
  kind: "binary";
  type: "scalar" | "vector";
  op: BinaryOp;
  lhs: Expr;
  rhs: Expr;
  /** The bool modifier of a comparison. */
  returnBool: boolean;
  /** Set when both sides are vectors. */
  matching: VectorMatching | undefined;
}

export interface Unary {
  kind: "unary";
  type: "scalar" | "vector";
  op: "-";
  expr: Expr;
}

export type Expr = NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | Aggregate | Call | Binary | Unary;

/** Every vector selector of an expression (those inside range selectors too), for the reads it needs. */
export function selectorsOf(expr: Expr): { selector: VectorSelector; rangeMs: number }[] {
  switch (expr.kind) {
    case "selector":
      return [{ selector: expr, rangeMs: 0 }];
    case "matrix":
      return [{ selector: expr.selector, rangeMs: expr.rangeMs }];
    case "aggregate":
      return [...(expr.param ? selectorsOf(expr.param) : []), ...selectorsOf(expr.expr)];
    case "call":
      return expr.args.flatMap(selectorsOf);
    case "binary":
      return [...selectorsOf(expr.lhs), ...selectorsOf(expr.rhs)];
    case "unary":
      return selectorsOf(expr.expr);
    case "number":
    case "string":
      return [];
  }
}
