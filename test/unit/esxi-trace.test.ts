// bench-esxi's settled quiet (scripts/lab/esxi/trace.ts): a lull early in a storm is not its end,
// and a trickle of frames after it (flooded unicast) does not move its end.
import { describe, expect, it } from 'vitest';
import { settledQuiet } from '../../scripts/lab/esxi/trace.js';
import { stormStats } from '../../scripts/lab/analyze.js';

/** A 1 ms counter series from 0 to `ms`, one frame in each listed ms. */
function series(ms: number, frameAt: (t: number) => boolean): { t: number[]; c: number[] } {
  const t: number[] = [];
  const c: number[] = [];
  let n = 0;
  for (let i = 0; i <= ms; i++) {
    if (frameAt(i)) n++;
    t.push(i * 1e6);
    c.push(n);
  }
  return { t, c };
}

describe('settled quiet at prod', () => {
  it('a 25 ms lull early in the storm is not its end; the first quiet is', () => {
    // Frames 1-10 ms, a lull, the storm 36-150 ms (every ms), then silence.
    const s = series(1000, (i) => (i >= 1 && i <= 10) || (i >= 36 && i <= 150));
    expect(stormStats(s, 0).quietAtNs).toBe(10e6); // the bench's own criterion: the lull
    expect(settledQuiet(s, 0)).toEqual({ ms: 150, frames: 125 });
  });

  it('a few stray frames after the storm do not move its end; a storm that goes on has none', () => {
    const s = series(1000, (i) => (i >= 1 && i <= 100) || i === 300 || i === 600);
    expect(settledQuiet(s, 0).ms).toBe(100);
    expect(settledQuiet(series(600, (i) => i >= 1), 0).ms).toBeNaN();
  });
});
