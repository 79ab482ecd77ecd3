import type { SyntaxNode } from "@lezer/common";
import { parser } from "@prometheus-io/lezer-promql";
import type { AggregateOp, Binary, BinaryOp, Expr, Matcher, MatchOp, NumberLiteral, ValueType, VectorMatching, VectorSelector } from "./ast.js";
import { functions } from "./functions.js";
import { compileRegex } from "./regex.js";

/**
 * Parses PromQL with the grammar the Prometheus project publishes for JavaScript, which gives a
 * concrete syntax tree (lezer's), into Specta's AST, checking types as Prometheus' parser does
 * (parser/parse.go: checkAST). Constructs the evaluator does not support are refused here by
 * name (ParseError), so that no query can produce a number Prometheus would not.
 */

/** A query that cannot be evaluated as written: Prometheus' bad_data. */
export class ParseError extends Error {
  override name = "ParseError";
}

/** Prometheus' names of the value types, as its error messages say them. */
export const typeNames: Record<ValueType, string> = { scalar: "scalar", vector: "instant vector", matrix: "range vector", string: "string" };

const binaryOps: Record<string, BinaryOp> = {
  Add: "+",
  Sub: "-",
  Mul: "*",
  Div: "/",
  Mod: "%",
  Pow: "^",
  Eql: "==",
  Neq: "!=",
  Gtr: ">",
  Lss: "<",
  Gte: ">=",
  Lte: "<=",
  And: "and",
  Or: "or",
  Unless: "unless",
};

const comparisonOps: ReadonlySet<BinaryOp> = new Set(["==", "!=", ">", "<", ">=", "<="]);
const setOps: ReadonlySet<BinaryOp> = new Set(["and", "or", "unless"]);

const aggregateOps: ReadonlySet<string> = new Set<AggregateOp>([
  "sum",
  "avg",
  "min",
  "max",
  "count",
  "group",
  "stddev",
  "stdvar",
  "topk",
  "bottomk",
  "quantile",
]);
/** Aggregations whose first argument is a parameter. */
const parameterised: ReadonlySet<string> = new Set(["topk", "bottomk", "quantile"]);

/** Parses one query; ParseError says what is wrong or unsupported, and where. */
export function parsePromql(query: string): Expr {
  if (query.trim() === "") throw new ParseError("empty query");
  const tree = parser.parse(query);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        const near = query.slice(node.from, Math.max(node.to, node.from + 1));
        throw new ParseError(
          near === ""
            ? `unexpected end of input at position ${node.from}`
            : `parse error at position ${node.from}: unexpected ${JSON.stringify(near)}`,
        );
      }
    },
  });
  const top = expressionChildren(tree.topNode);
  if (top.length !== 1) throw new ParseError("the query must be exactly one expression");
  return new Builder(query).expr(top[0]!);
}

/** Node names that are expressions (what an expression node's children may be). */
const expressionNodes: ReadonlySet<string> = new Set([
  "AggregateExpr",
  "BinaryExpr",
  "FunctionCall",
  "MatrixSelector",
  "NumberDurationLiteral",
  "OffsetExpr",
  "ParenExpr",
  "StringLiteral",
  "SubqueryExpr",
  "UnaryExpr",
  "VectorSelector",
  "StepInvariantExpr",
  "AnchoredExpr",
  "SmoothedExpr",
]);

function children(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) out.push(child);
  return out;
}

function expressionChildren(node: SyntaxNode): SyntaxNode[] {
  return children(node).filter((c) => expressionNodes.has(c.name));
}

function child(node: SyntaxNode, name: string): SyntaxNode | undefined {
  return node.getChild(name) ?? undefined;
}

class Builder {
  constructor(private readonly query: string) {}

  private text(node: SyntaxNode): string {
    return this.query.slice(node.from, node.to);
  }

  private unsupported(node: SyntaxNode, what: string): ParseError {
    return new ParseError(`${what} is not supported by Specta (at position ${node.from}: ${JSON.stringify(this.text(node).slice(0, 60))})`);
  }

