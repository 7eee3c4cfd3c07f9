// guard-up's watch after a port starts forwarding: a pure step over counter samples with the
// storm detector's thresholds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { POLICY_DEFAULTS } from '../../agent/policy/defaults.js';
import { initialWatchState, watchStep, WATCH_WINDOW, type WatchSample, type WatchState } from '../../agent/preflight/watch.js';

const th = { ...POLICY_DEFAULTS.defaults }; // floodPps 20000, rxPps 60000, holdSamples 2

function feed(samples: WatchSample[], t = th): { state: WatchState; trips: number[] } {
  let st = initialWatchState();
  const trips: number[] = [];
  samples.forEach((s, i) => {
    const r = watchStep(st, s, t);
    st = r.state;
    if (r.trip) trips.push(i);
  });
  return { state: st, trips };
}

/** Samples every dtMs with the given flood and rx rates (pps) per interval. */
function series(rates: Array<[flood: number, rx: number]>, dtMs = 2): WatchSample[] {
  let flood = 0;
  let rx = 0;
  const out: WatchSample[] = [{ tMs: 0, rxPackets: 0, floodPackets: 0 }];
  rates.forEach(([f, r], i) => {
    flood += (f * dtMs) / 1000;
    rx += (r * dtMs) / 1000;
    out.push({ tMs: (i + 1) * dtMs, rxPackets: rx, floodPackets: flood });
  });
  return out;
}

describe('watchStep', () => {
  it('trips on the holdSamples-th hot sample in a row, not before', () => {
    const { trips, state } = feed(series([[100, 100], [100_000, 100_000], [100_000, 100_000], [100_000, 100_000]]));
    expect(trips[0]).toBe(3); // samples 2 and 3 hot (index 0 has no rate)
    expect(state.window.at(-1)?.floodPps).toBeCloseTo(100_000, -2);
  });

  it('a single hot sample between cool ones never trips', () => {
    expect(feed(series([[50_000, 50_000], [10, 10], [50_000, 50_000], [10, 10]])).trips).toEqual([]);
  });

  it('no broadcast counter (NaN): judged on total rx against rxPps', () => {
    const s = series([[0, 70_000], [0, 70_000], [0, 70_000]]).map((x) => ({ ...x, floodPackets: NaN }));
    expect(feed(s).trips.length).toBeGreaterThan(0);
    const low = series([[0, 50_000], [0, 50_000], [0, 50_000]]).map((x) => ({ ...x, floodPackets: NaN }));
    expect(feed(low).trips).toEqual([]);
  });

  it('a counter going backwards is a reset, never a spike', () => {
    const s: WatchSample[] = [
      { tMs: 0, rxPackets: 1e9, floodPackets: 1e9 },
      { tMs: 2, rxPackets: 10, floodPackets: 10 },
      { tMs: 4, rxPackets: 20, floodPackets: 20 },
    ];
    expect(feed(s).trips).toEqual([]);
  });

  it('never trips while every rate stays below the thresholds (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: th.floodPps - 1 }), fc.integer({ min: 0, max: th.rxPps - 1 })), { maxLength: 60 }), (rates) => {
        expect(feed(series(rates)).trips).toEqual([]);
      }),
    );
  });

  it('keeps only the last few points as evidence', () => {
    const { state } = feed(series(Array.from({ length: 30 }, () => [1, 1] as [number, number])));
    expect(state.window).toHaveLength(WATCH_WINDOW);
  });
});
