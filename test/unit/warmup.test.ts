import { describe, expect, it } from 'vitest';
import { warmUpDetector } from '../../agent/detect/warmup.js';
import { warmUpBreaker } from '../../agent/breaker/warmup.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';

describe('detector warm-up', () => {
  it('runs every verdict path on a throwaway state (loop, flap, sustained, flood) and is fast', () => {
    const policy = testPolicy();
    const pp = testPorts({ x: 'vm' }, policy).get('x')!;
    const t0 = process.hrtime.bigint();
    const n = warmUpDetector(policy, pp);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(n.rate).toBeGreaterThan(0);
    expect(n.flap).toBeGreaterThan(0);
    expect(n.sustained).toBeGreaterThan(0);
    expect(n.flood).toBeGreaterThan(0);
    // Cheap enough to run at every start (generous bound for a loaded CI machine).
    expect(ms).toBeLessThan(2000);
  });

  it('one of its loops has three members, with and without another port taking frames in, so the breaker warm-up runs both of its paths', () => {
    const policy = testPolicy();
    const pp = testPorts({ x: 'vm' }, policy).get('x')!;
    const sizes = new Set<number>();
    let waysIn = 0;
    let beside = 0;
    warmUpDetector(policy, pp, 3000, (vs) =>
      vs.forEach((v) => {
        if (v.kind !== 'loop') return;
        sizes.add(v.members.length);
        if (v.members.length === 3) v.onlyWaysIn ? waysIn++ : beside++;
      }),
    );
    expect([...sizes].sort()).toEqual([2, 3]);
    // Both breaker paths for it: two cuts at once, and (a stream beside it) one cut, then the
    // escalation on the evidence after it.
    expect(waysIn).toBeGreaterThan(0);
    expect(beside).toBeGreaterThan(0);
  });
});

describe('breaker warm-up', () => {
  it('runs trip, settle, escalate, flood cut and restore on a throwaway state', () => {
    const policy = testPolicy();
    const pp = testPorts({ x: 'vm' }, policy).get('x')!;
    const w = warmUpBreaker(policy, pp);
    // One trip per synthetic storm at least (rate loop, slow loop, unicast loop, flood), an
    // escalation (the first loop goes on after its first member is shut) and the restores.
    expect(w.downs).toBeGreaterThanOrEqual(4);
    expect(w.events.trip).toBeGreaterThanOrEqual(4);
    expect(w.events.escalate).toBeGreaterThan(0);
    expect(w.events.restore).toBeGreaterThan(0);
    expect(w.ups).toBe(w.events.restore);
    expect(w.jsonBytes).toBeGreaterThan(0);
  });
});
