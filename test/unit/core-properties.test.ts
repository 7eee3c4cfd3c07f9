// Properties of the pure core over arbitrary inputs (fast-check): what must hold whatever the
// counters, the verdicts, the policy or the order in which results arrive.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeRates, MIN_DT_NS } from '../../agent/sample/rates.js';
import { initialDetectorState, step } from '../../agent/detect/signature.js';
import { breakerStep, initialBreakerState, type OperatorCommand } from '../../agent/breaker/state.js';
import { testPolicy, testPorts, type PortSpec } from '../../agent/testing/policy.js';
import type { ActionRequest, ActionResult, Counters, Evidence, FdbMove, PortRates, Role, Tick, Verdict } from '../../agent/types.js';

const RUNS = 300;

// --- rates ----------------------------------------------------------------------------------------

const counter = fc.oneof(fc.nat({ max: 2 ** 40 }), fc.constant(2 ** 32 - 1), fc.constant(0));
const counters: fc.Arbitrary<Counters> = fc.record({
  rxPackets: counter,
  txPackets: counter,
  rxBytes: counter,
  rxBroadcast: fc.oneof(counter, fc.constant(NaN)),
  rxMulticast: fc.oneof(counter, fc.constant(NaN)),
  ok: fc.boolean(),
});

describe('rates: properties', () => {
  it('valid exactly when both reads worked, dt >= MIN_DT_NS and no known counter went backwards; rates then finite and non-negative', () => {
    fc.assert(
      fc.property(counters, counters, fc.oneof(fc.double({ min: -1e9, max: 1e10 }), fc.constantFrom(0, 5e-324, MIN_DT_NS, MIN_DT_NS - 1, NaN, Infinity)), (a, b, dt) => {
        const out = computeRates(a, b, dt, 'p', null, {} as PortRates);
        const back = (x: number, y: number) => y < x; // NaN compares false: unknown is not backwards
        const expectValid =
          a.ok && b.ok && dt >= MIN_DT_NS && Number.isFinite(dt) &&
          !back(a.rxPackets, b.rxPackets) && !back(a.txPackets, b.txPackets) && !back(a.rxBytes, b.rxBytes) &&
          !back(a.rxBroadcast, b.rxBroadcast) && !back(a.rxMulticast, b.rxMulticast);
        expect(out.valid).toBe(expectValid);
        if (!out.valid) {
          expect([out.rxPps, out.txPps, out.rxBps, out.floodPps, out.bcastPps]).toEqual([0, 0, 0, 0, 0]);
          return;
        }
        for (const x of [out.rxPps, out.txPps, out.rxBps]) expect(x >= 0 && Number.isFinite(x)).toBe(true);
        expect(Number.isNaN(out.floodPps) || (out.floodPps >= 0 && Number.isFinite(out.floodPps))).toBe(true);
        const bothUnknown = Number.isNaN(b.rxBroadcast - a.rxBroadcast) && Number.isNaN(b.rxMulticast - a.rxMulticast);
        expect(Number.isNaN(out.floodPps)).toBe(bothUnknown);
      }),
      { numRuns: 2000 },
    );
  });
});

// --- detector -------------------------------------------------------------------------------------

const NAMES = ['up1', 'up2', 'vm1', 'vm2', 'mgmt0', 'other9'] as const;
const WATCHED = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm', vm2: 'vm', mgmt0: 'mgmt' }, testPolicy());
const detPolicy = testPolicy();

const pps = fc.oneof(fc.constant(0), fc.double({ min: 0, max: 300_000, noNaN: true }), fc.constantFrom(20_000, 100_000, 175_000));
const bridgeArb = fc.constantFrom<string | null>('br0', 'br0', 'br0', 'br1', null);
const portRates = (port: string): fc.Arbitrary<PortRates> =>
  fc.oneof(
    // Anything at all.
    fc.record({
      port: fc.constant(port),
      bridge: bridgeArb,
      dtMs: fc.constantFrom(0.5, 1, 1.5, 10),
      rxPps: pps,
      txPps: pps,
      rxBps: fc.constant(0),
      floodPps: fc.oneof(pps, fc.constant(NaN)),
      bcastPps: fc.constant(NaN),
      valid: fc.boolean(),
    }),
    // Loop-like (rx ≈ tx, mostly broadcast) so that loop verdicts actually occur.
    fc
      .record({
        bridge: bridgeArb,
        level: fc.double({ min: 10_000, max: 200_000, noNaN: true }),
        skew: fc.double({ min: 0.2, max: 5, noNaN: true }),
        flood: fc.boolean(),
      })
      .map(({ bridge, level, skew, flood }) => ({
        port,
        bridge,
        dtMs: 1,
        rxPps: level,
        txPps: level * skew,
        rxBps: 0,
        floodPps: flood ? level : NaN,
        bcastPps: NaN,
        valid: true,
      })),
  );
