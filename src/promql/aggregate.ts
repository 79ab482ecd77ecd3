import type { Aggregate } from "./ast.js";
import { EvaluationError } from "./errors.js";
import { compensatedSum, mean, quantile } from "./math.js";
import { groupingKey, keepLabels, nameLabel, withoutLabels, type Labels, type Sample } from "./values.js";

/**
 * Aggregation operators over one instant vector, with Prometheus' semantics (engine.go:
 * aggregation, aggregationK): groups by the `by` labels or by every label but the `without` ones
 * and the metric name, in the order each group first appears; compensated sums as Prometheus
 * computes them; topk and bottomk keep their samples' labels.
 */

interface Group {
  labels: Labels;
  samples: Sample[];
}

function groupsOf(node: Aggregate, samples: Sample[]): Group[] {
  const groups = new Map<string, Group>();
  const without = new Set([...node.grouping, nameLabel]);
  for (const s of samples) {
    const key = groupingKey(s.labels, !node.without, node.grouping);
    let group = groups.get(key);
    if (!group) {
      const labels = node.without ? withoutLabels(s.labels, without) : keepLabels(s.labels, node.grouping);
      groups.set(key, (group = { labels, samples: [] }));
    }
    group.samples.push(s);
  }
  return [...groups.values()];
}

/** Aggregates `samples`; `param` is topk's/bottomk's k or quantile's φ at this step. */
export function aggregate(node: Aggregate, samples: Sample[], param: number): Sample[] {
  const groups = groupsOf(node, samples);
  if (node.op === "topk" || node.op === "bottomk") return selectK(node.op, groups, param);
  return groups.map((g) => ({
    labels: g.labels,
    value: reduce(
      node.op,
      g.samples.map((s) => s.value),
      param,
    ),
  }));
}

function reduce(op: Aggregate["op"], values: number[], param: number): number {
  switch (op) {
    case "sum":
      return compensatedSum(values);
    case "avg":
      return mean(values);
    case "min":
      return values.reduce((min, v) => (min > v || Number.isNaN(min) ? v : min));
    case "max":
      return values.reduce((max, v) => (max < v || Number.isNaN(max) ? v : max));
    case "count":
      return values.length;
    case "group":
      return 1;
    case "stddev":
    case "stdvar": {
      // Welford's online variance, as Prometheus; a NaN or infinite first value makes it NaN.
      let m = values[0]!;
      let variance = Number.isFinite(m) ? 0 : Number.NaN;
      for (let i = 1; i < values.length; i++) {
        const delta = values[i]! - m;
        m += delta / (i + 1);
        variance += delta * (values[i]! - m);
      }
      variance /= values.length;
      return op === "stdvar" ? variance : Math.sqrt(variance);
    }
    case "quantile":
      return quantile(param, values);
    case "topk":
    case "bottomk":
      throw new Error(`${op} is not a reduction`);
  }
}

/** topk and bottomk: per group the k largest (smallest) samples, NaN counting as the smallest (largest), in that order. */
function selectK(op: "topk" | "bottomk", groups: Group[], param: number): Sample[] {
  if (!Number.isFinite(param) || Math.abs(param) > Number.MAX_SAFE_INTEGER) throw new EvaluationError(`Scalar value ${param} overflows int64`);
  const k = Math.trunc(param);
  if (k < 1) return [];
  const sign = op === "topk" ? -1 : 1;
  const out: Sample[] = [];
  for (const g of groups) {
    // Stable: among equal values the first seen wins, as with Prometheus' heap.
    const sorted = [...g.samples].sort((a, b) => {
      const [an, bn] = [Number.isNaN(a.value), Number.isNaN(b.value)];
      if (an || bn) return an === bn ? 0 : an ? 1 : -1;
      return sign * (a.value - b.value);
    });
    out.push(...sorted.slice(0, k));
  }
  return out;
}
