/**
 * One quantile estimate from histogram buckets, shared by the live page and the InfluxDB push so
 * the two cannot disagree. It follows Prometheus' `histogram_quantile` (promql/quantile.go), edge
 * cases included.
 */

/** One cumulative bucket: the count of observations at most `le`. */
export interface Bucket {
  le: number;
  count: number;
}

/**
 * Estimates quantile `q` (0 to 1) from cumulative buckets as PromQL's `histogram_quantile` does:
 * linear interpolation inside the bucket holding the rank, from 0 for the first bucket; the upper
 * bound of the first bucket when that bound is 0 or below; the highest finite bound when the rank
 * falls in `+Inf`. Buckets may come in any order (they are sorted by bound). Returns undefined
 * when there is nothing to estimate from: no observations, no `+Inf` bucket, fewer than two
 * buckets, or a count that is not a finite number.
 *
 * @example
 * ```ts
 * bucketQuantile(0.5, [{ le: 1, count: 4 }, { le: 2, count: 8 }, { le: Infinity, count: 10 }]); // 1.25
 * ```
 */
export function bucketQuantile(q: number, buckets: readonly Bucket[]): number | undefined {
  if (!(q >= 0 && q <= 1)) {
    throw new RangeError(`Cannot estimate quantile ${q}: it must be between 0 and 1`);
  }
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const last = sorted.at(-1);
  if (sorted.length < 2 || last === undefined || last.le !== Number.POSITIVE_INFINITY) {
    return undefined;
  }
  const total = last.count;
  if (!Number.isFinite(total) || total <= 0) return undefined;
  const rank = q * total;
  let b = sorted.findIndex((bucket) => bucket.count >= rank);
  if (b === -1) b = sorted.length - 1;
  if (b === sorted.length - 1) return sorted[sorted.length - 2]!.le;
  const bucket = sorted[b]!;
  if (b === 0 && bucket.le <= 0) return bucket.le;
  const start = b === 0 ? 0 : sorted[b - 1]!.le;
  const below = b === 0 ? 0 : sorted[b - 1]!.count;
  const inBucket = bucket.count - below;
  if (inBucket <= 0) return bucket.le;
  return start + (bucket.le - start) * ((rank - below) / inBucket);
}
