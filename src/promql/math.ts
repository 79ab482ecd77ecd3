/** Floating-point helpers that Prometheus' evaluation uses, so that sums and quantiles agree with it to the last bit where they can. */

/**
 * One step of Kahan-Babuška-Neumaier summation (Prometheus' kahanSumInc): the new sum and the
 * new compensation of the lost low-order bits.
 */
export function kahanSumInc(inc: number, sum: number, c: number): [number, number] {
  const t = sum + inc;
  if (!Number.isFinite(t) && !Number.isNaN(t)) return [t, 0];
  if (Math.abs(sum) >= Math.abs(inc)) return [t, c + (sum - t + inc)];
  return [t, c + (inc - t + sum)];
}

/**
 * The φ-quantile of values (Prometheus' quantile): linear interpolation between the two nearest
 * ranks; -Inf below 0, +Inf above 1, NaN for no values or a NaN φ. NaN values sort first, as Go's
 * sort of Prometheus' value heap puts them. Sorts `values` in place.
 */
export function quantile(q: number, values: number[]): number {
  if (values.length === 0 || Number.isNaN(q)) return Number.NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  values.sort((a, b) => (Number.isNaN(a) ? (Number.isNaN(b) ? 0 : -1) : Number.isNaN(b) ? 1 : a - b));
  const n = values.length;
  const rank = q * (n - 1);
  const lower = Math.max(0, Math.floor(rank));
  const upper = Math.min(n - 1, lower + 1);
  const weight = rank - Math.floor(rank);
  return values[lower]! * (1 - weight) + values[upper]! * weight;
}
