import { describe, expect, it } from 'vitest';
import { computeRates, copyCounters, MIN_DT_NS, warmUpRates } from '../../agent/sample/rates.js';
import { buildTrace, quietNetwork, kvmLoop } from '../../agent/testing/traces.js';
import type { Counters, PortRates } from '../../agent/types.js';

const c = (o: Partial<Counters> = {}): Counters => ({
  rxPackets: 1000,
  txPackets: 2000,
  rxBytes: 64000,
  rxBroadcast: 100,
  rxMulticast: 10,
  ok: true,
  ...o,
});
const out = (): PortRates => ({ port: '', bridge: null, dtMs: 0, rxPps: -1, txPps: -1, rxBps: -1, floodPps: -1, bcastPps: -1, valid: true });

describe('computeRates', () => {
  it('computes pps from deltas over the measured interval', () => {
    const o = out();
    const r = computeRates(c(), c({ rxPackets: 1100, txPackets: 2050, rxBytes: 70400, rxBroadcast: 180, rxMulticast: 20 }), 2e6, 'up1', 'br0', o);
    expect(r).toBe(o); // fills the caller's object, no allocation
    expect(r).toMatchObject({ port: 'up1', bridge: 'br0', dtMs: 2, valid: true });
    expect(r.rxPps).toBeCloseTo(50_000);
    expect(r.txPps).toBeCloseTo(25_000);
    expect(r.rxBps).toBeCloseTo(3_200_000);
    expect(r.bcastPps).toBeCloseTo(40_000);
    expect(r.floodPps).toBeCloseTo(45_000); // broadcast + multicast
  });

  it('uses whichever of broadcast/multicast is known, NaN when neither', () => {
    const next = { rxPackets: 1100, txPackets: 2000, rxBytes: 64000 };
    const onlyB = computeRates(c({ rxMulticast: NaN }), c({ ...next, rxBroadcast: 150, rxMulticast: NaN }), 1e6, 'p', null, out());
    expect(onlyB.valid).toBe(true);
    expect(onlyB.floodPps).toBeCloseTo(50_000);
    const onlyM = computeRates(c({ rxBroadcast: NaN }), c({ ...next, rxBroadcast: NaN, rxMulticast: 15 }), 1e6, 'p', null, out());
    expect(onlyM.floodPps).toBeCloseTo(5_000);
    expect(onlyM.bcastPps).toBeNaN();
    const none = computeRates(c({ rxBroadcast: NaN, rxMulticast: NaN }), c({ ...next, rxBroadcast: NaN, rxMulticast: NaN }), 1e6, 'p', null, out());
    expect(none.valid).toBe(true);
    expect(none.floodPps).toBeNaN();
    expect(none.rxPps).toBeCloseTo(100_000);
    // A broadcast counter that appears or disappears (source restarted) is unknown, not a reset.
    const appeared = computeRates(c({ rxBroadcast: NaN }), c({ ...next, rxBroadcast: 5 }), 1e6, 'p', null, out());
    expect(appeared.valid).toBe(true);
    expect(appeared.bcastPps).toBeNaN();
  });

  it.each([
    ['rxPackets', { rxPackets: 999 }],
    ['txPackets', { txPackets: 1 }],
    ['rxBytes', { rxBytes: 0 }],
    ['rxBroadcast', { rxBroadcast: 99 }],
    ['rxMulticast', { rxMulticast: 0 }],
  ])('a %s going backwards (reset/wrap) is no rate at all, never a spike', (_name, cur) => {
    const r = computeRates(c(), c({ rxPackets: 5000, txPackets: 5000, rxBytes: 1e6, rxBroadcast: 4000, ...cur }), 1e6, 'p', null, out());
    expect(r.valid).toBe(false);
    expect([r.rxPps, r.txPps, r.rxBps, r.floodPps, r.bcastPps]).toEqual([0, 0, 0, 0, 0]);
  });

  it.each([
    ['prev read failed', c({ ok: false }), c({ rxPackets: 2000 }), 1e6],
    ['cur read failed', c(), c({ rxPackets: 2000, ok: false }), 1e6],
    ['dt = 0', c(), c({ rxPackets: 2000 }), 0],
    ['dt < 0', c(), c({ rxPackets: 2000 }), -1e6],
    ['dt NaN', c(), c({ rxPackets: 2000 }), NaN],
    ['dt too short to mean anything (a few frames over µs would read as a huge rate)', c(), c({ rxPackets: 1005 }), MIN_DT_NS - 1],
    ['rx NaN', c(), c({ rxPackets: NaN }), 1e6],
  ])('invalid when %s', (_n, prev, cur, dt) => {
    const r = computeRates(prev, cur, dt, 'p', null, out());
    expect(r.valid).toBe(false);
    expect(r.rxPps).toBe(0);
  });

  it('copyCounters copies every field in place', () => {
    const from = c({ rxBroadcast: NaN, ok: false });
    const to = c({ rxPackets: 0 });
    expect(copyCounters(from, to)).toBe(to);
    expect(to).toEqual(from);
    expect(to).not.toBe(from);
  });
});

describe('rates over generated traces', () => {
  it('jittered dt (1 ms ± 0.5 ms): rates follow the measured interval, not the nominal one', () => {
    const ticks = buildTrace(kvmLoop({ jitterMs: 0.5, seed: 7, startMs: 0 }), 300);
    const dts = ticks.map((t) => t.ports[0]!.dtMs);
    expect(Math.min(...dts)).toBeLessThan(0.7);
    expect(Math.max(...dts)).toBeGreaterThan(1.3);
    // up1 receives 98k + 300 pps; counters are integers, so one sample can be off by 1 frame/dt.
    for (const t of ticks.slice(5)) {
      const up1 = t.ports.find((p) => p.port === 'up1')!;
      expect(up1.valid).toBe(true);
      expect(Math.abs(up1.rxPps - 98_300)).toBeLessThanOrEqual(1000 / up1.dtMs + 1);
    }
  });

  it('a counter reset mid-trace gives one invalid sample and no spike', () => {
    const ticks = buildTrace(quietNetwork({ faults: [{ port: 'vm1', atMs: 50, kind: 'reset' }] }), 100);
    const vm1 = ticks.map((t) => t.ports.find((p) => p.port === 'vm1')!);
    expect(vm1.filter((r) => !r.valid)).toHaveLength(1);
    expect(Math.max(...vm1.map((r) => r.rxPps))).toBeLessThanOrEqual(1000); // 1 frame in 1 ms at most
  });

  it('a 32-bit counter wrap gives one invalid sample and no spike', () => {
    // 100k pps from 2^32 - 5000: rx wraps after ~50 ms (tx, bytes and broadcast at their own times).
    const ticks = buildTrace(kvmLoop({ startMs: 0, counterBits: 32, counterStart: 2 ** 32 - 5000 }), 120);
    const up1 = ticks.map((t) => t.ports.find((p) => p.port === 'up1')!);
    const invalid = up1.filter((r) => !r.valid).length;
    expect(invalid).toBeGreaterThanOrEqual(1);
    expect(invalid).toBeLessThanOrEqual(4);
    expect(Math.max(...up1.map((r) => r.rxPps))).toBeLessThan(110_000);
  });
});

describe('warmUpRates', () => {
  it('runs computeRates down its valid and every invalid path (a cold agent meets them all in its first storm)', () => {
    const valid = warmUpRates(2000);
    expect(valid).toBeGreaterThan(1000);
    expect(valid).toBeLessThan(2000);
  });
});