  expr(node: SyntaxNode): Expr {
    switch (node.name) {
      case "ParenExpr": {
        const inner = expressionChildren(node);
        if (inner.length !== 1) throw new ParseError(`parse error at position ${node.from}: expected one expression in parentheses`);
        return this.expr(inner[0]!);
      }
      case "NumberDurationLiteral":
        return { kind: "number", type: "scalar", value: parseNumber(this.text(node)) };
      case "StringLiteral":
        return { kind: "string", type: "string", value: unquote(this.text(node)) };
      case "VectorSelector":
        return this.selector(node);
      case "MatrixSelector":
        return this.matrix(node);
      case "OffsetExpr":
      case "BinaryExpr":
        return this.chain(node);
      case "AggregateExpr":
        return this.aggregate(node);
      case "FunctionCall":
        return this.call(node);
      case "UnaryExpr":
        return this.unary(node);
      case "SubqueryExpr":
        throw this.unsupported(node, "a subquery");
      case "StepInvariantExpr":
        throw this.unsupported(node, "the @ modifier");
      case "AnchoredExpr":
        throw this.unsupported(node, "the anchored modifier");
      case "SmoothedExpr":
        throw this.unsupported(node, "the smoothed modifier");
      default:
        throw this.unsupported(node, `the construct ${node.name}`);
    }
  }

  private selector(node: SyntaxNode): VectorSelector {
    const matchers: Matcher[] = [];
    const identifier = child(node, "Identifier");
    const name = identifier && this.text(identifier);
    if (name !== undefined) matchers.push({ label: "__name__", op: "=", value: name });
    const list = child(node, "LabelMatchers");
    let quotedName: string | undefined;
    for (const m of list ? children(list) : []) {
      if (m.name === "QuotedLabelName") {
        // {"metric.name"}: a UTF-8 metric name alone among the matchers.
        quotedName = unquote(this.text(m));
        matchers.push({ label: "__name__", op: "=", value: quotedName });
        continue;
      }
      if (m.name !== "UnquotedLabelMatcher" && m.name !== "QuotedLabelMatcher") continue;
      const labelNode = child(m, "LabelName") ?? child(m, "QuotedLabelName");
      const opNode = child(m, "MatchOp");
      const valueNode = child(m, "StringLiteral");
      if (!labelNode || !opNode || !valueNode) throw new ParseError(`parse error at position ${m.from}: incomplete label matcher`);
      const label = labelNode.name === "QuotedLabelName" ? unquote(this.text(labelNode)) : this.text(labelNode);
      const op = this.text(opNode) as MatchOp;
      const value = unquote(this.text(valueNode));
      if (op === "=~" || op === "!~") checkRegex(value);
      matchers.push({ label, op, value });
    }
    const names = matchers.filter((m) => m.label === "__name__" && m.op === "=");
    if ((name !== undefined || quotedName !== undefined) && names.length > 1) {
      throw new ParseError(`metric name must not be set twice: ${JSON.stringify(names[0]!.value)} or ${JSON.stringify(names[1]!.value)}`);
    }
    if (matchers.every(matchesEmpty)) throw new ParseError("vector selector must contain at least one non-empty matcher");
    return { kind: "selector", type: "vector", matchers, offsetMs: 0 };
  }

  private matrix(node: SyntaxNode): Expr {
    const [inner] = expressionChildren(node);
    const range = child(node, "DurationExpr");
    if (!inner || !range) throw new ParseError(`parse error at position ${node.from}: incomplete range selector`);
    if (inner.name === "OffsetExpr") throw new ParseError(`no offset modifiers allowed before range (at position ${inner.from})`);
    if (inner.name !== "VectorSelector") throw new ParseError(`ranges only allowed for vector selectors (at position ${node.from})`);
    const rangeMs = this.duration(range);
    if (rangeMs <= 0) throw new ParseError(`range selector's duration must be greater than 0 (at position ${range.from})`);
    return { kind: "matrix", type: "matrix", selector: this.selector(inner), rangeMs };
  }

  /**
   * A chain of binary operations and offsets, rebuilt with Prometheus' precedence. The grammar
   * gives a postfix `offset` lower precedence than binary operators ("a - b offset 5m * 2" comes
   * as ((a - b) offset 5m) * 2), and reads the sign of a number before `^` as part of it; in
   * PromQL an offset belongs to the selector just before it (a - ((b offset 5m) * 2)) and the sign
   * is a unary operator, looser than `^` (-2^2 is -4). So the chain's operands, offsets and
   * operators are taken in order and the tree is built again by precedence climbing.
   */
  private chain(node: SyntaxNode): Expr {
    const operands: Operand[] = [];
    const operators: Operator[] = [];
    this.flatten(node, operands, operators);
    let nextOperand = 0;
    let nextOperator = 0;
    const climb = (minPrecedence: number): Operand => {
      let lhs = operands[nextOperand++]!;
      while (nextOperator < operators.length && precedence[operators[nextOperator]!.op] >= minPrecedence) {
        const operator = operators[nextOperator++]!;
        // ^ is right-associative, every other operator left-associative.
        const rhs = climb(precedence[operator.op] + (operator.op === "^" ? 0 : 1));
        if (operator.op === "^" && lhs.negated) lhs = { expr: negate(this.binary(operator, lhs.negated, rhs.expr)) };
        else lhs = { expr: this.binary(operator, lhs.expr, rhs.expr) };
      }
      return lhs;
    };
    return climb(0).expr;
  }

