import type { Binary, BinaryOp, VectorMatching } from "./ast.js";
import { EvaluationError } from "./errors.js";
import { dropName, groupingKey, keepLabels, labelsKey, nameLabel, type Labels, type Sample } from "./values.js";

/**
 * Binary operators with Prometheus' semantics (engine.go: VectorBinop, VectorscalarBinop,
 * VectorAnd/Or/Unless): arithmetic drops the metric name, a comparison filters unless it has
 * `bool`, vectors match one-to-one by default, many-to-one or one-to-many with
 * group_left/group_right, on their `on`/`ignoring` labels.
 */

const comparisons: ReadonlySet<BinaryOp> = new Set(["==", "!=", ">", "<", ">=", "<="]);

/** Go's math.Pow, which differs from `**` where the base is 1 or -1 (1 ** NaN is 1 in Go). */
function goPow(x: number, y: number): number {
  if (x === 1 || y === 0) return 1;
  if (x === -1 && !Number.isFinite(y) && !Number.isNaN(y)) return 1;
  return x ** y;
}

/** The result of `lhs op rhs` on two numbers, and for comparisons whether it holds (the value is then lhs). */
export function scalarOp(op: BinaryOp, lhs: number, rhs: number): { value: number; keep: boolean } {
  switch (op) {
    case "+":
      return { value: lhs + rhs, keep: true };
    case "-":
      return { value: lhs - rhs, keep: true };
    case "*":
      return { value: lhs * rhs, keep: true };
    case "/":
      return { value: lhs / rhs, keep: true };
    case "%":
      return { value: lhs % rhs, keep: true };
    case "^":
      return { value: goPow(lhs, rhs), keep: true };
    case "==":
      return { value: lhs, keep: lhs === rhs };
    case "!=":
      return { value: lhs, keep: lhs !== rhs };
    case ">":
      return { value: lhs, keep: lhs > rhs };
    case "<":
      return { value: lhs, keep: lhs < rhs };
    case ">=":
      return { value: lhs, keep: lhs >= rhs };
    case "<=":
      return { value: lhs, keep: lhs <= rhs };
    case "and":
    case "or":
    case "unless":
      throw new Error(`${op} is not an operation on numbers`);
  }
}

/** scalar op scalar (comparisons only with bool, which the parser ensures). */
export function scalarScalar(node: Binary, lhs: number, rhs: number): number {
  const { value, keep } = scalarOp(node.op, lhs, rhs);
  return comparisons.has(node.op) ? (keep ? 1 : 0) : value;
}

/** vector op scalar, or scalar op vector when `scalarLeft`: a comparison keeps the vector's value. */
export function vectorScalar(node: Binary, vector: Sample[], scalar: number, scalarLeft: boolean): Sample[] {
  const out: Sample[] = [];
  const comparison = comparisons.has(node.op);
  for (const s of vector) {
    const [l, r] = scalarLeft ? [scalar, s.value] : [s.value, scalar];
    let { value, keep } = scalarOp(node.op, l, r);
    if (comparison && scalarLeft) value = s.value;
    if (node.returnBool) {
      value = keep ? 1 : 0;
      keep = true;
    }
    if (!keep) continue;
    out.push({ labels: !comparison || node.returnBool ? dropName(s.labels) : s.labels, value });
  }
  return out;
}

function signature(labels: Labels, matching: VectorMatching): string {
  return groupingKey(labels, matching.on, matching.labels);
}

