// Automatic recovery in the pure breaker: cooldown, probe, re-trip, backoff, maxTries, overrides.
import { describe, expect, it } from 'vitest';
import {
  breakerBusy,
  initialBreakerState,
  nextRecoveryNs,
  recoveryProbing,
  restoreTripped,
  type BreakerState,
  type OperatorCommand,
} from '../../agent/breaker/state.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { PortPolicy, Recovery } from '../../agent/types.js';
import { breakerDriver, result, T0, verdictsFor, WALL0 } from '../helpers/breaker-driver.js';

const policy = testPolicy();
const AUTO: Recovery = { mode: 'auto', cooldownMs: 1000, probeMs: 200, backoff: 2, maxTries: 3 };

function portsWith(rec: Recovery | undefined): Map<string, PortPolicy> {
  const ps = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm' }, policy);
  for (const p of ps.values()) if (rec) p.recovery = { ...rec };
  return ps;
}
const { loop, flood } = verdictsFor(policy);
const op = (kind: OperatorCommand['kind'], port: string): OperatorCommand => ({ kind, port, reason: 'test', by: 'alice' });

const driver = (ports: ReadonlyMap<string, PortPolicy>, state: BreakerState = initialBreakerState()) => breakerDriver(ports, policy, state);

/** Trip up1 for a loop at t=0 (link-down lands at t=1). */
function tripped(rec: Recovery | null = AUTO) {
  const d = driver(portsWith(rec ?? undefined));
  d.at(0, { verdicts: [loop(['up1', 'up2'])] });
  d.at(1, { results: [result('link-down', 'up1')] });
  return d;
}

