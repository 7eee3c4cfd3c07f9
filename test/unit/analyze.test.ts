import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  countAt,
  median,
  ppsBetween,
  ppsSeries,
  SETTLE_FRAMES,
  stormStats,
  type CounterSeries,
} from '../../scripts/lab/analyze.js';

const MS = 1e6;

/** Samples every stepUs from 0 to endMs; rate(tMs) frames per ms added between samples. */
function synth(endMs: number, stepUs: number, ratePerMs: (tMs: number) => number): CounterSeries {
  const t: number[] = [];
  const c: number[] = [];
  let count = 1000; // a non-zero starting counter, as on a real interface
  let acc = 0;
  for (let us = 0; us <= endMs * 1000; us += stepUs) {
    const tMs = us / 1000;
    acc += ratePerMs(tMs) * (stepUs / 1000);
    const whole = Math.floor(acc);
    count += whole;
    acc -= whole;
    t.push(us * 1000);
    c.push(count);
  }
  return { t, c };
}

describe('stormStats', () => {
  it('with settleFrames, a 25 ms lull the storm resumed after is not its end (the first gap alone says it is)', () => {
    // A loop at 100 frames/ms from 0 to 10 ms, stalled 10-35 ms (a breaker's first shut blocking,
    // a CPU-starved softirq), on again 35-60 ms until the port stopped, then silence to 400 ms.
    const s = synth(400, 250, (t) => ((t > 0 && t <= 10) || (t > 35 && t <= 60) ? 100 : 0));
    const first = stormStats(s, 0);
    expect(first.quietAtNs! / MS).toBeCloseTo(10, 0);
    const settled = stormStats(s, 0, 20, SETTLE_FRAMES);
    expect(settled.quietAtNs! / MS).toBeCloseTo(60, 0);
    expect(settled.framesLeaked).toBeGreaterThan(3400);
    // A stray frame or two after the real end does not move it.
    const stray = synth(400, 250, (t) => (t > 0 && t <= 10 ? 100 : t > 200 && t <= 200.25 ? 4 : 0));
    expect(stormStats(stray, 0, 20, SETTLE_FRAMES).quietAtNs! / MS).toBeCloseTo(10, 0);
  });

  it('times a storm from first frame to the last increment before a quiet gap', () => {
    // 100 frames/ms (100k pps) from 100 ms to 400 ms, then silence.
    const s = synth(600, 250, (t) => (t > 100 && t <= 400 ? 100 : 0));
    const st = stormStats(s, 100 * MS);
    expect(st.firstFrameNs).toBe(100.25 * MS);
    expect(st.quietAtNs).toBe(400 * MS);
    expect(st.msToQuiet).toBeCloseTo(299.75, 6);
    expect(st.framesLeaked).toBe(30_000);
  });

  it('ignores frames counted before the injection', () => {
    const s = synth(300, 250, (t) => (t < 50 ? 10 : t > 100 && t <= 150 ? 20 : 0));
    const st = stormStats(s, 99 * MS);
    expect(st.firstFrameNs).toBe(100.25 * MS);
    expect(st.framesLeaked).toBe(1000);
  });

  it('a pause shorter than the gap does not end the storm', () => {
    const s = synth(500, 250, (t) => ((t > 10 && t <= 100) || (t > 110 && t <= 200) ? 50 : 0));
    const st = stormStats(s, 0, 20);
    expect(st.quietAtNs).toBe(200 * MS);
    expect(st.framesLeaked).toBe(50 * 180);
  });

  it('an observer stall is not mistaken for quiet: the gap must be observed', () => {
    const s = synth(500, 250, (t) => (t > 10 && t <= 300 ? 50 : 0));
    // Drop all samples between 100 and 140 ms: the count jumps across the hole.
    const keep = s.t.map((t) => t <= 100 * MS || t >= 140 * MS);
    const holey = { t: s.t.filter((_, i) => keep[i]), c: s.c.filter((_, i) => keep[i]) };
    expect(stormStats(holey, 0).quietAtNs).toBe(300 * MS);
  });

  it('a storm still running at the end of the observation has no quiet time', () => {
    const s = synth(200, 250, (t) => (t > 50 ? 100 : 0));
    const st = stormStats(s, 0);
    expect(st.firstFrameNs).toBe(50.25 * MS);
    expect(st.quietAtNs).toBeNull();
    expect(st.msToQuiet).toBeNull();
    expect(st.framesLeaked).toBeNull();
  });

  it('no frame after the injection gives nulls; one frame is quiet at once', () => {
    const s = synth(100, 250, () => 0);
    expect(stormStats(s, 10 * MS)).toEqual({ firstFrameNs: null, quietAtNs: null, quietAfterNs: null, msToQuiet: null, framesLeaked: null });
    const one = { t: [0, 1 * MS, 2 * MS, 30 * MS], c: [5, 5, 6, 6] };
    expect(stormStats(one, 0.5 * MS)).toEqual({ firstFrameNs: 2 * MS, quietAtNs: 2 * MS, quietAfterNs: 1 * MS, msToQuiet: 0, framesLeaked: 1 });
  });

  it('bounds the last frame by the sample before the quiet one (an observer that polled late)', () => {
    // Polls every 0.25 ms until 3 ms, then none until 9 ms (its core held), then on.
    const s = { t: [0, 1 * MS, 2 * MS, 3 * MS, 9 * MS, 40 * MS], c: [0, 10, 20, 25, 30, 30] };
    const st = stormStats(s, 0.5 * MS);
    expect(st.quietAtNs).toBe(9 * MS);
    expect(st.quietAfterNs).toBe(3 * MS);
  });

  it('holds its invariants on arbitrary monotone series', () => {
    const arb = fc.array(fc.tuple(fc.integer({ min: 1, max: 40 * MS }), fc.integer({ min: 0, max: 5 })), {
      minLength: 1,
      maxLength: 200,
    });
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 100 * MS }), (steps, inj) => {
        let t = 0;
        let c = 0;
        const s: CounterSeries = { t: [], c: [] };
        for (const [dt, dc] of steps) {
          t += dt;
          c += dc;
          s.t.push(t);
          s.c.push(c);
        }
        const st = stormStats(s, inj);
        if (st.firstFrameNs === null) return st.quietAtNs === null;
        if (st.quietAtNs === null) return st.framesLeaked === null;
        return (
          st.quietAtNs >= st.firstFrameNs &&
          (st.framesLeaked as number) >= 1 &&
          (st.framesLeaked as number) <= c &&
          // quiet means nothing moved for the gap afterwards
          countAt(s, st.quietAtNs + 20 * MS) === countAt(s, st.quietAtNs)
        );
      }),
    );
  });
});