const tickBody = fc.record({
  dtMs: fc.constantFrom(0.5, 1, 1.5, 10, 400),
  ports: fc.subarray([...NAMES]).chain((names) => fc.tuple(...names.map(portRates))),
  moves: fc.array(fc.record({ mac: fc.constantFrom('02:00:00:00:00:01', '02:00:00:00:00:02'), port: fc.constantFrom(...NAMES), bridge: fc.constantFrom<string | null>('br0', null) }), { maxLength: 4 }),
});
const ticksArb = fc.array(tickBody, { minLength: 1, maxLength: 120 }).map((bodies) => {
  let tNs = 1e12;
  return bodies.map((b): Tick => {
    tNs += b.dtMs * 1e6;
    const moves: FdbMove[] = b.moves.map((m) => ({ ...m, tNs }));
    return { tNs, ports: b.ports, fdbMoves: moves };
  });
});

describe('detector: properties', () => {
  it('verdicts name only watched ports; loops have >= 2 distinct members of one bridge; a flood port is never also in a loop verdict', () => {
    const seen = { loop: 0, flood: 0 };
    fc.assert(
      fc.property(ticksArb, (ticks) => {
        const st = initialDetectorState();
        for (const t of ticks) {
          const { verdicts } = step(st, t, WATCHED, detPolicy);
          const inLoop = new Set<string>();
          for (const v of verdicts) {
            seen[v.kind]++;
            const ev = v.evidence;
            expect(ev.tNs).toBe(t.tNs);
            expect(ev.window.every((w) => w.tMs <= 0)).toBe(true);
            expect(ev.window.map((w) => w.tMs)).toEqual(ev.window.map((w) => w.tMs).sort((a, b) => a - b));
            if (v.kind === 'loop') {
              expect(v.bridge).not.toBeNull();
              expect(v.members.length).toBeGreaterThanOrEqual(2);
              expect(new Set(v.members).size).toBe(v.members.length);
              for (const m of v.members) {
                expect(WATCHED.has(m)).toBe(true);
                expect(st.ports.get(m)!.bridge).toBe(v.bridge);
                expect(inLoop.has(m)).toBe(false);
                inLoop.add(m);
              }
            }
          }
          for (const v of verdicts) {
            if (v.kind !== 'flood') continue;
            expect(WATCHED.has(v.port)).toBe(true);
            expect(inLoop.has(v.port)).toBe(false);
          }
        }
      }),
      { numRuns: RUNS },
    );
    // Not vacuous: the generated ticks do produce both kinds of verdict.
    expect(seen.loop).toBeGreaterThan(10);
    expect(seen.flood).toBeGreaterThan(10);
  });

  it('is deterministic: the same ticks give the same verdicts', () => {
    fc.assert(
      fc.property(ticksArb, (ticks) => {
        const once = () => {
          const st = initialDetectorState();
          return JSON.stringify(ticks.map((t) => step(st, t, WATCHED, detPolicy).verdicts));
        };
        expect(once()).toBe(once());
      }),
      { numRuns: 100 },
    );
  });

  it('an invalid sample neither increments nor resets a port (hot, hotCount, baseline unchanged)', () => {
    fc.assert(
      fc.property(ticksArb, fc.constantFrom('up1', 'vm1'), (ticks, port) => {
        const st = initialDetectorState();
        for (const t of ticks) step(st, t, WATCHED, detPolicy);
        const before = st.ports.get(port);
        if (!before) return;
        const snap = { hot: before.hot, hotCount: before.hotCount, baseline: before.baseline };
        const last = ticks[ticks.length - 1]!;
        const bad: PortRates = { port, bridge: before.bridge, dtMs: 1, rxPps: 0, txPps: 0, rxBps: 0, floodPps: 0, bcastPps: 0, valid: false };
        step(st, { tNs: last.tNs + 1e6, ports: [bad], fdbMoves: [] }, WATCHED, detPolicy);
        const after = st.ports.get(port)!;
        expect({ hot: after.hot, hotCount: after.hotCount, baseline: after.baseline }).toEqual(snap);
      }),
      { numRuns: RUNS },
    );
  });

  it('a port with only invalid samples is never named in a verdict', () => {
    fc.assert(
      fc.property(ticksArb, (ticks) => {
        const st = initialDetectorState();
        for (const t of ticks) {
          const ports = t.ports.map((p) => (p.port === 'vm1' ? { ...p, valid: false } : p));
          for (const v of step(st, { ...t, ports }, WATCHED, detPolicy).verdicts) {
            expect(v.kind === 'flood' ? [v.port] : v.members).not.toContain('vm1');
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});

// --- breaker --------------------------------------------------------------------------------------

const BNAMES = ['up1', 'up2', 'up3', 'vm1', 'vm2', 'mgmt0'];
const ROLES: Role[] = ['uplink', 'vm', 'mgmt', 'other'];
const portSpec: fc.Arbitrary<PortSpec> = fc.record({
  role: fc.constantFrom(...ROLES),
  protected: fc.boolean(),
  dryRun: fc.boolean(),
  shutRank: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constant(Infinity)),
});
const policyArb = fc.record({
  maxShuts: fc.integer({ min: 0, max: 3 }),
  windowMs: fc.integer({ min: 1, max: 200 }),
  settleMs: fc.integer({ min: 0, max: 50 }),
  floodShutRoles: fc.subarray(ROLES),
  dryRun: fc.boolean(),
  ports: fc.tuple(...BNAMES.map(() => fc.option(portSpec, { nil: undefined }))),
});
const verdictArb: fc.Arbitrary<Verdict> = fc.oneof(
  fc.record({
    kind: fc.constant('loop' as const),
    bridge: fc.constantFrom<string | null>('br0', 'br1', null),
    members: fc.subarray([...BNAMES, 'ghost0'], { minLength: 1 }),
    evidence: fc.constant<Evidence>({ tNs: 0, window: [], thresholds: {}, clues: ['c'], rule: 0, policyHash: 'x' }),
  }),
  fc.record({
    kind: fc.constant('flood' as const),
    port: fc.constantFrom(...BNAMES, 'ghost0'),
    evidence: fc.constant<Evidence>({ tNs: 0, window: [], thresholds: {}, clues: ['c'], rule: 0, policyHash: 'x' }),
  }),
);
const opArb: fc.Arbitrary<OperatorCommand> = fc.record({
  kind: fc.constantFrom('restore' as const, 'trip' as const),
  port: fc.constantFrom(...BNAMES),
  reason: fc.constant('test'),
  by: fc.constant('prop'),
});
const stepsArb = fc.array(
  fc.record({
    dtMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 }), fc.constant(100)),
    verdicts: fc.array(verdictArb, { maxLength: 3 }),
    operator: fc.array(opArb, { maxLength: 1 }),
    okRoll: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    deliver: fc.boolean(),
  }),
  { minLength: 1, maxLength: 150 },
);

describe('breaker: properties', () => {
  it('never a link-down for a protected port; automatic link-downs within any window <= maxShuts; one action per port at a time', () => {
    const seen = { auto: 0, operator: 0, budgetFull: 0 };
    fc.assert(
      fc.property(policyArb, stepsArb, (pa, steps) => {
        const pol = testPolicy({
          dryRun: pa.dryRun,
          breaker: { maxShuts: pa.maxShuts, windowMs: pa.windowMs, settleMs: pa.settleMs, floodShutRoles: pa.floodShutRoles },
        });
        const spec: Record<string, PortSpec> = {};
        BNAMES.forEach((n, i) => {
          const s = pa.ports[i];
          if (s) spec[n] = s;
        });
        const ports = testPorts(spec, pol);
        const st = initialBreakerState();
        let tMs = 0;
        let pending: ActionRequest[] = [];
        const inFlight = new Set<string>();
        const autoShutTimes: number[] = [];
        for (const s of steps) {
          tMs += s.dtMs;
          // The executor answers some steps late, in order, ok or not.
          let results: ActionResult[] = [];
          if (s.deliver) {
            results = pending.map((c, i) => ({ kind: c.kind, port: c.port, ok: s.okRoll[i % 4]!, via: 'test', durationMs: 0, attempts: 1, verified: true }));
            for (const c of pending) inFlight.delete(c.port);
            pending = [];
          }
          const out = breakerStep(st, { tNs: tMs * 1e6, wallMs: 1.7e12 + tMs, verdicts: s.verdicts, results, operator: s.operator }, ports, pol);
          for (const c of out.commands) {
            const pp = ports.get(c.port);
            expect(pp).toBeDefined();
            if (c.kind === 'link-down') expect(pp!.protected).toBe(false);
            expect(inFlight.has(c.port)).toBe(false);
            inFlight.add(c.port);
            if (c.kind === 'link-down' && !c.reason.startsWith('operator ')) {
              expect(pol.dryRun || pp!.dryRun).toBe(false);
              autoShutTimes.push(tMs);
              const inWindow = autoShutTimes.filter((x) => x > tMs - pa.windowMs).length;
              expect(inWindow).toBeLessThanOrEqual(pa.maxShuts);
              seen.auto++;
              if (inWindow === pa.maxShuts) seen.budgetFull++;
            } else if (c.kind === 'link-down') {
              seen.operator++;
            }
          }
          pending.push(...out.commands);
          for (const e of out.events) {
            expect(e.ts).toBe(new Date(1.7e12 + tMs).toISOString());
            expect(e.policyHash).toBe(pol.hash);
            expect(typeof e.port).toBe('string');
            expect(e.reason.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 1000 },
    );
    // Not vacuous: automatic and operator shuts happen, and the budget is often reached.
    expect(seen.auto).toBeGreaterThan(100);
    expect(seen.operator).toBeGreaterThan(10);
    expect(seen.budgetFull).toBeGreaterThan(10);
  });
});
