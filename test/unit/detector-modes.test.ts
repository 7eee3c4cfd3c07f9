// The detector where the bridge's port modes change the loop's evidence (session 16): learning off
// (no MAC can flap; a loop of unknown unicast moves no flood counter) and hairpin (a loop of one port).
import { describe, expect, it } from 'vitest';
import { initialDetectorState, SLOW_LOOP_MS, step } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, type LoadFn, type TraceSpec } from '../../agent/testing/traces.js';
import type { Tick, Verdict } from '../../agent/types.js';

const policy = testPolicy();
const kvmPorts = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, policy);
const ports4 = ['up1', 'up2', 'vm1', 'mgmt0'];
const learningSeen = new Set(ports4);

function spec(load: LoadFn): TraceSpec {
  return { name: 'custom', ports: ports4.map((port) => ({ port, bridge: 'br0' })), load };
}

/** The trace with `modes` on the named ports' rates, and the FDB monitor having seen every port learn. */
function withModes(ticks: Tick[], modes: { noLearn?: readonly string[]; hairpin?: readonly string[] }, fdbPorts: ReadonlySet<string> | undefined = learningSeen): Tick[] {
  return ticks.map((t) => ({
    ...t,
    ...(fdbPorts ? { fdbPorts } : {}),
    ports: t.ports.map((r) => ({ ...r, noLearn: modes.noLearn?.includes(r.port) === true, hairpin: modes.hairpin?.includes(r.port) === true })),
  }));
}

function verdicts(ticks: Tick[]): { perTick: Array<readonly Verdict[]>; all: Verdict[] } {
  const state = initialDetectorState();
  const perTick = ticks.map((t) => step(state, t, kvmPorts, policy).verdicts);
  return { perTick, all: perTick.flat() };
}

/** ms from 100 ms into the trace (where every load below starts) to the first loop verdict. */
function firstLoopMs(ticks: Tick[]): number {
  const { perTick } = verdicts(ticks);
  const i = perTick.findIndex((v) => v.some((x) => x.kind === 'loop'));
  return i < 0 ? Infinity : (ticks[i]!.tNs - ticks[0]!.tNs) / 1e6 - 100;
}

/** From 100 ms: `members` rx ≈ tx at `pps` (a `bcastShare` of it broadcast), the other ports receive its copies. */
const loopLoad =
  (pps: number, bcastShare: number, members: readonly string[]): LoadFn =>
  (p, tMs) => {
    if (tMs < 100) return { rxPps: 300, txPps: 300, bcastPps: 10 };
    if (members.includes(p)) return { rxPps: pps * 0.99, txPps: pps * 1.01, bcastPps: pps * bcastShare };
    return { rxPps: 0, txPps: pps, bcastPps: 0 };
  };

describe('learning off: a loop of unknown unicast', () => {
  const unicastLoop = buildTrace(spec(loopLoad(150_000, 0, ['up1', 'up2'])), 400);

  it('through two uplinks the bridge learns nothing on: a sustained loop after SLOW_LOOP_MS, on total rx', () => {
    const ticks = withModes(unicastLoop, { noLearn: ['up1', 'up2'] });
    const ms = firstLoopMs(ticks);
    expect(ms).toBeGreaterThanOrEqual(SLOW_LOOP_MS - 5); // the run starts with the sample's interval
    expect(ms).toBeLessThan(SLOW_LOOP_MS + 20);
    const v = verdicts(ticks).all.find((x) => x.kind === 'loop')!;
    expect(v).toMatchObject({ bridge: 'br0', members: ['up1', 'up2'] });
    expect(v.evidence.clues[0]).toMatch(/sustained/);
    expect(v.evidence.clues.join(' | ')).toMatch(/learns no MAC on up1/);
  });

  it('the same counters where the bridge learns: no loop without a flap (a learning bridge would show one)', () => {
    expect(verdicts(withModes(unicastLoop, {})).all).toEqual([]);
  });

  it('no loop on learning-off uplinks: a TCP transfer (data/acks 2:1), symmetric traffic under the total falling edge (15k), symmetric traffic on one uplink', () => {
    const off = { noLearn: ['up1', 'up2'] };
    const tcp: LoadFn = (p) =>
      p === 'up1' || p === 'up2' ? { rxPps: p === 'up1' ? 80_000 : 40_000, txPps: p === 'up1' ? 40_000 : 80_000, bcastPps: 5 } : { rxPps: 0, txPps: 5, bcastPps: 0 };
    expect(verdicts(withModes(buildTrace(spec(tcp), 600), off)).all).toEqual([]);
    const under: LoadFn = (p) => (p === 'up1' || p === 'up2' ? { rxPps: 12_000, txPps: 12_000, bcastPps: 5 } : { rxPps: 0, txPps: 5, bcastPps: 0 });
    expect(verdicts(withModes(buildTrace(spec(under), 600), off)).all).toEqual([]);
    // Symmetric and high on one learning-off uplink only (a second member is what makes a loop).
    const one: LoadFn = (p) => (p === 'up1' ? { rxPps: 80_000, txPps: 80_000, bcastPps: 5 } : { rxPps: 0, txPps: 5, bcastPps: 0 });
    expect(verdicts(withModes(buildTrace(spec(one), 600), off)).all).toEqual([]);
  });
});

describe('hairpin: a loop of one port', () => {
  const oneLoop = buildTrace(spec(loopLoad(150_000, 1, ['up1'])), 300);

  it('a lone hot member in hairpin mode with rx ≈ tx is a loop within a few samples, its bridge seen learning or not', () => {
    for (const fdb of [learningSeen, undefined]) {
      const ticks = withModes(oneLoop, { hairpin: ['up1'] }, fdb);
      expect(firstLoopMs(ticks)).toBeLessThan(5);
      const v = verdicts(ticks).all.find((x) => x.kind === 'loop')!;
      expect(v).toMatchObject({ bridge: 'br0', members: ['up1'] });
      expect(v.evidence.clues[0]).toMatch(/hairpin mode/);
    }
  });

  it('without hairpin a lone member is no loop (the bridge never re-sends by the ingress port)', () => {
    expect(verdicts(withModes(oneLoop, {})).all.filter((v) => v.kind === 'loop')).toEqual([]);
  });

  it('no loop: a hairpin uplink with its broadcast both ways under floodPps, and a DHCP wave through vm1 and a hairpin up1 (two members, no flap)', () => {
    const slow = buildTrace(spec(loopLoad(15_000, 1, ['up1'])), 500);
    expect(verdicts(withModes(slow, { hairpin: ['up1'] })).all).toEqual([]);
    const pxe: LoadFn = (p) => (p === 'vm1' || p === 'up1' ? { rxPps: 25_000, txPps: 25_000, bcastPps: 25_000 } : { rxPps: 0, txPps: 50_000, bcastPps: 0 });
    expect(verdicts(withModes(buildTrace(spec(pxe), 90), { hairpin: ['up1'] })).all).toEqual([]);
  });
});