describe('automatic recovery', () => {
  it('manual (or no recovery at all): a tripped port never comes back by itself', () => {
    for (const rec of [null, { ...AUTO, mode: 'manual' as const }]) {
      const d = tripped(rec);
      expect(nextRecoveryNs(d.state)).toBe(Infinity);
      for (let t = 2; t < 100_000; t += 997) d.at(t);
      expect(d.commands.map((c) => c.kind)).toEqual(['link-down']);
      expect(d.stateOf('up1')).toBe('tripped');
      expect(d.events[0]).not.toHaveProperty('recovery');
    }
  });

  it('after cooldownMs the link comes up for probeMs; quiet -> forwarding, restore by auto-recovery', () => {
    const d = tripped();
    expect(d.events[0]).toMatchObject({ event: 'trip', recovery: { mode: 'auto', failedProbes: 0, maxTries: 3, nextProbeInMs: 1000 } });
    expect(nextRecoveryNs(d.state)).toBe(T0 + 1001 * 1e6);
    d.at(1000);
    expect(d.commands).toHaveLength(1); // not yet: 999 ms after the trip landed
    const out = d.at(1001);
    expect(out.commands).toEqual([{ kind: 'link-up', port: 'up1', reason: 'recovery probe 1 of 3: up1 up for 200 ms to see whether the storm is gone' }]);
    expect(out.events).toMatchObject([{ event: 'probe', port: 'up1', try: 1, maxTries: 3, probeMs: 200, by: 'auto-recovery' }]);
    expect(d.stateOf('up1')).toBe('probing');
    expect(recoveryProbing(d.state)).toBe(true);
    expect(breakerBusy(d.state, T0 + 1001e6)).toBe(true);
    // The probe window starts when the link-up has landed.
    d.at(1003, { results: [result('link-up', 'up1')] });
    d.at(1202);
    expect(d.stateOf('up1')).toBe('probing');
    const done = d.at(1203);
    expect(done.events).toMatchObject([{ event: 'restore', port: 'up1', by: 'auto-recovery', try: 1 }]);
    expect(d.stateOf('up1')).toBe('forwarding');
    expect(recoveryProbing(d.state)).toBe(false);
    expect(d.kinds()).toEqual(['trip:up1', 'probe:up1', 'restore:up1']);
  });

  it('a verdict naming the probing port shuts it at once (no budget, no settle), and the next cooldown backs off', () => {
    const ports = portsWith(AUTO);
    ports.get('vm1')!.recovery = { ...AUTO, mode: 'manual' };
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    d.at(1, { results: [result('link-down', 'up1')] });
    // Spend the whole shut budget first: a re-trip after a probe is not a new decision.
    d.at(2, { verdicts: [flood('vm1')] });
    d.at(3, { results: [result('link-down', 'vm1')] });
    d.at(1001);
    d.at(1002, { results: [result('link-up', 'up1')] });
    const out = d.at(1010, { verdicts: [loop(['up2', 'up1'])] });
    // Only up1 goes down: up2 is not chosen while the re-trip lands.
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up1', reason: 'storm still present after recovery probe 1' }]);
    d.at(1011, { verdicts: [loop(['up2', 'up1'])] });
    d.at(1012, { results: [result('link-down', 'up1')] });
    const trip2 = d.events.filter((e) => e.event === 'trip' && e.port === 'up1')[1];
    expect(trip2).toMatchObject({ reason: 'storm still present after recovery probe 1', by: 'auto-recovery', recovery: { failedProbes: 1, nextProbeInMs: 2000 } });
    expect(trip2?.evidence).toBeDefined();
    expect(nextRecoveryNs(d.state)).toBe(T0 + (1012 + 2000) * 1e6);
    expect(d.commands.filter((c) => c.port === 'up2')).toEqual([]);
  });

  it('backoff schedule cooldown * backoff^N, then recovery-exhausted after maxTries failed probes', () => {
    const d = tripped();
    let t = 1; // the trip landed
    const probesAt: number[] = [];
    for (let n = 0; n < 3; n++) {
      const due = (nextRecoveryNs(d.state) - T0) / 1e6;
      expect(due - t).toBe(1000 * 2 ** n);
      d.at(due - 1);
      expect(d.stateOf('up1')).toBe('tripped');
      d.at(due);
      probesAt.push(due);
      d.at(due + 1, { results: [result('link-up', 'up1')] });
      d.at(due + 50, { verdicts: [flood('up1')] });
      t = due + 51;
      d.at(t, { results: [result('link-down', 'up1')] });
    }
    expect(probesAt).toEqual([1001, 1001 + 51 + 2000, 1001 + 51 + 2000 + 51 + 4000]);
    expect(d.kinds()).toEqual(['trip:up1', 'probe:up1', 'trip:up1', 'probe:up1', 'trip:up1', 'probe:up1', 'trip:up1', 'recovery-exhausted:up1']);
    expect(d.events.at(-1)).toMatchObject({ event: 'recovery-exhausted', maxTries: 3, by: 'auto-recovery' });
    expect(nextRecoveryNs(d.state)).toBe(Infinity);
    for (let s = t; s < t + 100_000; s += 1009) d.at(s);
    expect(d.stateOf('up1')).toBe('tripped');
    expect(d.commands.filter((c) => c.kind === 'link-up')).toHaveLength(3);
    // An operator may still restore it.
    d.at(t + 100_001, { operator: [op('restore', 'up1')] });
    expect(d.commands.at(-1)).toMatchObject({ kind: 'link-up', port: 'up1' });
  });

  it('a failed probe link-up counts as a try and backs off', () => {
    const d = tripped();
    d.at(1001);
    d.at(1002, { results: [result('link-up', 'up1', false)] });
    expect(d.stateOf('up1')).toBe('tripped');
    expect(d.kinds()).toEqual(['trip:up1', 'probe:up1', 'action-failed:up1']);
    expect(nextRecoveryNs(d.state)).toBe(T0 + (1002 + 2000) * 1e6);
  });

  it("a verdict naming the probing port while its link-up's result is still in flight re-trips it (the storm proves the link is up); the late link-up result is ignored", () => {
    const d = tripped();
    d.at(1001);
    const out = d.at(1001.5, { verdicts: [loop(['up1', 'up2'])] });
    // up1 again, not an escalation to up2 (which left both to be restored by their probes).
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up1', reason: 'storm still present after recovery probe 1' }]);
    expect(d.stateOf('up1')).toBe('tripping');
    d.at(1002, { results: [result('link-up', 'up1')] }); // the stale one
    expect(d.stateOf('up1')).toBe('tripping');
    expect(d.events.filter((e) => e.event === 'restore')).toEqual([]);
    d.at(1003, { results: [result('link-down', 'up1')] });
    expect(d.stateOf('up1')).toBe('tripped');
    expect(d.commands.filter((c) => c.port === 'up2')).toEqual([]);
    // The next probe's link-up counts as usual.
    d.at(1003 + 2000 + 1);
    expect(d.stateOf('up1')).toBe('probing');
    d.at(1003 + 2000 + 2, { results: [result('link-up', 'up1')] });
    d.at(1003 + 2000 + 2 + 201);
    expect(d.stateOf('up1')).toBe('forwarding');
  });

  it('operator hold cancels recovery: the probing port goes down and stays held', () => {
    const d = tripped();
    d.at(1001);
    d.at(1002, { results: [result('link-up', 'up1')] });
    d.at(1003, { operator: [op('hold', 'up1')] });
    expect(d.commands.at(-1)).toMatchObject({ kind: 'link-down', port: 'up1' });
    expect(d.stateOf('up1')).toBe('held');
    for (let t = 1004; t < 60_000; t += 1000) d.at(t);
    expect(d.stateOf('up1')).toBe('held');
    expect(nextRecoveryNs(d.state)).toBe(Infinity);
    // Release leaves it tripped and manual.
    d.at(60_000, { operator: [op('release', 'up1')] });
    for (let t = 60_001; t < 120_000; t += 1000) d.at(t);
    expect(d.stateOf('up1')).toBe('tripped');
    expect(d.commands.filter((c) => c.kind === 'link-up')).toHaveLength(1);
  });

  it('operator hold of a tripped port with a probe scheduled cancels the probe', () => {
    const d = tripped();
    d.at(500, { operator: [op('hold', 'up1')] });
    for (let t = 501; t < 10_000; t += 100) d.at(t);
    expect(d.commands.filter((c) => c.kind === 'link-up')).toEqual([]);
  });

  it('operator restore ends recovery: before the probe (link-up now) and during it (forwarding at once)', () => {
    const a = tripped();
    a.at(500, { operator: [op('restore', 'up1')] });
    a.at(501, { results: [result('link-up', 'up1')] });
    expect(a.stateOf('up1')).toBe('forwarding');
    expect(nextRecoveryNs(a.state)).toBe(Infinity);
    for (let t = 502; t < 5000; t += 100) a.at(t);
    expect(a.kinds()).toEqual(['trip:up1', 'restore:up1']);

    const b = tripped();
    b.at(1001);
    b.at(1002, { results: [result('link-up', 'up1')] });
    const out = b.at(1050, { operator: [op('restore', 'up1')] });
    expect(out.commands).toEqual([]);
    expect(out.events).toMatchObject([{ event: 'restore', port: 'up1', by: 'alice' }]);
    expect(b.stateOf('up1')).toBe('forwarding');
    for (let t = 1051; t < 5000; t += 100) b.at(t);
    expect(b.kinds()).toEqual(['trip:up1', 'probe:up1', 'restore:up1']);

    // Restore while the probe's link-up is in flight: that link-up completes the restore.
    const c = tripped();
    c.at(1001);
    c.at(1001.5, { operator: [op('restore', 'up1')] });
    c.at(1002, { results: [result('link-up', 'up1')] });
    expect(c.stateOf('up1')).toBe('forwarding');
    expect(c.events.at(-1)).toMatchObject({ event: 'restore', by: 'alice' });
  });

  it('operator trip of a probing port shuts it and ends recovery; refused while the link-up is in flight', () => {
    const d = tripped();
    d.at(1001);
    const refused = d.at(1001.5, { operator: [op('trip', 'up1')] });
    expect(refused.events).toMatchObject([{ event: 'action-failed', port: 'up1' }]);
    d.at(1002, { results: [result('link-up', 'up1')] });
    d.at(1010, { operator: [op('trip', 'up1')] });
    d.at(1011, { results: [result('link-down', 'up1')] });
    expect(d.stateOf('up1')).toBe('tripped');
    expect(d.events.at(-1)).toMatchObject({ event: 'trip', by: 'alice' });
    expect(d.events.at(-1)).not.toHaveProperty('recovery');
    expect(nextRecoveryNs(d.state)).toBe(Infinity);
  });

  it('operator trips and journal restarts are manual even with mode auto', () => {
    const d = driver(portsWith(AUTO));
    d.at(0, { operator: [op('trip', 'vm1')] });
    d.at(1, { results: [result('link-down', 'vm1')] });
    const r = driver(portsWith(AUTO), restoreTripped(initialBreakerState(), [{ port: 'up1', since: WALL0 }]));
    for (let t = 0; t < 100_000; t += 1000) {
      d.at(t + 2);
      r.at(t);
    }
    expect(d.stateOf('vm1')).toBe('tripped');
    expect(r.stateOf('up1')).toBe('tripped');
    expect([...d.commands, ...r.commands].filter((c) => c.kind === 'link-up')).toEqual([]);
  });

  it('a reload to manual before the probe is due cancels it', () => {
    const ports = portsWith(AUTO);
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    d.at(1, { results: [result('link-down', 'up1')] });
    ports.get('up1')!.recovery = { ...AUTO, mode: 'manual' };
    for (let t = 2; t < 10_000; t += 100) d.at(t);
    expect(d.commands.filter((c) => c.kind === 'link-up')).toEqual([]);
    expect(nextRecoveryNs(d.state)).toBe(Infinity);
  });
});
