import { describe, expect, it } from 'vitest';
import {
  breakerBusy,
  breakerStep,
  holdExpiryDue,
  initialBreakerState,
  portStates,
  restoreHeld,
  restoreTripped,
  type BreakerState,
  type OperatorCommand,
} from '../../agent/breaker/state.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { esxLoop, kvmLoop, uplinkFlood, vmFlood, type TraceSpec } from '../../agent/testing/traces.js';
import type { Policy, PortPolicy, Verdict } from '../../agent/types.js';
import { breakerDriver, closedLoop as closedLoopWith, result, T0, verdictsFor, WALL0 } from '../helpers/breaker-driver.js';

const policy = testPolicy();
const SETTLE = policy.breaker.settleMs;
const WINDOW = policy.breaker.windowMs;
const ports3 = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm', vm2: 'vm', mgmt0: 'mgmt' }, policy);
const { evidence, loop, flood } = verdictsFor(policy);

/** A breaker driven by hand: `at(ms, ...)` is one step at that monotonic time. */
const driver = (ports: ReadonlyMap<string, PortPolicy> = ports3, pol: Policy = policy, state: BreakerState = initialBreakerState()) => breakerDriver(ports, pol, state);

describe('loops', () => {
  it('shuts exactly one member, the first by shut order, and waits for its result', () => {
    const d = driver();
    const out = d.at(0, { verdicts: [loop(['up2', 'up1'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up1', reason: 'loop on br0: shut up1 (first of up1,up2 by shut order)' }]);
    expect(out.events).toEqual([]); // journaled when it took effect
    // The verdict repeats every tick while the action is in flight: nothing more.
    for (let t = 1; t <= 5; t++) d.at(t, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands).toHaveLength(1);
    expect(portStates(d.state)).toMatchObject([{ port: 'up1', state: 'tripping' }]);
  });

  it('journals the trip with evidence, action, reason, policy hash and a wall-clock ts', () => {
    const d = driver();
    const v = loop(['up1', 'up2']);
    d.at(0, { verdicts: [v] });
    const r = result('link-down', 'up1');
    const out = d.at(3, { results: [r] });
    expect(out.events).toHaveLength(1);
    expect(out.events[0]).toEqual({
      ts: new Date(WALL0 + 3).toISOString(),
      event: 'trip',
      port: 'up1',
      reason: 'loop on br0: shut up1 (first of up1,up2 by shut order)',
      policyHash: policy.hash,
      evidence: v.evidence,
      action: r,
    });
    expect(portStates(d.state)).toMatchObject([{ port: 'up1', state: 'tripped', since: new Date(WALL0 + 3).toISOString() }]);
  });

  it('ignores the loop while the shut settles, then escalates to the next member only if the loop persists', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    d.at(2, { results: [result('link-down', 'up1')] });
    // Settling: residual frames may still show a loop.
    for (let t = 3; t < 2 + SETTLE; t++) d.at(t, { verdicts: [loop(['up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
    // Persisting after settle: escalate, journaled before the new shut.
    const out = d.at(2 + SETTLE, { verdicts: [loop(['up2', 'up3'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up2', reason: 'loop on br0: shut up2 (first of up2,up3 by shut order)' }]);
    expect(out.events).toMatchObject([{ event: 'escalate', port: 'up2', previous: 'up1', bridge: 'br0' }]);
    expect(out.events[0]!.reason).toBe(`loop on br0 persisted ${SETTLE} ms after shutting up1; escalating to up2`);
  });

  it('settles in full when the samples after the shut do not show both remaining members circling frames', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    d.at(2, { results: [result('link-down', 'up1')] });
    // Windows (ms relative to the verdict): up2 still busy after the shut, up3 receives nothing
    // any more (frames in flight only): not proof, so no escalation before settle.
    const T0NS = 5e12;
    const v = (tMs: number): Verdict => {
      const w: Verdict['evidence']['window'] = [];
      for (const dt of [-3, -2, -1, 0]) {
        w.push({ port: 'up2', tMs: dt, rxPps: 90_000, txPps: 95_000, floodPps: 90_000 });
        w.push({ port: 'up3', tMs: dt, rxPps: 0, txPps: 95_000, floodPps: 0 });
      }
      return { kind: 'loop', bridge: 'br0', members: ['up2', 'up3'], evidence: { ...evidence('w'), tNs: T0NS + tMs * 1e6, window: w } };
    };
    for (let t = 6; t < 2 + SETTLE; t++) d.at(t, { verdicts: [v(t)] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
    // Both circling in every sample after the shut: escalate now, inside settle.
    const both = v(2 + SETTLE - 5);
    for (const x of both.evidence.window) if (x.port === 'up3') x.rxPps = 92_000;
    d.at(2 + SETTLE - 5, { verdicts: [both] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
  });

  it('does not escalate when the loop stopped after the first shut', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    d.at(2, { results: [result('link-down', 'up1')] });
    for (let t = 3; t < 500; t++) d.at(t);
    expect(d.commands).toHaveLength(1);
    expect(d.events.map((e) => e.event)).toEqual(['trip']);
  });

  it('never shuts a protected member; an all-protected loop is only reported, once per window', () => {
    const ports = testPorts({ up1: { role: 'uplink', protected: true }, up2: 'uplink', mgmt0: 'mgmt' }, policy);
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up2']);

    const d2 = driver(ports);
    for (let t = 0; t < 2 * WINDOW + 10; t += 5) d2.at(t, { verdicts: [loop(['up1', 'mgmt0'])] });
    expect(d2.commands).toEqual([]);
    expect(d2.events).toHaveLength(3); // t = 0, WINDOW, 2*WINDOW
    expect(d2.events[0]).toMatchObject({ event: 'flood-observed', port: 'br0', reason: 'loop on br0 but every member is protected or already tripped' });
  });

  it('a role missing from shutOrder (infinite rank) is never chosen', () => {
    const pol = testPolicy({ breaker: { shutOrder: ['vm'] } });
    const ports = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm' }, pol);
    const d = driver(ports, pol);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands).toEqual([]);
    d.at(1, { verdicts: [loop(['up1', 'vm1'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['vm1']);
  });

  it('a failed link-down puts the port back to forwarding and tries the next member at once', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    const out = d.at(1, { results: [result('link-down', 'up1', false)] });
    expect(out.events.map((e) => e.event)).toEqual(['action-failed', 'escalate']);
    expect(out.events[0]).toMatchObject({ port: 'up1', reason: 'link-down of up1 failed: EPERM' });
    expect(out.events[1]).toMatchObject({ port: 'up2', reason: 'link-down of up1 failed; escalating to up2' });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up2', reason: 'loop on br0: shut up2 (first of up2,up3 by shut order)' }]);
    expect(portStates(d.state)).toMatchObject([
      { port: 'up1', state: 'forwarding' },
      { port: 'up2', state: 'tripping' },
    ]);
  });

  it('stops at the shut budget and says so, rate-limited', () => {
    const pol = testPolicy({ breaker: { maxShuts: 1 } });
    const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', up4: 'uplink' }, pol);
    const d = driver(ports, pol);
    d.at(0, { verdicts: [loop(['up1', 'up2'], 'br0')] });
    for (let t = 1; t < 100; t++) d.at(t, { verdicts: [loop(['up3', 'up4'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
    expect(d.events).toHaveLength(1);
    expect(d.events[0]).toMatchObject({ event: 'flood-observed', port: 'up3' });
    expect(d.events[0]!.reason).toMatch(/^shut budget exhausted: 1 automatic link-downs within 10000 ms \(max 1\); loop on br1 continues, would shut up3$/);
    // The window slides: WINDOW after the first shut, the budget is back.
    d.at(WINDOW, { verdicts: [loop(['up3', 'up4'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up3']);
  });

  it('maxShuts 0 means no automatic shut at all', () => {
    const pol = testPolicy({ breaker: { maxShuts: 0 } });
    const d = driver(testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm' }, pol), pol);
    d.at(0, { verdicts: [loop(['up1', 'up2']), flood('vm1')] });
    expect(d.commands).toEqual([]);
  });
});

describe('a loop through two bridges of one host', () => {
  // br0 (up1, vmb0) and br1 (up2, vmb1) joined by a VM bridging vmb0 with vmb1: the loop shows on
  // both bridges in the same tick, and one shut ends it (lab: agent-operator-shapes).
  const ports = testPorts({ up1: 'uplink', up2: 'uplink', vmb0: 'vm', vmb1: 'vm', vm1: 'vm' }, policy);
  /** A loop verdict on `bridge` whose members circled frames in the samples at tMs - 3..tMs. */
  const circling = (bridge: string, members: string[], tMs: number): Verdict => {
    const w: Verdict['evidence']['window'] = [];
    for (const dt of [-3, -2, -1, 0]) for (const port of members) w.push({ port, tMs: dt, rxPps: 90_000, txPps: 95_000, floodPps: 90_000 });
    return { kind: 'loop', bridge, members, evidence: { ...evidence('w'), tNs: T0 + tMs * 1e6, window: w } };
  };

  it('shuts one member (the VM vNIC of the first bridge), not one per bridge', () => {
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0'), loop(['up2', 'vmb1'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
    d.at(1, { verdicts: [loop(['up2', 'vmb1'], 'br1')], results: [result('link-down', 'vmb0')] });
    // Residual verdicts on br1 whose samples do not show the loop going on after the shut: no second shut.
    for (let t = 2; t < 200; t++) d.at(t, t < 5 ? { verdicts: [loop(['up2', 'vmb1'], 'br1')] } : {});
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
    expect(d.kinds()).toEqual(['trip:vmb0']);
  });

  it('a loop through a guest (the verdict names it, session 20): the shut of its vNIC says so in the reason', () => {
    const d = driver(ports);
    const guest = { vm: 'fnOS_2', ports: ['vmb0', 'vmb1'] };
    const v0 = { ...loop(['up1', 'vmb0'], 'br0'), guest } as Verdict;
    const v1 = { ...loop(['up2', 'vmb1'], 'br1'), guest } as Verdict;
    d.at(0, { verdicts: [v0, v1] });
    expect(d.commands.map((c) => [c.port, c.reason])).toEqual([
      ['vmb0', expect.stringMatching(/^loop on br0 through VM fnOS_2 \(the guest forwards between its vNICs vmb0,vmb1; vmb0 is its vNIC\): shut vmb0 /)],
    ]);
    // A verdict without a guest says nothing of one.
    const plain = driver(ports);
    plain.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0')] });
    expect(plain.commands[0]!.reason).toMatch(/^loop on br0: shut vmb0 /);
  });

  it('an unrelated loop on the other bridge is shut as soon as its samples show it going on after the first shut landed', () => {
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0'), circling('br1', ['up2', 'vmb1'], 0)] });
    d.at(1, { results: [result('link-down', 'vmb0')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
    // Samples at 1..4 ms: wholly after the shut landed (1 ms), both members circling.
    d.at(4, { verdicts: [circling('br1', ['up2', 'vmb1'], 4)] });
    expect(d.commands.map((c) => ({ port: c.port, tMs: c.tMs }))).toEqual([
      { port: 'vmb0', tMs: 0 },
      { port: 'vmb1', tMs: 4 },
    ]);
  });

  it('waits for a shut in flight for at most its settle, then judges alone', () => {
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0')] });
    for (let t = 1; t < SETTLE; t++) d.at(t, { verdicts: [loop(['up2', 'vmb1'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
    d.at(SETTLE, { verdicts: [loop(['up2', 'vmb1'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0', 'vmb1']);
  });

  it("a loop through a guest: its other vNIC is not taken for a flood while the cut settles, and is after it if it goes on", () => {
    const d = driver(ports);
    const guest = { vm: 'vmA', ports: ['vmb0', 'vmb1'] };
    d.at(0, { verdicts: [{ ...loop(['up1', 'vmb0'], 'br0'), guest } as Verdict] });
    d.at(1, { verdicts: [flood('vmb1')] }); // the shut in flight
    d.at(2, { verdicts: [flood('vmb1')], results: [result('link-down', 'vmb0')] });
    d.at(2 + SETTLE - 1, { verdicts: [flood('vmb1')] }); // settling
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
    d.at(2 + SETTLE + 1, { verdicts: [flood('vmb1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0', 'vmb1']);
    // Without the guest named, vmb1 is no member of br0's loop: a flood as ever.
    const plain = driver(ports);
    plain.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0')] });
    plain.at(1, { verdicts: [flood('vmb1')] });
    expect(plain.commands.map((c) => c.port)).toEqual(['vmb0', 'vmb1']);
  });

  it("a loop through a guest seen on its other vSwitch waits for the guest's cut however long the call takes", () => {
    const ep = testPorts({ 'esx1/vmnic0': 'uplink', 'esx1/vnA0': 'vm', 'esx1/vmnic1': 'uplink', 'esx1/vnA1': 'vm' }, policy);
    const guest = { vm: 'vmA', ports: ['esx1/vnA0', 'esx1/vnA1'] };
    const v0 = { ...loop(['esx1/vmnic0', 'esx1/vnA0'], 'esx1/vSwitch0'), guest } as Verdict;
    const v1 = { ...loop(['esx1/vmnic1', 'esx1/vnA1'], 'esx1/vSwitch1'), guest } as Verdict;
    const d = driver(ep);
    d.at(0, { verdicts: [v0] });
    // The cut call (vim-cmd over SSH) still running long past settle: the same guest's loop on vSwitch1 waits.
    for (let t = 1; t < 10 * SETTLE; t += 5) d.at(t, { verdicts: [v1] });
    expect(d.commands.map((c) => c.port)).toEqual(['esx1/vnA0']);
    // Another guest's loop on vSwitch1 waits only as long as settle.
    const other = driver(ep);
    other.at(0, { verdicts: [v0] });
    for (let t = 1; t < 10 * SETTLE; t += 5) other.at(t, { verdicts: [{ ...v1, guest: { vm: 'vmB', ports: ['esx1/vnA1'] } } as Verdict] });
    expect(other.commands.map((c) => c.port)).toEqual(['esx1/vnA0', 'esx1/vnA1']);
  });

  it('vSwitches of two different ESXi hosts do not wait for each other', () => {
    const ep = testPorts({ 'esxA/vmnic0': 'uplink', 'esxA/vnic-a': 'vm', 'esxB/vmnic0': 'uplink', 'esxB/vnic-b': 'vm' }, policy);
    const d = driver(ep);
    d.at(0, { verdicts: [loop(['esxA/vmnic0', 'esxA/vnic-a'], 'esxA/vSwitch0'), loop(['esxB/vmnic0', 'esxB/vnic-b'], 'esxB/vSwitch0')] });
    expect(d.commands.map((c) => c.port)).toEqual(['esxA/vnic-a', 'esxB/vnic-b']);
  });

  it("a member of a waiting bridge's loop is not taken for a flood while it waits", () => {
    const d = driver(ports);
    d.at(0, { verdicts: [loop(['up1', 'vmb0'], 'br0'), loop(['up2', 'vmb1'], 'br1')] });
    d.at(1, { verdicts: [flood('vmb1')], results: [result('link-down', 'vmb0')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmb0']);
  });
});

describe('floods', () => {
  it('a flood from a VM shuts the VM port', () => {
    const d = driver();
    const out = d.at(0, { verdicts: [flood('vm1')] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'vm1', reason: 'flood from vm1 (role vm, not a loop): shut vm1' }]);
    d.at(1, { verdicts: [flood('vm1')] });
    expect(d.commands).toHaveLength(1);
  });

  it('a flood entering on an uplink is observed only (rate-limited), never shut', () => {
    const d = driver();
    for (let t = 0; t < WINDOW + 10; t++) d.at(t, { verdicts: [flood('up1')] });
    expect(d.commands).toEqual([]);
    expect(d.events).toHaveLength(2);
    expect(d.events[0]).toMatchObject({
      event: 'flood-observed',
      port: 'up1',
      reason: 'flood on up1 (role uplink): not shut, role uplink is not in breaker.floodShutRoles',
    });
  });

  it("an uplink is shut for a flood only if the operator put 'uplink' in floodShutRoles", () => {
    const pol = testPolicy({ breaker: { floodShutRoles: ['vm', 'uplink'] } });
    const d = driver(testPorts({ up1: 'uplink', vm1: 'vm' }, pol), pol);
    d.at(0, { verdicts: [flood('up1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
  });

  it('a protected VM is not shut for a flood', () => {
    const d = driver(testPorts({ vm1: { role: 'vm', protected: true } }));
    d.at(0, { verdicts: [flood('vm1')] });
    expect(d.commands).toEqual([]);
    expect(d.events[0]).toMatchObject({ event: 'flood-observed', reason: 'flood on vm1 (role vm): not shut, port is protected' });
  });

  it('a flood leaving by an uplink (egress) is told once per window and never shut, even with uplink in floodShutRoles', () => {
    const pol = testPolicy({ breaker: { floodShutRoles: ['vm', 'uplink'] } });
    const d = driver(testPorts({ up1: 'uplink', up2: 'uplink' }, pol), pol);
    const egress: Verdict = { kind: 'egress', port: 'up2', evidence: evidence('egress up2') };
    d.at(0, { verdicts: [egress] });
    d.at(100, { verdicts: [egress] });
    expect(d.commands).toEqual([]);
    expect(d.events).toHaveLength(1);
    expect(d.events[0]).toMatchObject({ event: 'flood-observed', port: 'up2' });
    expect(d.events[0]!.reason).toMatch(/^flood leaving by up2, and no watched port shows its source: not shut/);
    d.at(pol.breaker.windowMs + 1, { verdicts: [egress] });
    expect(d.events).toHaveLength(2);
    expect(d.commands).toEqual([]);
  });

  it('verdicts about ports that are not watched are ignored', () => {
    const d = driver(testPorts({ vm1: 'vm' }));
    d.at(0, { verdicts: [flood('vm9'), loop(['up1', 'up2'])] });
    expect(d.commands).toEqual([]);
  });
});

describe('dry run', () => {
  const dry = testPolicy({ dryRun: true });
  const dryPorts = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm' }, dry);

  it('a loop gives would-trip (with evidence), no command; the port stays forwarding', () => {
    const d = driver(dryPorts, dry);
    const v = loop(['up1', 'up2']);
    d.at(0, { verdicts: [v] });
    expect(d.commands).toEqual([]);
    expect(d.events).toEqual([
      expect.objectContaining({ event: 'would-trip', port: 'up1', evidence: v.evidence, dryRun: true, reason: 'loop on br0: shut up1 (first of up1,up2 by shut order)' }),
    ]);
    expect(portStates(d.state)).toEqual([]);
  });

  it('escalation still works in shadow mode: settle, then would-trip the next member', () => {
    const d = driver(dryPorts, dry);
    for (let t = 0; t <= 3 * SETTLE; t++) d.at(t, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(d.commands).toEqual([]);
    expect(d.events.map((e) => `${e.event}:${e.port}`)).toEqual([
      'would-trip:up1',
      'escalate:up2',
      'would-trip:up2',
      'escalate:up3',
      'would-trip:up3',
      // Every member shadow-tripped and the loop still there: reported, not escalated further.
      'flood-observed:br0',
    ]);
    expect(d.events[1]!.reason).toBe(`loop on br0 persisted ${SETTLE} ms after would-trip of up1; escalating to up2`);
  });

  it('a per-port dryRun shadows only that port', () => {
    const ports = testPorts({ vm1: { role: 'vm', dryRun: true }, vm2: 'vm' });
    const d = driver(ports);
    for (let t = 0; t < 20; t++) d.at(t, { verdicts: [flood('vm1'), flood('vm2')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vm2']);
    expect(d.events.filter((e) => e.event === 'would-trip').map((e) => e.port)).toEqual(['vm1']); // rate-limited
  });
});

describe('operator commands', () => {
  const op = (kind: OperatorCommand['kind'], port: string): OperatorCommand => ({ kind, port, reason: 'ticket 42', by: 'alice' });

  it('restore of a tripped port: link-up, restoring, then forwarding with a restore event', () => {
    const d = driver();
    d.at(0, { verdicts: [flood('vm1')] });
    d.at(1, { results: [result('link-down', 'vm1')] });
    const out = d.at(100, { operator: [op('restore', 'vm1')] });
    expect(out.commands).toEqual([{ kind: 'link-up', port: 'vm1', reason: 'operator restore by alice: ticket 42' }]);
    expect(portStates(d.state)[0]).toMatchObject({ port: 'vm1', state: 'restoring', by: 'alice' });
    const done = d.at(101, { results: [result('link-up', 'vm1')] });
    expect(done.events).toMatchObject([{ event: 'restore', port: 'vm1', reason: 'operator restore by alice: ticket 42', by: 'alice' }]);
    expect(portStates(d.state)[0]).toMatchObject({ port: 'vm1', state: 'forwarding' });
  });

  it('restore of a port that is not tripped is refused', () => {
    const d = driver();
    const out = d.at(0, { operator: [op('restore', 'vm1')] });
    expect(out.commands).toEqual([]);
    expect(out.events).toMatchObject([{ event: 'action-failed', port: 'vm1', reason: 'restore of vm1 refused: port is forwarding (by alice: ticket 42)' }]);
  });

  it('trip: link-down without budget; a protected port is refused', () => {
    const pol = testPolicy({ breaker: { maxShuts: 0 } });
    const d = driver(testPorts({ vm1: 'vm', mgmt0: 'mgmt' }, pol), pol);
    const out = d.at(0, { operator: [op('trip', 'vm1'), op('trip', 'mgmt0')] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'vm1', reason: 'operator trip by alice: ticket 42' }]);
    expect(out.events).toMatchObject([{ event: 'action-failed', port: 'mgmt0', reason: 'trip of mgmt0 refused: protected (by alice: ticket 42)', by: 'alice' }]);
    const done = d.at(1, { results: [result('link-down', 'vm1')] });
    expect(done.events).toMatchObject([{ event: 'trip', port: 'vm1', reason: 'operator trip by alice: ticket 42', by: 'alice' }]);
  });

  it('a restored loop member whose loop is still there is shut again (not its neighbour)', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    d.at(1, { results: [result('link-down', 'up1')] });
    d.at(1000, { operator: [op('restore', 'up1')] });
    d.at(1001, { results: [result('link-up', 'up1')] });
    d.at(1002, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands.map((c) => `${c.kind}:${c.port}`)).toEqual(['link-down:up1', 'link-up:up1', 'link-down:up1']);
  });
});

describe('operator holds', () => {
  const hold = (port: string, untilMs?: number, extra?: Record<string, unknown>): OperatorCommand => ({
    kind: 'hold',
    port,
    reason: 'maintenance',
    by: 'uid 0',
    ...(untilMs !== undefined ? { untilMs } : {}),
    ...(extra ? { extra } : {}),
  });
  const release = (port: string): OperatorCommand => ({ kind: 'release', port, reason: 'done', by: 'uid 0' });
  const restore = (port: string): OperatorCommand => ({ kind: 'restore', port, reason: 'fixed', by: 'uid 0' });

  it('holds a forwarding port: link-down now, journaled at once (with who per extra), never a candidate', () => {
    const d = driver();
    const who = { uid: 0, source: 'kernel' };
    const out = d.at(0, { operator: [hold('up1', undefined, { by: who })] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up1', reason: 'operator hold by uid 0: maintenance, until released' }]);
    expect(out.events).toMatchObject([{ event: 'hold', port: 'up1', by: who, previous: 'forwarding', policyHash: policy.hash }]);
    expect(out.events[0]!.untilMs).toBeUndefined();
    d.at(1, { results: [result('link-down', 'up1')] });
    expect(portStates(d.state)).toMatchObject([{ port: 'up1', state: 'held' }]);
    // A loop through up1 and up2: up1 is not a candidate (held), up2 is.
    d.at(2, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
  });

  it('a protected port can be held (an operator decides), and the reason says so', () => {
    const ports = testPorts({ mgmt0: { role: 'mgmt', protected: true } }, policy);
    const d = driver(ports);
    const out = d.at(0, { operator: [hold('mgmt0')] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'mgmt0', reason: expect.stringContaining('protected port: held by operator decision') }]);
    expect(portStates(d.state)).toMatchObject([{ port: 'mgmt0', state: 'held' }]);
  });

  it('a tripped port held issues no command; restore is refused while held; release leaves it tripped', () => {
    const d = driver();
    d.at(0, { verdicts: [flood('vm1')] });
    d.at(1, { results: [result('link-down', 'vm1')] });
    const h = d.at(2, { operator: [hold('vm1')] });
    expect(h.commands).toEqual([]);
    expect(h.events).toMatchObject([{ event: 'hold', previous: 'tripped' }]);
    const r = d.at(3, { operator: [restore('vm1')] });
    expect(r.commands).toEqual([]);
    expect(r.events).toMatchObject([{ event: 'action-failed', reason: expect.stringContaining('release the hold first') }]);
    const rel = d.at(4, { operator: [release('vm1')] });
    expect(rel.commands).toEqual([]);
    expect(rel.events).toMatchObject([{ event: 'release', port: 'vm1', reason: expect.stringContaining('still down until an operator restores it') }]);
    expect(portStates(d.state)).toMatchObject([{ port: 'vm1', state: 'tripped' }]);
    expect(d.at(5, { operator: [release('vm1')] }).events).toMatchObject([{ event: 'action-failed', reason: expect.stringContaining('not held') }]);
    expect(d.at(6, { operator: [restore('vm1')] }).commands).toEqual([{ kind: 'link-up', port: 'vm1', reason: 'operator restore by uid 0: fixed' }]);
  });

  it('expires by wall clock into tripped, once, and holdExpiryDue says when', () => {
    const d = driver();
    d.at(0, { operator: [hold('vm1', WALL0 + 1000)] });
    expect(portStates(d.state)[0]).toMatchObject({ state: 'held', untilMs: WALL0 + 1000 });
    expect(holdExpiryDue(d.state, WALL0 + 999)).toBe(false);
    expect(holdExpiryDue(d.state, WALL0 + 1000)).toBe(true);
    expect(d.at(999).events).toEqual([]);
    const out = d.at(1000);
    expect(out.events).toMatchObject([{ event: 'hold-expired', port: 'vm1' }]);
    expect(out.commands).toEqual([]);
    expect(portStates(d.state)).toMatchObject([{ port: 'vm1', state: 'tripped' }]);
    expect(d.at(2000).events).toEqual([]);
    expect(holdExpiryDue(d.state, WALL0 + 5000)).toBe(false);
  });

  it('a link-up landing on a held port is answered by a link-down; a failed link-down is journaled, hold stands', () => {
    const d = driver();
    d.at(0, { verdicts: [flood('vm1')] });
    d.at(1, { results: [result('link-down', 'vm1')] });
    d.at(2, { operator: [restore('vm1')] }); // link-up in flight
    const h = d.at(3, { operator: [hold('vm1')] });
    expect(h.commands).toEqual([]);
    const up = d.at(4, { results: [result('link-up', 'vm1')] });
    expect(up.commands).toEqual([{ kind: 'link-down', port: 'vm1', reason: 'vm1 came up while held: down again' }]);
    const failed = d.at(5, { results: [result('link-down', 'vm1', false)] });
    expect(failed.events).toMatchObject([{ event: 'action-failed', port: 'vm1' }]);
    expect(portStates(d.state)).toMatchObject([{ port: 'vm1', state: 'held' }]);
  });

  it('restoreHeld: holds from the journal come back with their expiry; a past one expires on the first step', () => {
    const st = restoreHeld(initialBreakerState(), [
      { port: 'vm1', since: 'x', reason: 'r', untilMs: null },
      { port: 'vm2', since: 'x', reason: 'r', untilMs: WALL0 - 1 },
    ]);
    const d = driver(ports3, policy, st);
    const out = d.at(0);
    expect(out.events).toMatchObject([{ event: 'hold-expired', port: 'vm2' }]);
    expect(portStates(d.state)).toMatchObject([
      { port: 'vm1', state: 'held' },
      { port: 'vm2', state: 'tripped' },
    ]);
  });

  it('unwatched ports cannot be held', () => {
    const d = driver();
    expect(d.at(0, { operator: [hold('nope0')] }).events).toMatchObject([{ event: 'action-failed', reason: expect.stringContaining('not a watched port') }]);
    expect(d.commands).toEqual([]);
  });
});

describe('restart and status', () => {
  it('ports tripped before a restart stay tripped and are never candidates', () => {
    const st = restoreTripped(initialBreakerState(), [{ port: 'up1', since: '2025-01-01T00:00:00.000Z', evidence: evidence('old') }]);
    expect(portStates(st)).toEqual([
      { port: 'up1', state: 'tripped', since: '2025-01-01T00:00:00.000Z', reason: 'tripped before restart (journal)', evidence: evidence('old') },
    ]);
    const d = driver(ports3, policy, st);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up2']);
  });

  it('breakerBusy is true while an action is in flight or a loop shut settles', () => {
    const d = driver();
    const t = (ms: number) => 5e12 + ms * 1e6;
    expect(breakerBusy(d.state, t(0))).toBe(false);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(breakerBusy(d.state, t(1))).toBe(true);
    d.at(2, { results: [result('link-down', 'up1')] });
    expect(breakerBusy(d.state, t(3))).toBe(true);
    expect(breakerBusy(d.state, t(2 + SETTLE))).toBe(false);
  });

  it('results it did not ask for: an ok one is the truth about the link, a failed one changes nothing', () => {
    const d = driver();
    d.at(0, { verdicts: [flood('vm1')] });
    d.at(1, { results: [result('link-down', 'vm1')] });
    const dup = d.at(2, { results: [result('link-down', 'vm1', false)] });
    expect(dup.events).toMatchObject([{ event: 'action-failed', reason: 'link-down of vm1 failed (not requested by the breaker): EPERM' }]);
    expect(portStates(d.state)[0]).toMatchObject({ port: 'vm1', state: 'tripped' });
    const up = d.at(3, { results: [result('link-up', 'vm1')] });
    expect(up.events).toMatchObject([{ event: 'restore', reason: 'link-up of vm1 reported (not requested by the breaker)' }]);
    expect(portStates(d.state)[0]).toMatchObject({ port: 'vm1', state: 'forwarding' });
    expect(d.commands).toHaveLength(1);
  });

  it('a bad wall clock does not throw', () => {
    const out = breakerStep(initialBreakerState(), { tNs: 1, wallMs: NaN, verdicts: [flood('vm1')], results: [], operator: [] }, ports3, policy);
    expect(out.commands).toHaveLength(1);
  });
});

// --- closed loop: detector + breaker + a trace that reacts to link-downs ------------------------

/** The shared closed loop (helpers/breaker-driver.ts) with this file's policy by default. */
const closedLoop = (spec: TraceSpec, ports: ReadonlyMap<string, PortPolicy>, ms: number, pol: Policy = policy) => closedLoopWith(spec, ports, ms, pol);

describe('closed loop over generated traces', () => {
  const kvmPorts = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, policy);

  it('KVM loop: one link-down (up1) within holdSamples, the loop ends, nothing else is shut', () => {
    const r = closedLoop(kvmLoop({ startMs: 100, jitterMs: 0.5, seed: 11 }), kvmPorts, 1000);
    expect(r.commands.map((c) => `${c.kind}:${c.port}`)).toEqual(['link-down:up1']);
    expect(r.commands[0]!.tMs - 100).toBeLessThan(policy.defaults.holdSamples * 1.5 + 1);
    expect(r.events.map((e) => e.event)).toEqual(['trip']);
    expect([...r.down]).toEqual(['up1']);
    // Verdicts stop as soon as the shut shows in the counters.
    expect(r.verdictTicks).toBeLessThanOrEqual(3);
  });

  it('a loop through three ports persists after the first shut: escalate to the second as soon as the samples after the shut show it, before settle ends', () => {
    // vm1 sends a multicast stream meanwhile: the members are not the only ways in (onlyWaysIn).
    const r = closedLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1'], othersSendPps: 2000 }), kvmPorts, 1000);
    expect(r.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    // The shut lands a tick after it is issued; two whole samples after it (plus the one that
    // straddles it) show up2/up3 still circling frames: ~4 ticks, not settleMs (30).
    const gap = r.commands[1]!.tMs - r.commands[0]!.tMs;
    expect(gap).toBeGreaterThanOrEqual(3);
    expect(gap).toBeLessThan(SETTLE / 2);
    expect(r.events.map((e) => `${e.event}:${e.port}`)).toEqual(['trip:up1', 'escalate:up2', 'trip:up2']);
  });

  it('ESX-style loop: a VM member is shut (shut order vm before uplink), never up1', () => {
    const ports = testPorts({ up1: 'uplink', vmA1: 'vm', vmA2: 'vm', vmB: 'vm' }, policy);
    const r = closedLoop(esxLoop(), ports, 500);
    expect(r.commands.map((c) => c.port)).toEqual(['vmA1']);
  });

  it('a VM flooding at 175k pps: the VM port is shut, never an uplink', () => {
    const ports = testPorts({ up1: 'uplink', vm1: 'vm', vm2: 'vm', mgmt0: 'mgmt' }, policy);
    const r = closedLoop(vmFlood(), ports, 500);
    expect(r.commands.map((c) => c.port)).toEqual(['vm1']);
    expect(r.events).toMatchObject([{ event: 'trip', port: 'vm1' }]);
  });

  it('a flood entering on the uplink: flood-observed only', () => {
    const ports = testPorts({ up1: 'uplink', vm1: 'vm', vm2: 'vm', mgmt0: 'mgmt' }, policy);
    const r = closedLoop(uplinkFlood(), ports, 500);
    expect(r.commands).toEqual([]);
    expect(r.events).toMatchObject([{ event: 'flood-observed', port: 'up1' }]);
  });

  it('dry run over a real loop trace: would-trip, no command, the loop goes on', () => {
    const dry = testPolicy({ dryRun: true });
    const ports = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, dry);
    const r = closedLoop(kvmLoop(), ports, 500, dry);
    expect(r.commands).toEqual([]);
    expect(r.events.map((e) => `${e.event}:${e.port}`)).toEqual(['would-trip:up1', 'escalate:up2', 'would-trip:up2', 'flood-observed:br0']);
    expect(r.verdictTicks).toBeGreaterThan(350);
  });
});

describe('loop residue', () => {
  // Seen in the lab (esx shape): frames still in flight when vmA1 went down made vmA2 look like
  // a single-source flood for one sample, and it was shut too. Two shut for one loop is a bug.
  const esxPorts = testPorts({ up1: 'uplink', vmA1: 'vm', vmA2: 'vm', vm1: 'vm', mgmt0: 'mgmt' }, policy);

  it('does not shut the other member as a flood while the loop shut settles', () => {
    const d = driver(esxPorts);
    d.at(0, { verdicts: [loop(['vmA1', 'vmA2'], 'vsw0')] });
    d.at(1, { results: [result('link-down', 'vmA1')], verdicts: [flood('vmA2')] });
    d.at(2, { verdicts: [flood('vmA2')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmA1']);
  });

  it('still shuts it if it keeps flooding after the settle time', () => {
    const d = driver(esxPorts);
    d.at(0, { verdicts: [loop(['vmA1', 'vmA2'], 'vsw0')] });
    d.at(1, { results: [result('link-down', 'vmA1')] });
    d.at(1 + SETTLE + 1, { verdicts: [flood('vmA2')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmA1', 'vmA2']);
  });

  it('a flood on a port that was not a loop member is judged at once', () => {
    const d = driver(esxPorts);
    d.at(0, { verdicts: [loop(['vmA1', 'vmA2'], 'vsw0')] });
    d.at(1, { results: [result('link-down', 'vmA1')], verdicts: [flood('vm1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vmA1', 'vm1']);
  });
});
