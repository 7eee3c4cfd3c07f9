import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { eventsArgs, MAX_HOLD_MS, operatorArgs } from '../../agent/control/args.js';

describe('control arguments at the edge', () => {
  it('hold forMs: finite, > 0, at most a year (1e300 and 8.64e15 are errors, not a broken tick)', () => {
    for (const forMs of [1e300, 8.64e15, Infinity, -1, 0, NaN, '5', MAX_HOLD_MS + 1]) {
      expect(() => operatorArgs('hold', { port: 'vm1', forMs }), String(forMs)).toThrow(/forMs/);
    }
    expect(operatorArgs('hold', { port: 'vm1', forMs: 5000 })).toEqual({ port: 'vm1', reason: 'operator request', forMs: 5000, wait: false });
    expect(operatorArgs('hold', { port: 'vm1', for: '2h', wait: true }).forMs).toBe(7_200_000);
  });
  it('every accepted hold gives a valid expiry date', () => {
    fc.assert(fc.property(fc.double(), (forMs) => {
      let a;
      try {
        a = operatorArgs('hold', { port: 'p', forMs });
      } catch {
        return;
      }
      expect(Number.isFinite(new Date(Date.now() + a.forMs!).getTime())).toBe(true);
    }));
  });
  it('port required and bounded; events numbers bounded', () => {
    expect(() => operatorArgs('trip', {})).toThrow(/port is required/);
    expect(() => operatorArgs('trip', { port: 'x'.repeat(65) })).toThrow(/port/);
    expect(() => operatorArgs('trip', { port: 'p', wait: 'yes' })).toThrow(/wait/);
    expect(() => eventsArgs({ sinceMs: 1e300 })).toThrow(/sinceMs/);
    expect(() => eventsArgs({ limit: 1.5 })).toThrow(/limit/);
    expect(eventsArgs({ limit: 1e9 }).limit).toBe(10_000);
  });
});