  private flatten(node: SyntaxNode, operands: Operand[], operators: Operator[]): void {
    if (node.name === "BinaryExpr") {
      const sides = expressionChildren(node);
      const opNode = children(node).find((c) => c.name in binaryOps || c.name === "Atan2");
      if (sides.length !== 2 || !opNode) throw new ParseError(`parse error at position ${node.from}: incomplete binary expression`);
      if (opNode.name === "Atan2") throw this.unsupported(opNode, "the operator atan2");
      this.flatten(sides[0]!, operands, operators);
      operators.push({ node, op: binaryOps[opNode.name]! });
      this.flatten(sides[1]!, operands, operators);
      return;
    }
    if (node.name === "OffsetExpr") {
      const [inner] = expressionChildren(node);
      const durationNode = child(node, "OffsetDurationExpr");
      if (!inner || !durationNode) throw new ParseError(`parse error at position ${node.from}: incomplete offset`);
      const offsetMs = this.offsetDuration(durationNode);
      this.flatten(inner, operands, operators);
      const last = operands[operands.length - 1]!;
      withOffset(last.expr, offsetMs, node.from);
      return;
    }
    const expr = this.expr(node);
    const negative = expr.kind === "number" && node.name === "NumberDurationLiteral" && this.text(node).startsWith("-");
    operands.push(negative ? { expr, negated: { ...expr, value: -expr.value } } : { expr });
  }

  private offsetDuration(node: SyntaxNode): number {
    const sign = child(node, "UnaryOp");
    const nested = child(node, "OffsetDurationExpr");
    if (sign && nested) return (this.text(sign) === "-" ? -1 : 1) * this.offsetDuration(nested);
    const literal = child(node, "NumberDurationLiteralInDurationContext");
    if (!literal || children(node).length !== 1) throw this.unsupported(node, "a duration expression");
    return parseDurationMs(this.text(literal));
  }

  private duration(node: SyntaxNode): number {
    const literal = child(node, "NumberDurationLiteralInDurationContext");
    if (!literal || children(node).length !== 1) throw this.unsupported(node, "a duration expression");
    return parseDurationMs(this.text(literal));
  }

  private aggregate(node: SyntaxNode): Expr {
    const opNode = child(node, "AggregateOp");
    const body = child(node, "FunctionCallBody");
    if (!opNode || !body) throw new ParseError(`parse error at position ${node.from}: incomplete aggregation`);
    const op = this.text(opNode).toLowerCase();
    if (!aggregateOps.has(op)) throw this.unsupported(opNode, `the aggregation ${op}`);
    const modifier = child(node, "AggregateModifier");
    const grouping = modifier ? this.groupingLabels(child(modifier, "GroupingLabels")) : [];
    const without = modifier ? child(modifier, "Without") !== undefined : false;
    const args = expressionChildren(body).map((a) => this.expr(a));
    const wanted = parameterised.has(op) ? 2 : 1;
    if (args.length !== wanted)
      throw new ParseError(`wrong number of arguments for aggregate expression provided, expected ${wanted}, got ${args.length}`);
    const expr = args[wanted - 1]!;
    if (expr.type !== "vector") throw new ParseError(`expected type instant vector in aggregation expression, got ${typeNames[expr.type]}`);
    const param = wanted === 2 ? args[0]! : undefined;
    if (param && param.type !== "scalar") throw new ParseError(`expected type scalar in aggregation parameter, got ${typeNames[param.type]}`);
    return { kind: "aggregate", type: "vector", op: op as AggregateOp, param, expr, grouping, without };
  }

  private groupingLabels(node: SyntaxNode | undefined): string[] {
    if (!node) return [];
    return children(node)
      .filter((c) => c.name === "LabelName" || c.name === "QuotedLabelName")
      .map((c) => (c.name === "QuotedLabelName" ? unquote(this.text(c)) : this.text(c)));
  }

