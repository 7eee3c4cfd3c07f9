// A loop whose three members are every way its frames come back into their bridge (three unbonded
// uplinks into one switch) needs two cuts: one leaves the other two circling. The detector says
// when the members are every way in (Verdict.onlyWaysIn); the breaker then shuts two of them in
// one step instead of one, then the second once the samples after the first stop show the loop
// going on (2-4 ms of storm more in the lab, bench-reaction kvm-3up, session 20). Everything else
// (two members, four, another port taking frames in, an ESXi vSwitch) goes one at a time.
import { describe, expect, it } from 'vitest';
import { loopSettling } from '../../agent/breaker/state.js';
import { initialDetectorState, step } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { kvmLoop, TraceGen, type TraceSpec } from '../../agent/testing/traces.js';
import type { ActionResult, PortPolicy, Verdict } from '../../agent/types.js';
import { breakerDriver, closedLoop as closedLoopWith, result, verdictsFor } from '../helpers/breaker-driver.js';

const policy = testPolicy();
const SETTLE = policy.breaker.settleMs;
const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', up4: 'uplink', vm1: 'vm', vm2: 'vm', mgmt0: 'mgmt' }, policy);
const { loop: plainLoop } = verdictsFor(policy);
/** A loop verdict whose members the detector found to be every way into the bridge. */
const loop = (members: string[], bridge: string | null = 'br0'): Verdict => ({ ...(plainLoop(members, bridge) as Extract<Verdict, { kind: 'loop' }>), onlyWaysIn: true });
const stopped = (port: string, stoppedNs: number): ActionResult => ({ ...result('link-down', port), via: 'netlink-brport-state', stage: 'stopped', stoppedNs });

describe('detector: are the members every way into the bridge (onlyWaysIn)?', () => {
  function firstLoop(spec: TraceSpec, judged: ReadonlyMap<string, PortPolicy> = ports): Extract<Verdict, { kind: 'loop' }> {
    const gen = new TraceGen(spec);
    const det = initialDetectorState();
    for (let i = 0; i < 400; i++) {
      const v = step(det, gen.next(), judged, policy).verdicts.find((x) => x.kind === 'loop');
      if (v?.kind === 'loop') return v;
    }
    throw new Error('no loop verdict');
  }

  it('three uplinks into one switch, the VM only receiving the flood: yes, and a clue says why', () => {
    const v = firstLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1', 'mgmt0'] }));
    expect(v.members).toEqual(['up1', 'up2', 'up3']);
    expect(v.onlyWaysIn).toBe(true);
    expect(v.evidence.clues.at(-1)).toMatch(/^the 2 other port\(s\) of br0 take in no broadcast\/multicast at a loop's rate .*: up1,up2,up3 are every way back into it$/);
  });

  it('a VM sending a multicast stream into the bridge meanwhile: not known (it could be a way back in)', () => {
    const v = firstLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1'], othersSendPps: 2000 }));
    expect(v.members).toEqual(['up1', 'up2', 'up3']);
    expect(v.onlyWaysIn).toBeUndefined();
  });

  it('a fourth port receiving the storm but not yet a member (a second loop still ramping): not known', () => {
    const base = kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['up4', 'vm1'] });
    // up4 receives the storm at a tenth of the members' rate: too little for rx ≈ tx, but frames come in by it.
    const load: TraceSpec['load'] = (port, tMs, down) => {
      const l = base.load(port, tMs, down);
      return port === 'up4' && tMs >= 100 ? { ...l, rxPps: 10_000, bcastPps: 10_000 } : l;
    };
    const v = firstLoop({ ...base, load });
    expect(v.members).toEqual(['up1', 'up2', 'up3']);
    expect(v.onlyWaysIn).toBeUndefined();
  });

  it('without broadcast counters, the other ports are judged on every frame they take in', () => {
    const quiet = firstLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1'], bcastKnown: false, background: { rxPps: 20, txPps: 20, bcastPps: 0 } }));
    expect(quiet.onlyWaysIn).toBe(true);
    expect(quiet.evidence.clues.at(-1)).toMatch(/take in no frames at a loop's rate/);
    // 300 frames/s of unicast from the VM: under a loop's floor over 10 ms, not over 50 ms (100).
    const busy = firstLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1'], bcastKnown: false }));
    expect(busy.onlyWaysIn).toBeUndefined();
  });
});