/** vector op vector, for the arithmetic and comparison operators. */
export function vectorVector(node: Binary, lhs: Sample[], rhs: Sample[]): Sample[] {
  const matching = node.matching!;
  if (lhs.length === 0 || rhs.length === 0) return [];
  const oneToMany = matching.card === "one-to-many";
  // The "one" side is hashed; one-to-many swaps the sides and swaps the operands back for the operation.
  const [many, one] = oneToMany ? [rhs, lhs] : [lhs, rhs];
  const oneSide = new Map<string, Sample>();
  for (const s of one) {
    const sig = signature(s.labels, matching);
    const duplicate = oneSide.get(sig);
    if (duplicate) {
      throw new EvaluationError(
        `found duplicate series for the match group ${describeGroup(s.labels, matching)} on the ${oneToMany ? "left" : "right"} hand-side of the operation: [${describe(s.labels)}, ${describe(duplicate.labels)}];many-to-many matching not allowed: matching labels must be unique on one side`,
      );
    }
    oneSide.set(sig, s);
  }
  const comparison = comparisons.has(node.op);
  const matched = new Map<string, Set<string> | undefined>();
  const out: Sample[] = [];
  for (const s of many) {
    const sig = signature(s.labels, matching);
    const other = oneSide.get(sig);
    if (!other) continue;
    const [l, r] = oneToMany ? [other.value, s.value] : [s.value, other.value];
    let { value, keep } = scalarOp(node.op, l, r);
    if (node.returnBool) {
      value = keep ? 1 : 0;
      keep = true;
    }
    if (!keep) continue;
    let labels = resultLabels(s.labels, other.labels, !comparison, matching);
    if (node.returnBool) labels = dropName(labels);
    if (matching.card === "one-to-one") {
      if (matched.has(sig)) throw new EvaluationError("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
      matched.set(sig, undefined);
    } else {
      let seen = matched.get(sig);
      if (!seen) matched.set(sig, (seen = new Set()));
      const key = labelsKey(labels);
      if (seen.has(key)) throw new EvaluationError("multiple matches for labels: grouping labels must ensure unique matches");
      seen.add(key);
    }
    out.push({ labels, value });
  }
  return out;
}

/** Prometheus' resultMetric: the "many" side's labels, narrowed for one-to-one `on`/`ignoring`, with group_x labels from the "one" side. */
function resultLabels(many: Labels, one: Labels, dropMetricName: boolean, matching: VectorMatching): Labels {
  let labels: Record<string, string> = { ...many };
  if (dropMetricName) delete labels[nameLabel];
  if (matching.card === "one-to-one") {
    if (matching.on) labels = { ...keepLabels(labels, matching.labels) };
    else for (const n of matching.labels) delete labels[n];
  }
  for (const n of matching.include) {
    const v = one[n];
    if (v !== undefined && v !== "") labels[n] = v;
    else delete labels[n];
  }
  return labels;
}

/** and, or, unless: which samples of each side remain, by their matching signatures. */
export function setOperation(node: Binary, lhs: Sample[], rhs: Sample[]): Sample[] {
  const matching = node.matching!;
  const rightSigs = new Set(rhs.map((s) => signature(s.labels, matching)));
  switch (node.op) {
    case "and":
      return lhs.filter((s) => rightSigs.has(signature(s.labels, matching)));
    case "unless":
      return lhs.filter((s) => !rightSigs.has(signature(s.labels, matching)));
    case "or": {
      const leftSigs = new Set(lhs.map((s) => signature(s.labels, matching)));
      return [...lhs, ...rhs.filter((s) => !leftSigs.has(signature(s.labels, matching)))];
    }
    default:
      throw new Error(`${node.op} is not a set operator`);
  }
}

/** A label set as Prometheus prints it: {a="b", c="d"}, the metric name in front. */
export function describe(labels: Labels): string {
  const { [nameLabel]: name, ...rest } = labels;
  const inner = Object.keys(rest)
    .sort()
    .map((n) => `${n}=${JSON.stringify(rest[n])}`)
    .join(", ");
  return `${name ?? ""}{${inner}}`;
}

function describeGroup(labels: Labels, matching: VectorMatching): string {
  if (matching.on) return describe(keepLabels(labels, matching.labels));
  const rest: Record<string, string> = { ...dropName(labels) };
  for (const n of matching.labels) delete rest[n];
  return describe(rest);
}
