// Small pure statistics for benchmark reports.

/** Nearest-rank percentile (p in 0..100) of xs; NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  const a = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (a.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * a.length));
  return a[Math.min(rank, a.length) - 1]!;
}

export function summary(xs: readonly number[]): { n: number; p50: number; p95: number; p99: number; max: number; min: number } {
  return { n: xs.length, min: percentile(xs, 0), p50: percentile(xs, 50), p95: percentile(xs, 95), p99: percentile(xs, 99), max: percentile(xs, 100) };
}

export const fmt = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
