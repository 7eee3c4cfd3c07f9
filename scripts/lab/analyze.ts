// Pure analysis of observer series: when did a storm reach a port, when did it stop, how many
// frames crossed, and its rate over time. No I/O, no clocks: every time comes from the data.

/** One interface: monotonic sample times (ns) and rx_packets at those times (non-decreasing). */
export interface CounterSeries {
  t: number[];
  c: number[];
  /**
   * 'kernel': observe-ts, times are the kernel's receive stamps of the frames themselves and c
   * counts frames since its socket was bound (exact, whenever the reader ran); absent: observe.mjs,
   * polled rx_packets (a change lies between two points).
   */
  clock?: 'kernel';
  /** observe-ts: frames received and lost because its ring was full (rx_packets counted them). */
  drops?: number;
  /** observe-ts: [fromNs, toNs, frames] spans within which those frames arrived. */
  dropWindows?: Array<[number, number, number]>;
}

/** Output of observe.mjs or observe-ts: one series per interface. */
export type Series = Record<string, CounterSeries>;

/**
 * Frames a kernel-timed series lost (ring full) within [fromNs, toNs]: counts there, and the
 * times derived from them, miss those frames. 0 for a polled series (it loses none).
 */
export function ringDropsBetween(s: CounterSeries, fromNs: number, toNs: number): number {
  return (s.dropWindows ?? []).filter(([a, b]) => b >= fromNs && a <= toNs).reduce((sum, w) => sum + w[2], 0);
}

export interface StormStats {
  /** Sample time at which the first frame after the injection was seen; null if none was. */
  firstFrameNs: number | null;
  /** Time of the last increment before a confirmed quiet gap; null if never quiet while observed. */
  quietAtNs: number | null;
  /**
   * The sample before quietAtNs: prod's last frame came after it. With an observer that keeps the
   * poll before each change (observe.mjs), quietAtNs - quietAfterNs is how late the observer
   * polled; a real-time thread holding its core shows here, not in the storm. With observe-ts
   * quietAtNs is the last frame's own kernel time and this its predecessor's (<= its gap, 50 us,
   * earlier) or 1 ns before it: the difference is ~0 however late the reader ran.
   */
  quietAfterNs: number | null;
  msToQuiet: number | null;
  /** Frames counted from (including) the first frame up to quiet. */
  framesLeaked: number | null;
}

function check(s: CounterSeries): void {
  if (s.t.length !== s.c.length) throw new Error('series: t and c differ in length');
}

/** Index of the last sample with t <= tNs, or -1. Binary search: t is sorted. */
export function indexAt(s: CounterSeries, tNs: number): number {
  let lo = 0;
  let hi = s.t.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((s.t[mid] as number) <= tNs) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

/** Counter value as last seen at or before tNs (NaN before the first sample). */
export function countAt(s: CounterSeries, tNs: number): number {
  const i = indexAt(s, tNs);
  return i < 0 ? NaN : (s.c[i] as number);
}

/** Mean rx pps between two times, from the step function of the samples. */
export function ppsBetween(s: CounterSeries, t0Ns: number, t1Ns: number): number {
  if (!(t1Ns > t0Ns)) throw new Error('ppsBetween: t1 must be after t0');
  return ((countAt(s, t1Ns) - countAt(s, t0Ns)) * 1e9) / (t1Ns - t0Ns);
}

/**
 * Storm timing at one observer. The first frame is the first increment after the last sample
 * taken at or before tInjectNs. Quiet is the first increment after which the count is seen
 * unchanged for quietGapMs: the gap must be observed (a later sample with the same count), so
 * an observer that stalled for 20 ms does not fake a quiet period. With settleFrames, a gap
 * after which the rest of the observation still sees settleFrames frames or more is a lull (the
 * storm went on after it), not its end: the bench then takes the next gap. Without it, the first
 * gap is the end (the esxi bench saw that fall before the cut: 4 and 46 ms, storms that went on
 * to 166 and 207 ms at prod).
 */
/**
 * Frames the benches allow after a quiet gap before they call it a lull: the lab sends nothing of
 * its own, so after a storm's real end prod sees none; a storm that resumes brings hundreds (a
 * slow 1500-byte loop ~165/s, the rest 10^5/s).
 */
export const SETTLE_FRAMES = 10;

export function stormStats(s: CounterSeries, tInjectNs: number, quietGapMs = 20, settleFrames = Infinity): StormStats {
  check(s);
  const none: StormStats = { firstFrameNs: null, quietAtNs: null, quietAfterNs: null, msToQuiet: null, framesLeaked: null };
  const n = s.t.length;
  const b = Math.max(0, indexAt(s, tInjectNs));
  let first = -1;
  for (let i = b + 1; i < n; i++) {
    if ((s.c[i] as number) > (s.c[i - 1] as number)) {
      first = i;
      break;
    }
  }
  if (first < 0) return none;
  const base = s.c[first - 1] as number;
  const firstFrameNs = s.t[first] as number;
  const gapNs = quietGapMs * 1e6;
  let m = first; // first sample at least gapNs after the candidate; only moves forward
  for (let j = first; j < n; j++) {
    const cj = s.c[j] as number;
    if (j > first && cj === (s.c[j - 1] as number)) continue; // not an increment
    const tj = s.t[j] as number;
    if (m < j) m = j;
    while (m < n && (s.t[m] as number) - tj < gapNs) m++;
    if (m >= n) break; // observation ended before a full gap: not known to be quiet
    if ((s.c[m] as number) === cj && (s.c[n - 1] as number) - cj < settleFrames) {
      return { firstFrameNs, quietAtNs: tj, quietAfterNs: s.t[j - 1] as number, msToQuiet: (tj - firstFrameNs) / 1e6, framesLeaked: cj - base };
    }
  }
  return { ...none, firstFrameNs };
}

/**
 * Rate per bin of binMs from t0Ns (default: the first sample) to the last full bin.
 * tMs[i] is the start of bin i relative to t0Ns; pps[i] covers [tMs[i], tMs[i] + binMs).
 */
export function ppsSeries(s: CounterSeries, binMs: number, t0Ns?: number): { tMs: number[]; pps: number[] } {
  check(s);
  if (!(binMs > 0)) throw new Error('ppsSeries: binMs must be > 0');
  const tMs: number[] = [];
  const pps: number[] = [];
  const n = s.t.length;
  if (n === 0) return { tMs, pps };
  const t0 = t0Ns ?? (s.t[0] as number);
  const binNs = binMs * 1e6;
  const tEnd = s.t[n - 1] as number;
  let prev = countAt(s, t0);
  for (let k = 0; t0 + (k + 1) * binNs <= tEnd; k++) {
    const cur = countAt(s, t0 + (k + 1) * binNs);
    tMs.push(k * binMs);
    // Before the first sample nothing is known: count it as no traffic rather than NaN.
    pps.push(Number.isNaN(prev) || Number.isNaN(cur) ? 0 : ((cur - prev) * 1000) / binMs);
    prev = cur;
  }
  return { tMs, pps };
}

/** Median of numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const a = [...xs].sort((x, y) => x - y);
  const h = a.length >> 1;
  return a.length % 2 ? (a[h] as number) : ((a[h - 1] as number) + (a[h] as number)) / 2;
}