describe('ppsSeries', () => {
  it('gives a constant rate for a constant stream', () => {
    const s = synth(100, 250, () => 40); // 40 frames/ms = 40k pps
    const { tMs, pps } = ppsSeries(s, 10);
    expect(tMs).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    for (const p of pps) expect(p).toBe(40_000);
  });

  it('bins from the given origin and sums to the counted frames', () => {
    const s = synth(100, 250, (t) => (t > 30 && t <= 60 ? 100 : 0));
    const { tMs, pps } = ppsSeries(s, 5, 20 * MS);
    expect(tMs[0]).toBe(0);
    expect(tMs.length).toBe(16);
    const frames = pps.reduce((a, p) => a + (p * 5) / 1000, 0);
    expect(frames).toBe(3000);
    expect(pps[0]).toBe(0);
    expect(pps[3]).toBe(100_000);
  });

  it('treats time before the first sample as no traffic and rejects a zero bin', () => {
    const s = { t: [10 * MS, 20 * MS, 30 * MS], c: [0, 10, 20] };
    expect(ppsSeries(s, 10, 0).pps).toEqual([0, 1000, 1000]);
    expect(() => ppsSeries(s, 0)).toThrow();
    expect(ppsSeries({ t: [], c: [] }, 10)).toEqual({ tMs: [], pps: [] });
  });
});

describe('helpers', () => {
  it('ppsBetween and median', () => {
    const s = synth(100, 250, () => 10);
    expect(ppsBetween(s, 10 * MS, 60 * MS)).toBe(10_000);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
