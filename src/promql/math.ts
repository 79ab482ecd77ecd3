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

/** A Kahan-compensated sum (sum and sum_over_time); an infinite sum is returned alone, its compensation being meaningless. */
export function compensatedSum(values: ArrayLike<number>): number {
  let sum = 0;
  let c = 0;
  for (let i = 0; i < values.length; i++) [sum, c] = kahanSumInc(values[i]!, sum, c);
  return Number.isFinite(sum) ? sum + c : sum;
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

/** A classic histogram's bucket: its upper bound (`le`) and the cumulative count of observations up to it. */
export interface Bucket {
  upperBound: number;
  count: number;
}

/** Prometheus' tolerance for bucket counts that differ by floating-point noise only (quantile.go: smallDeltaTolerance). */
const smallDeltaTolerance = 1e-12;
const minNormal = 2.2250738585072014e-308;

/** Prometheus' almost.Equal. */
function almostEqual(a: number, b: number, epsilon: number): boolean {
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  if (a === b) return true;
  const absSum = Math.abs(a) + Math.abs(b);
  const diff = Math.abs(a - b);
  if (a === 0 || b === 0 || absSum < minNormal) return diff < epsilon * minNormal;
  return diff / Math.min(absSum, Number.MAX_VALUE) < epsilon;
}

/** Prometheus' BucketQuantile (promql/quantile.go) for one classic histogram's buckets. */
export function bucketQuantile(q: number, input: Bucket[]): number {
  if (Number.isNaN(q)) return Number.NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...input].sort((a, b) => a.upperBound - b.upperBound);
  if (sorted[sorted.length - 1]!.upperBound !== Infinity) return Number.NaN;
  // Buckets of the same bound (series that differ only in how `le` is written) count together.
  const buckets: Bucket[] = [];
  for (const b of sorted) {
    const last = buckets[buckets.length - 1];
    if (last && last.upperBound === b.upperBound) last.count += b.count;
    else buckets.push({ ...b });
  }
  // Cumulative counts must not decrease; scrapes of buckets at slightly different times can make them.
  let prev = buckets[0]!.count;
  for (let i = 1; i < buckets.length; i++) {
    const cur = buckets[i]!.count;
    if (cur === prev) continue;
    if (almostEqual(prev, cur, smallDeltaTolerance) || cur < prev) {
      buckets[i]!.count = prev;
      continue;
    }
    prev = cur;
  }
  if (buckets.length < 2) return Number.NaN;
  const observations = buckets[buckets.length - 1]!.count;
  if (observations === 0) return Number.NaN;
  let rank = q * observations;
  let b = buckets.length - 1;
  for (let i = 0; i < buckets.length - 1; i++) {
    if (buckets[i]!.count >= rank) {
      b = i;
      break;
    }
  }
  if (b === buckets.length - 1) return buckets[buckets.length - 2]!.upperBound;
  if (b === 0 && buckets[0]!.upperBound <= 0) return buckets[0]!.upperBound;
  let bucketStart = 0;
  const bucketEnd = buckets[b]!.upperBound;
  let count = buckets[b]!.count;
  if (b > 0) {
    bucketStart = buckets[b - 1]!.upperBound;
    count -= buckets[b - 1]!.count;
    rank -= buckets[b - 1]!.count;
  }
  return bucketStart + (bucketEnd - bucketStart) * (rank / count);
}

/**
 * The mean as Prometheus 3 computes avg and avg_over_time: a compensated sum over the count while
 * the sum stays finite, else an incremental mean (which cannot overflow). Prometheus' two
 * functions differ only in how they write the incremental step, which agrees to rounding.
 */
export function mean(values: ArrayLike<number>): number {
  let sum = values[0]!;
  let c = 0;
  let m = 0;
  let incremental = false;
  for (let i = 1; i < values.length; i++) {
    const v = values[i]!;
    const count = i + 1;
    if (!incremental) {
      const [newSum, newC] = kahanSumInc(v, sum, c);
      if (Number.isFinite(newSum) || Number.isNaN(newSum)) {
        sum = newSum;
        c = newC;
        continue;
      }
      incremental = true;
      m = sum / (count - 1);
      c /= count - 1;
    }
    if (!Number.isFinite(m) && !Number.isNaN(m)) {
      // An infinite mean stays what it is unless an infinity of the other sign (or NaN) comes.
      if (!Number.isFinite(v) && !Number.isNaN(v) && m > 0 === v > 0) continue;
      if (Number.isFinite(v)) continue;
    }
    const current = m + c;
    [m, c] = kahanSumInc(v / count - current / count, m, c);
  }
  return incremental ? m + c : (sum + c) / values.length;
}
