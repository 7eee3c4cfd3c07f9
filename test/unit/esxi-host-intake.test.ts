// host-intake: which fuse samples reach the rates around an action. At rest the fuse sends its
// samples in batches (fuse v3), so samples read BEFORE an action landed can arrive after it:
// they must never be judged as post-action numbers.
import { describe, expect, it } from 'vitest';
import { hostIntake } from '../../agent/esxi/host-intake.js';
import type { HostRates } from '../../agent/esxi/host-rates.js';

function fakeRates() {
  const taken: number[] = [];
  let rebased = 0;
  const rates = {
    arrived: () => undefined,
    forgetBaselines: () => void rebased++,
    fuseSample: (_k: readonly string[], _v: Float64Array, tNs: number) => void taken.push(tNs),
    block: () => undefined,
    rates: () => [],
  } as unknown as HostRates;
  return { rates, taken, rebased: () => rebased };
}

const MS = 1e6;

describe('host intake around an action (fuse samples)', () => {
  it('drops samples read before the action landed, even when they arrive after it; then rebases once', () => {
    const f = fakeRates();
    let woke = 0;
    const intake = hostIntake(f.rates, () => void woke++);
    const v = new Float64Array(6);
    intake.fuseSample([], v, 10 * MS, 11 * MS);
    expect(f.taken).toEqual([10 * MS]);
    expect(intake.fresh(12 * MS, 1000)).toBe(true);
    // The action lands at 100 ms; a batch read at 85..115 ms arrives at 118 ms.
    intake.acted(0, 100 * MS);
    expect(intake.fresh(101 * MS, 1000)).toBe(false);
    for (const t of [85, 100]) intake.fuseSample([], v, t * MS, 118 * MS);
    expect(f.taken).toEqual([10 * MS]); // read before it landed: never taken
    expect(f.rebased()).toBe(0);
    intake.fuseSample([], v, 115 * MS, 118 * MS); // the first one read after: only a new baseline
    expect(f.rebased()).toBe(1);
    expect(intake.fresh(119 * MS, 1000)).toBe(false); // no post-action rate yet
    intake.fuseSample([], v, 130 * MS, 131 * MS);
    expect(intake.fresh(132 * MS, 1000)).toBe(true);
    expect(f.rebased()).toBe(1);
    expect(f.taken).toEqual([10 * MS, 115 * MS, 130 * MS]);
    expect(woke).toBe(3);
  });
});

describe('host intake while the host fuse is cutting', () => {
  it('judges nothing from `cutting` to the result, then only post-cut rates; a failed cut resumes at once', () => {
    const f = fakeRates();
    const intake = hostIntake(f.rates, () => undefined);
    const v = new Float64Array(6);
    intake.fuseSample([], v, 10 * MS, 11 * MS);
    expect(intake.fresh(12 * MS, 1000)).toBe(true);
    // `cutting` heard at 20 ms: samples read meanwhile straddle the cut (its vNIC's port vanishes).
    intake.hold(20 * MS + 6000 * MS);
    intake.fuseSample([], v, 25 * MS, 26 * MS);
    expect(intake.fresh(27 * MS, 1000)).toBe(false);
    // The result: cut. acted() then asks for a purely post-cut rate.
    intake.release();
    intake.acted(0, 200 * MS);
    intake.fuseSample([], v, 210 * MS, 211 * MS);
    expect(intake.fresh(212 * MS, 1000)).toBe(false);
    intake.fuseSample([], v, 225 * MS, 226 * MS);
    expect(intake.fresh(227 * MS, 1000)).toBe(true);
    // A second cut that fails: judging resumes with the next sample (the loop may go on).
    intake.hold(300 * MS + 6000 * MS);
    intake.fuseSample([], v, 310 * MS, 311 * MS);
    expect(intake.fresh(312 * MS, 1000)).toBe(false);
    intake.release();
    expect(intake.fresh(313 * MS, 1000)).toBe(true);
    // A fuse that never reports: the hold ends by itself.
    intake.hold(400 * MS);
    intake.fuseSample([], v, 390 * MS, 391 * MS);
    expect(intake.fresh(392 * MS, 1000)).toBe(false);
    intake.fuseSample([], v, 405 * MS, 406 * MS);
    expect(intake.fresh(407 * MS, 1000)).toBe(true);
  });

  it('a fuse that ends while it said it was cutting: judging resumes at once, on purely post-exit rates', () => {
    const f = fakeRates();
    const intake = hostIntake(f.rates, () => undefined);
    const v = new Float64Array(6);
    intake.fuseSample([], v, 10 * MS, 11 * MS);
    intake.hold(20 * MS + 6000 * MS);
    expect(intake.holding(21 * MS)).toBe(true);
    // The fuse exits at 50 ms with no result: the hold ends, samples read before then are not judged.
    intake.abandoned(0, 50 * MS);
    expect(intake.holding(51 * MS)).toBe(false);
    intake.fuseSample([], v, 45 * MS, 60 * MS);
    expect(intake.fresh(61 * MS, 1000)).toBe(false);
    intake.fuseSample([], v, 70 * MS, 71 * MS); // first post-exit sample: a baseline only
    expect(intake.fresh(72 * MS, 1000)).toBe(false);
    intake.fuseSample([], v, 80 * MS, 81 * MS);
    expect(intake.fresh(82 * MS, 1000)).toBe(true); // not 6 s later
  });
});
