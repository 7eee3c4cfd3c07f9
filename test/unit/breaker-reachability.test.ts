// The breaker's reachability input (issue 5 item 7): an automatic link-down after which the
// management gateway stopped answering is undone, that port is not shut again for this storm,
// and the next member of the same loop verdict is shut instead. Pure: driven step by step.
import { describe, expect, it } from 'vitest';
import { breakerStep, initialBreakerState, portStates } from '../../agent/breaker/state.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { breakerDriver, result, verdictsFor } from '../helpers/breaker-driver.js';

const policy = testPolicy();
const SETTLE = policy.breaker.settleMs;
const WINDOW = policy.breaker.windowMs;
const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, policy);
const GW = '10.99.0.1';
const CUT = `link-down of up1 cut reachability of ${GW}`;

const { loop, flood } = verdictsFor(policy);

const driver = (pol = policy) => breakerDriver(ports, pol, initialBreakerState(), { t0Ns: 1e12, wall0: 1.7e12 });

/** A loop on up1/up2/up3 whose first shut (up1) has landed. */
function tripped() {
  const d = driver();
  d.at(0, { verdicts: [loop(['up2', 'up1', 'up3'])] });
  const out = d.at(2, { results: [result('link-down', 'up1')] });
  return { d, out };
}

describe('breaker: reachability', () => {
  it('names every automatic link-down that lands in `verify`, and nothing else', () => {
    const { d, out } = tripped();
    expect(out.verify).toEqual(['up1']);
    // An operator trip is a human's decision: not second-guessed.
    d.at(100, { operator: [{ kind: 'trip', port: 'vm1', reason: 'test', by: 'uid 0' }] });
    expect(d.at(101, { results: [result('link-down', 'vm1')] }).verify).toEqual([]);
    // Steps without a landed link-down share the frozen empty array.
    expect(Object.isFrozen(d.at(102).verify)).toBe(true);
  });

  it('undoes the cut, journals undo then escalate, and shuts the next member before bringing the cut one up', () => {
    const { d } = tripped();
    d.commands.length = 0;
    const before = d.events.length;
    const out = d.at(400, { unreachable: [{ port: 'up1', target: GW }] });
    // Down first, then up: the loop is not closed again while it may still carry frames.
    expect(out.commands).toEqual([
      { kind: 'link-down', port: 'up2', reason: 'loop on br0: shut up2 (first of up2,up3 by shut order)' },
      { kind: 'link-up', port: 'up1', reason: `undo: ${CUT}` },
    ]);
    const ev = d.events.slice(before);
    expect(ev.map((e) => [e.event, e.port])).toEqual([
      ['undo', 'up1'],
      ['escalate', 'up2'],
    ]);
    expect(ev[0]).toMatchObject({ reason: CUT, target: GW, bridge: 'br0' });
    expect(ev[0]!.evidence).toMatchObject({ clues: ['loop up2,up1,up3'] });
    expect(ev[1]).toMatchObject({ previous: 'up1', reason: `${CUT}; escalating to up2` });
    expect(portStates(d.state)).toMatchObject([
      { port: 'up1', state: 'restoring', reason: CUT },
      { port: 'up2', state: 'tripping' },
    ]);

    // The undo's link-up lands: up1 forwards again, silently (the undo is already journaled).
    const n = d.events.length;
    const up = d.at(401, { results: [result('link-up', 'up1')] });
    expect(up.events).toEqual([]);
    expect(d.events.length).toBe(n);
    expect(portStates(d.state).find((p) => p.port === 'up1')?.state).toBe('forwarding');
    // up2's link-down lands: journaled as a trip and verified in its turn.
    const t2 = d.at(402, { results: [result('link-down', 'up2')] });
    expect(t2.events.map((e) => [e.event, e.port])).toEqual([['trip', 'up2']]);
    expect(t2.verify).toEqual(['up2']);
  });

  it('never shuts the cut port again in this storm: the loop persisting escalates to the third member', () => {
    const { d } = tripped();
    d.at(400, { unreachable: [{ port: 'up1', target: GW }] });
    d.at(401, { results: [result('link-up', 'up1'), result('link-down', 'up2')] });
    d.commands.length = 0;
    // The loop persists after settle (up1 is up again and up2 did not break it): up3, not up1.
    // maxShuts 2 per window would refuse a third shut, so use a larger budget.
    const big = { ...policy, breaker: { ...policy.breaker, maxShuts: 10 } };
    const out = breakerStep(d.state, { tNs: 1e12 + (402 + SETTLE) * 1e6, wallMs: 0, verdicts: [loop(['up1', 'up2', 'up3'])], results: [], operator: [] }, ports, big);
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up3', reason: 'loop on br0: shut up3 (first of up3 by shut order)' }]);
    expect(portStates(d.state).find((p) => p.port === 'up1')?.state).toBe('forwarding');
  });

  it('ignores a report for a port that an operator took over meanwhile', () => {
    const { d } = tripped();
    d.at(100, { operator: [{ kind: 'hold', port: 'up1', reason: 'maintenance', by: 'uid 0' }] });
    const n = d.commands.length;
    const out = d.at(400, { unreachable: [{ port: 'up1', target: GW }] });
    expect(out.commands).toEqual([]);
    expect(out.events).toEqual([]);
    expect(d.commands.length).toBe(n);
    expect(portStates(d.state).find((p) => p.port === 'up1')?.state).toBe('held');
  });

  it('a failed undo leaves the port down and says the management path may still be cut', () => {
    const { d } = tripped();
    d.at(400, { unreachable: [{ port: 'up1', target: GW }] });
    const out = d.at(401, { results: [result('link-up', 'up1', false)] });
    expect(out.events.map((e) => [e.event, e.port])).toEqual([['action-failed', 'up1']]);
    expect(String(out.events[0]!.reason)).toMatch(/undo of up1 failed: link-up: EPERM; the management path may still be cut/);
    expect(portStates(d.state).find((p) => p.port === 'up1')?.state).toBe('tripped');
  });

  it('a flood shut that cut reachability is undone and the port is spared for the window', () => {
    const pol = { ...policy, breaker: { ...policy.breaker, floodShutRoles: ['vm' as const] } };
    const d = driver(pol);
    d.at(0, { verdicts: [flood('vm1')] });
    expect(d.at(1, { results: [result('link-down', 'vm1')] }).verify).toEqual(['vm1']);
    const out = d.at(300, { unreachable: [{ port: 'vm1', target: GW }] });
    expect(out.commands).toEqual([{ kind: 'link-up', port: 'vm1', reason: `undo: link-down of vm1 cut reachability of ${GW}` }]);
    expect(out.events.map((e) => e.event)).toEqual(['undo']);
    d.at(301, { results: [result('link-up', 'vm1')] });
    d.commands.length = 0;
    // The flood goes on: not shut again within the window, but said once.
    const again = d.at(400 + pol.defaults.floodHoldMs, { verdicts: [flood('vm1')] });
    expect(again.commands).toEqual([]);
    expect(again.events.map((e) => [e.event, e.reason])).toEqual([['flood-observed', 'flood on vm1: not shut again, its last link-down cut reachability']]);
    // After the window it may be shut again.
    const later = d.at(300 + WINDOW + 1, { verdicts: [flood('vm1')] });
    expect(later.commands.map((c) => [c.kind, c.port])).toEqual([['link-down', 'vm1']]);
  });

  it('with no other member left, the undo still happens and the loop is reported', () => {
    const d = driver();
    d.at(0, { verdicts: [loop(['up1', 'mgmt0'])] }); // mgmt0 is protected
    d.at(1, { results: [result('link-down', 'up1')] });
    const out = d.at(300, { unreachable: [{ port: 'up1', target: GW }] });
    expect(out.commands).toEqual([{ kind: 'link-up', port: 'up1', reason: `undo: ${CUT}` }]);
    expect(out.events.map((e) => e.event)).toEqual(['undo', 'flood-observed']);
  });
});
