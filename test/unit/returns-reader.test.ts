import { describe, expect, it } from 'vitest';
import { createReturnsReader, warmUpReturns } from '../../agent/sources/returns.js';
import { emptyCounters, type Counters, type PortInfo } from '../../agent/types.js';

// The tripwire's frames-that-came-back, per interface since its last read, as each port's running
// counter (Counters.rxReturned): what computeRates turns into rxRetPps for the detector's ring rule.
const port = (name: string, ifindex: number): PortInfo => ({ name, ifindex, bridge: null });

describe('returns reader', () => {
  it('sums each read into the port of that ifindex; other ports read 0; NaN while the tripwire does not run', () => {
    let next: number[] | undefined;
    let running = false;
    const r = createReturnsReader(() => next, () => running);
    r.watch([port('up2', 7), port('macvtap1', 9)]);
    const out = new Map<string, Counters>([['up2', emptyCounters()], ['macvtap1', emptyCounters()]]);
    next = [7, 5];
    r.read(out);
    expect(out.get('up2')!.rxReturned).toBeNaN(); // not running: unknown, not zero
    running = true;
    r.read(out);
    expect(out.get('up2')!.rxReturned).toBe(5);
    expect(out.get('macvtap1')!.rxReturned).toBe(0);
    next = [9, 3, 7, 2, 42, 100]; // ifindex 42: no watched port
    r.read(out);
    expect(out.get('up2')!.rxReturned).toBe(7);
    expect(out.get('macvtap1')!.rxReturned).toBe(3);
    next = undefined; // none since the last read: totals hold
    r.read(out);
    expect(out.get('up2')!.rxReturned).toBe(7);
  });

  it("keeps a port's total across a rewatch of the same interface, restarts it for a new one", () => {
    const next: number[] | undefined = [7, 4, 9, 4];
    const r = createReturnsReader(() => next, () => true);
    r.watch([port('up2', 7), port('macvtap1', 9)]);
    const out = new Map<string, Counters>([['up2', emptyCounters()], ['macvtap1', emptyCounters()]]);
    r.read(out);
    r.watch([port('up2', 7), port('macvtap1', 11)]); // macvtap1 re-created: a new ifindex
    r.read(out);
    expect(out.get('up2')!.rxReturned).toBe(8);
    expect(out.get('macvtap1')!.rxReturned).toBe(0);
  });
});

describe('returns reader warm-up', () => {
  it('adds returned-frame counts on throwaway ports (the path a storm takes), ignoring an unknown ifindex', () => {
    // 200 reads of 3 and 4 returns, the third pair's ifindex watched by nobody.
    expect(warmUpReturns(200)).toBe(200 * 7);
    expect(warmUpReturns(1)).toBe(7);
  });
});