  private call(node: SyntaxNode): Expr {
    const identifier = child(node, "FunctionIdentifier");
    const body = child(node, "FunctionCallBody");
    if (!identifier || !body) throw new ParseError(`parse error at position ${node.from}: incomplete function call`);
    const name = this.text(identifier);
    const signature = functions[name];
    if (!signature) throw this.unsupported(identifier, `the function ${name}`);
    const args = expressionChildren(body).map((a) => this.expr(a));
    const { argTypes, optional } = signature;
    if (args.length > argTypes.length || args.length < argTypes.length - optional) {
      const expected = optional > 0 ? `${argTypes.length - optional} to ${argTypes.length}` : `${argTypes.length}`;
      throw new ParseError(`expected ${expected} argument(s) in call to ${JSON.stringify(name)}, got ${args.length}`);
    }
    args.forEach((arg, i) => {
      const want = argTypes[i]!;
      if (arg.type !== want)
        throw new ParseError(`expected type ${typeNames[want]} in call to function ${JSON.stringify(name)}, got ${typeNames[arg.type]}`);
    });
    return { kind: "call", type: signature.returns, func: name, args };
  }

  private binary(operator: Operator, lhs: Expr, rhs: Expr): Expr {
    const { node, op } = operator;
    const fill = child(node, "FillModifier");
    if (fill) throw this.unsupported(fill, "the fill modifier");
    const returnBool = child(node, "BoolModifier") !== undefined;
    const clause = child(node, "MatchingModifierClause");

    for (const side of [lhs, rhs]) {
      if (side.type !== "scalar" && side.type !== "vector")
        throw new ParseError("binary expression must contain only scalar and instant vector types");
    }
    const vectors = lhs.type === "vector" && rhs.type === "vector";
    if (returnBool && !comparisonOps.has(op)) throw new ParseError("bool modifier can only be used on comparison operators");
    if (comparisonOps.has(op) && lhs.type === "scalar" && rhs.type === "scalar" && !returnBool) {
      throw new ParseError("comparisons between scalars must use BOOL modifier");
    }
    if (setOps.has(op) && !vectors) throw new ParseError(`set operator ${JSON.stringify(op)} not allowed in binary scalar expression`);
    if (clause && !vectors) throw new ParseError("vector matching only allowed between instant vectors");

    let matching: VectorMatching | undefined;
    if (vectors) {
      matching = { card: setOps.has(op) ? "many-to-many" : "one-to-one", on: false, labels: [], include: [] };
      if (clause) {
        const groups = children(clause).filter((c) => c.name === "GroupingLabels");
        matching.on = child(clause, "On") !== undefined;
        matching.labels = this.groupingLabels(groups[0]);
        const left = child(clause, "GroupLeft");
        const right = child(clause, "GroupRight");
        if (left || right) {
          if (setOps.has(op)) throw new ParseError(`no grouping allowed for ${JSON.stringify(op)} operation`);
          matching.card = left ? "many-to-one" : "one-to-many";
          matching.include = this.groupingLabels(groups[1]);
          if (matching.on) {
            const both = matching.include.find((l) => matching!.labels.includes(l));
            if (both !== undefined) throw new ParseError(`label ${JSON.stringify(both)} must not occur in ON and GROUP clause at once`);
          }
        }
      }
    }
    const binary: Binary = {
      kind: "binary",
      type: vectors || lhs.type === "vector" || rhs.type === "vector" ? "vector" : "scalar",
      op,
      lhs,
      rhs,
      returnBool,
      matching,
    };
    return binary;
  }

  private unary(node: SyntaxNode): Expr {
    const opNode = child(node, "UnaryOp");
    const [inner] = expressionChildren(node);
    if (!opNode || !inner) throw new ParseError(`parse error at position ${node.from}: incomplete unary expression`);
    const expr = this.expr(inner);
    if (expr.type !== "scalar" && expr.type !== "vector")
      throw new ParseError("unary expression only allowed on expressions of type scalar or instant vector");
    return this.text(opNode) === "-" ? negate(expr) : expr;
  }
}

/** A chain's operand; `negated`: for a number literal written with a minus (which the grammar folds into it), the number without it. */
interface Operand {
  expr: Expr;
  negated?: NumberLiteral;
}

/** A chain's operator: its BinaryExpr node holds its modifiers (bool, on/ignoring, group_x). */
interface Operator {
  node: SyntaxNode;
  op: BinaryOp;
}

/** Prometheus' operator precedence (parser/generated_parser.y), higher binds tighter. */
const precedence: Record<BinaryOp, number> = {
  or: 1,
  and: 2,
  unless: 2,
  "==": 3,
  "!=": 3,
  ">": 3,
  "<": 3,
  ">=": 3,
  "<=": 3,
  "+": 4,
  "-": 4,
  "*": 5,
  "/": 5,
  "%": 5,
  "^": 6,
};

