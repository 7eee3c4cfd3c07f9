// The reaction-time histogram (verdict to verified link-down) the daemon keeps from its start;
// notify/metrics.ts renders it. Apart from metrics.ts so that an agent without metrics never
// loads the HTTP server's code (see agent/daemon.ts).

/** Default upper bounds (ms) of the reaction histogram: verdict to verified link-down. */
export const REACTION_BUCKETS_MS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000];

/** A histogram as plain data: counts[i] observations <= bounds[i] (not cumulative); the last slot is +Inf. */
export interface Histogram {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

export function createHistogram(bounds: readonly number[] = REACTION_BUCKETS_MS): Histogram {
  return { bounds, counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/** Records one observation in place (no allocation). */
export function observe(h: Histogram, value: number): void {
  if (!Number.isFinite(value)) return;
  let i = 0;
  while (i < h.bounds.length && value > h.bounds[i]!) i++;
  h.counts[i] = (h.counts[i] ?? 0) + 1;
  h.sum += value;
  h.count++;
}
