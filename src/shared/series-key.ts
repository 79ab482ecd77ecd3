import type { Labels } from "./labels.js";

/** Canonical text of a series: metric and labels sorted by key. */
export function seriesKey(metric: string, labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return metric;
  keys.sort();
  let out = metric;
  for (const k of keys) out += `\u0000${k}\u0001${labels[k]}`;
  return out;
}