/** Sets the offset of the selector an `offset` follows (through a unary minus, which binds looser). */
function withOffset(expr: Expr, offsetMs: number, at: number): void {
  if (expr.kind === "unary") return withOffset(expr.expr, offsetMs, at);
  const selector = expr.kind === "selector" ? expr : expr.kind === "matrix" ? expr.selector : undefined;
  if (!selector) throw new ParseError(`offset modifier must be preceded by an instant vector selector or range vector selector (at position ${at})`);
  if (selector.offsetMs !== 0) throw new ParseError(`offset may not be set multiple times (at position ${at})`);
  selector.offsetMs = offsetMs;
}

function negate(expr: Expr): Expr {
  if (expr.kind === "number") return { ...expr, value: -expr.value };
  if (expr.type !== "scalar" && expr.type !== "vector")
    throw new ParseError("unary expression only allowed on expressions of type scalar or instant vector");
  return { kind: "unary", type: expr.type, op: "-", expr };
}

/** Whether a matcher matches the empty string (a selector of only such matchers would select everything). */
function matchesEmpty(m: Matcher): boolean {
  switch (m.op) {
    case "=":
      return m.value === "";
    case "!=":
      return m.value !== "";
    case "=~":
      return compileRegex(m.value).test("");
    case "!~":
      return !compileRegex(m.value).test("");
  }
}

function checkRegex(pattern: string): void {
  try {
    compileRegex(pattern);
  } catch (err) {
    throw new ParseError(`invalid regular expression ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
}

const durationUnitsMs: Record<string, number> = { y: 365 * 86_400_000, w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };
const durationPattern = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const durationUnitOrder = ["y", "w", "d", "h", "m", "s", "ms"];

/**
 * A duration in ms: Prometheus' units in decreasing order ("1h30m"), or a number of seconds
 * ("90", "1.5"), as Prometheus 3 accepts in durations.
 */
export function parseDurationMs(text: string): number {
  if (/^\d+(\.\d+)?$|^\.\d+$/.test(text)) return Math.round(Number(text) * 1000);
  const m = durationPattern.exec(text);
  if (!m || text === "") throw new ParseError(`not a valid duration: ${JSON.stringify(text)}`);
  let ms = 0;
  durationUnitOrder.forEach((unit, i) => {
    if (m[i + 1] !== undefined) ms += Number(m[i + 1]) * durationUnitsMs[unit]!;
  });
  return ms;
}

/** A number literal: decimal, hexadecimal, Inf or NaN (any case, signed), or a duration in seconds ("5m" is 300). */
export function parseNumber(text: string): number {
  // The grammar keeps a sign and the spaces after it in the literal ("- 1").
  const t = text.trim().replace(/^([+-])\s+/, "$1");
  const sign = t.startsWith("-") ? -1 : 1;
  const body = t.replace(/^[+-]/, "");
  if (/^inf$/i.test(body)) return sign * Infinity;
  if (/^nan$/i.test(body)) return Number.NaN;
  if (/^0x[0-9a-f]+$/i.test(body)) return sign * Number.parseInt(body.slice(2), 16);
  if (/^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(body)) return sign * Number(body);
  return (sign * parseDurationMs(body)) / 1000;
}

/** The value of a PromQL string literal: "…" and '…' with Go's escapes, `…` raw. */
export function unquote(literal: string): string {
  const quote = literal[0];
  const inner = literal.slice(1, -1);
  if (quote === "`") return inner;
  let out = "";
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = inner[++i];
    const simple: Record<string, string> = { a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\\": "\\", "'": "'", '"': '"' };
    if (e !== undefined && e in simple) out += simple[e];
    else if (e === "x" || e === "u" || e === "U") {
      const digits = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = inner.slice(i + 1, i + 1 + digits);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) throw new ParseError(`invalid escape \\${e}${hex} in string ${literal}`);
      // \x is a byte in Go; bytes above 0x7f would make invalid UTF-8, which label values cannot hold.
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += digits;
    } else if (e !== undefined && /[0-7]/.test(e)) {
      const octal = inner.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(octal)) throw new ParseError(`invalid escape \\${octal} in string ${literal}`);
      out += String.fromCharCode(Number.parseInt(octal, 8));
      i += 2;
    } else throw new ParseError(`invalid escape \\${e ?? ""} in string ${literal}`);
  }
  return out;
}
