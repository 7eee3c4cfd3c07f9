import { describe, expect, it } from 'vitest';
import { warmUpDetector } from '../../agent/detect/warmup.js';
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
});