describe('breaker: two cuts at once for three members that are every way in', () => {
  it('shuts the first two by shut order in one step, each with why, and keeps the third; no escalation', () => {
    const d = breakerDriver(ports, policy);
    const out = d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    const why = 'up1,up2,up3 are every way back into br0 (no other port takes in what circles): a loop through three ports of one bridge needs two cuts, one leaves the other two circling; up3 stays up';
    expect(out.commands).toEqual([
      { kind: 'link-down', port: 'up1', reason: `loop on br0: shut up1 (first of up1,up2,up3 by shut order; ${why}: up2 is shut with it)` },
      { kind: 'link-down', port: 'up2', reason: `loop on br0: shut up2 (first of up2,up3 by shut order; ${why}: shut with up1)` },
    ]);
    expect(out.events).toEqual([]);
    expect(d.stateOf('up1')).toBe('tripping');
    expect(d.stateOf('up2')).toBe('tripping');
    // Both stop; verdicts that still name the third member (frames in flight) change nothing.
    d.at(1, { results: [stopped('up1', 5e12 + 0.5e6), stopped('up2', 5e12 + 0.7e6)] });
    for (let t = 2; t < 10; t++) d.at(t, { verdicts: [loop(['up3', 'vm1'])] });
    d.at(12, { results: [result('link-down', 'up1')] });
    d.at(14, { results: [result('link-down', 'up2')] });
    expect(d.kinds()).toEqual(['trip:up1', 'trip:up2']);
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    expect(loopSettling(d.state, 5e12 + (14 + SETTLE) * 1e6)).toBe(false);
  });

  it('a protected or already excluded member is the one kept: the other two go', () => {
    const prot = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', mgmt0: 'mgmt' }, policy);
    prot.set('up1', { ...prot.get('up1')!, protected: true });
    const d = breakerDriver(prot, policy);
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up2', 'up3']);
    expect(d.commands[0]!.reason).toMatch(/; up1 stays up: up3 is shut with it\)$/);
  });

  it('one at a time where the count does not say which to keep or the fact is not known', () => {
    for (const v of [
      loop(['up1', 'up2']), // two members: one cut ends it
      loop(['up1', 'up2', 'up3', 'up4']), // four: maybe two loops (two uplinks into each of two switches)
      plainLoop(['up1', 'up2', 'up3']), // another port may be a way in
      loop(['up1', 'up2', 'up3'], 'esx1/vSwitch0'), // an ESXi vSwitch (split horizon)
      loop(['up1', 'up2', 'up3'], null),
    ]) {
      const d = breakerDriver(ports, policy);
      const out = d.at(0, { verdicts: [v] });
      expect(out.commands.map((c) => c.port), JSON.stringify(v.kind === 'loop' ? v.members : v)).toEqual(['up1']);
    }
  });

  it('two protected members: the one that may be shut goes alone', () => {
    const prot = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink' }, policy);
    for (const p of ['up1', 'up2']) prot.set(p, { ...prot.get(p)!, protected: true });
    const d = breakerDriver(prot, policy);
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up3']);
  });

  it('budget for one shut only: one, and the evidence decides the rest as before', () => {
    const d = breakerDriver(ports, policy);
    d.at(0, { verdicts: [plainLoop(['vm1', 'vm2'], 'br1')] });
    expect(d.commands.map((c) => c.port)).toEqual(['vm1']);
    d.at(1, { results: [result('link-down', 'vm1')] });
    d.at(100, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['vm1', 'up1']);
  });

  it('a later verdict in the same story (after a first shut) escalates one member as before', () => {
    const d = breakerDriver(ports, policy);
    d.at(0, { verdicts: [plainLoop(['up1', 'up2', 'up3', 'up4'])] });
    d.at(1, { results: [result('link-down', 'up1')] });
    // Settle over: the loop goes on through three members that are every way in.
    d.at(2 + SETTLE, { verdicts: [loop(['up2', 'up3', 'up4'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    expect(d.kinds()).toEqual(['trip:up1', 'escalate:up2']);
  });

  it('dry run: two would-trips in the same step', () => {
    const dry = { ...policy, dryRun: true };
    const d = breakerDriver(ports, dry);
    const out = d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(out.commands).toEqual([]);
    expect(out.events.map((e) => `${e.event}:${e.port}`)).toEqual(['would-trip:up1', 'would-trip:up2']);
  });

  it("the first's link-down fails: the kept member is shut instead when the budget allows a third", () => {
    const roomy = { ...policy, breaker: { ...policy.breaker, maxShuts: 3 } };
    const d = breakerDriver(ports, roomy);
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    d.at(1, { results: [stopped('up2', 5e12 + 0.7e6)] });
    const out = d.at(2, { results: [result('link-down', 'up1', false)] });
    expect(out.commands.map((c) => c.port)).toEqual(['up3']);
    // With the default budget (2; a failed link-down counts) it is only reported.
    const tight = breakerDriver(ports, policy);
    tight.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    tight.at(1, { results: [stopped('up2', 5e12 + 0.7e6)] });
    const t = tight.at(2, { results: [result('link-down', 'up1', false)] });
    expect(t.commands).toEqual([]);
    expect(t.events.map((e) => e.event)).toEqual(['action-failed', 'flood-observed']);
  });
});

describe('detector and breaker in a closed loop (1 ms samples)', () => {
  const closedLoop = (spec: TraceSpec, ms: number) => closedLoopWith(spec, ports, ms, policy);

  it('three uplinks into one switch: two shut at the first verdict, the loop ends, the third stays up', () => {
    const r = closedLoop(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1', 'mgmt0'] }), 400);
    expect(r.commands.map((c) => `${c.kind}:${c.port}`)).toEqual(['link-down:up1', 'link-down:up2']);
    expect(r.commands[1]!.tMs).toBe(r.commands[0]!.tMs);
    expect(r.events.map((e) => `${e.event}:${e.port}`)).toEqual(['trip:up1', 'trip:up2']);
    expect([...r.down].sort()).toEqual(['up1', 'up2']);
  });

  it('two uplinks: one, as ever', () => {
    const r = closedLoop(kvmLoop({ members: ['up1', 'up2'], others: ['up3', 'vm1'] }), 400);
    expect(r.commands.map((c) => c.port)).toEqual(['up1']);
  });
});
