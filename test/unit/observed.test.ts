// Ports no rule names, on a bridge with a watched port: observed for loop evidence, never acted
// on (policy/observed.ts, breaker/observed.ts). The pure parts: which names are observed, the
// detector counting them as loop members (and judging one flooding alone, which the breaker only
// reports), the breaker cutting a named member instead and saying so, or reporting when no named
// member may be shut.
import { describe, expect, it } from 'vitest';
import { observedNames, observedPort } from '../../agent/policy/observed.js';
import { initialDetectorState, step } from '../../agent/detect/signature.js';
import { initialBreakerState, portStates } from '../../agent/breaker/state.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, kvmLoop, vmFlood } from '../../agent/testing/traces.js';
import type { OperatorCommand } from '../../agent/breaker/state.js';
import type { Policy, PortPolicy, Verdict } from '../../agent/types.js';
import { breakerDriver, verdictsFor } from '../helpers/breaker-driver.js';

const policy = testPolicy();

/** `named` as testPorts builds them, plus each of `observed` as rescanLocal adds it. */
function withObserved(named: Record<string, 'uplink' | 'vm' | 'mgmt'>, observed: string[], pol: Policy = policy): Map<string, PortPolicy> {
  const m = testPorts(named, pol);
  for (const n of observed) m.set(n, observedPort(pol, n));
  return m;
}

function verdicts(ports: ReadonlyMap<string, PortPolicy>, spec: ReturnType<typeof kvmLoop>, ms: number): Verdict[] {
  const s = initialDetectorState();
  return buildTrace(spec, ms).flatMap((t) => [...step(s, t, ports, policy).verdicts]);
}

describe('observedNames', () => {
  const info = (name: string, bridge: string | null) => ({ name, ifindex: 1, bridge });
  const named = testPorts({ up1: 'uplink', vm1: 'vm' }, policy);
  const members: Record<string, string[]> = { br0: ['up1', 'vm1', 'ln0', 'tap9'], br1: ['up2', 'ln1'], br2: ['x0'] };

  it('the unnamed members of bridges with a watched port, sorted, never a named one', () => {
    expect(observedNames([info('up1', 'br0'), info('vm1', 'br0')], named, (b) => members[b] ?? [])).toEqual(['ln0', 'tap9']);
  });

  it('a bridge without a watched port is not looked at; an unenslaved watched port adds nothing', () => {
    const asked: string[] = [];
    const out = observedNames([info('up1', null), info('zz', 'br1')], named, (b) => (asked.push(b), members[b] ?? []));
    expect(out).toEqual([]);
    expect(asked).toEqual([]); // zz is not named: br1 is not a watched bridge
  });

  it('names that cannot be interface names are never observed', () => {
    expect(observedNames([info('up1', 'br0')], named, () => ['ok0', '../x', 'a b'])).toEqual(['ok0']);
  });

  it('an observed port is protected, has no shut rank, and is never live (dry run)', () => {
    expect(observedPort(policy, 'ln0')).toMatchObject({ name: 'ln0', protected: true, shutRank: Infinity, observed: true, dryRun: true, rule: -1 });
  });
});

describe('detector with observed-only members', () => {
  const loopSpec = kvmLoop({ members: ['ln0', 'up1'], others: ['vm1'], startMs: 50 });

  it('a loop through up1 and an unnamed ln0 is a loop verdict with both members, and says ln0 is not named', () => {
    const vs = verdicts(withObserved({ up1: 'uplink', vm1: 'vm' }, ['ln0']), loopSpec, 200);
    expect(vs.length).toBeGreaterThan(0);
    expect(vs.every((v) => v.kind === 'loop')).toBe(true);
    const v = vs[0]!;
    if (v.kind !== 'loop') throw new Error('not a loop');
    expect(v.members).toEqual(['ln0', 'up1']);
    expect(v.evidence.clues).toContain('ln0 is not named by the policy: observed only, never shut');
    expect(v.evidence.rule).toBe(0); // up1's rule, not the observed port's -1
  });

  it('without observing ln0 (the old behaviour) the same storm gives no loop verdict', () => {
    const vs = verdicts(testPorts({ up1: 'uplink', vm1: 'vm' }, policy), loopSpec, 200);
    expect(vs.filter((v) => v.kind === 'loop')).toEqual([]);
  });

  it('an observed port flooding alone is judged as a flood (the breaker only reports it)', () => {
    const ports = withObserved({ up1: 'uplink', vm2: 'vm' }, ['vm1']);
    const vs = verdicts(ports, vmFlood({ startMs: 50 }), 1000);
    expect(vs.filter((v) => v.kind === 'flood' && v.port === 'vm1').length).toBeGreaterThan(0);
    expect(vs.filter((v) => v.kind !== 'flood' || v.port !== 'vm1')).toEqual([]);
  });
});

describe('breaker with observed-only members', () => {
  const { loop } = verdictsFor(policy);
  const op = (kind: OperatorCommand['kind'], port: string): OperatorCommand => ({ kind, port, reason: 'ticket 7', by: 'alice' });

  it('cuts the named member by shut order, never the observed one, and says why', () => {
    const d = breakerDriver(withObserved({ up1: 'uplink' }, ['ln0']), policy, initialBreakerState());
    const out = d.at(0, { verdicts: [loop(['ln0', 'up1'])] });
    expect(out.commands).toEqual([
      {
        kind: 'link-down',
        port: 'up1',
        reason:
          'loop on br0: shut up1 (first of up1 by shut order); the loop runs through ln0, which is not named by the policy, so not touched: up1 was shut instead (name ln0 in a policy rule to let the breaker choose it)',
      },
    ]);
  });

  it('reports once per window, acting on nothing, when no named member may be shut', () => {
    const pol = testPolicy({ breaker: { shutOrder: ['vm', 'other'] } });
    const d = breakerDriver(withObserved({ up1: 'uplink' }, ['ln0'], pol), pol, initialBreakerState());
    for (let t = 0; t < 50; t++) d.at(t, { verdicts: [loop(['ln0', 'up1'])] });
    expect(d.commands).toEqual([]);
    expect(d.events).toHaveLength(1);
    expect(d.events[0]).toMatchObject({ event: 'flood-observed', port: 'br0' });
    expect(d.events[0]!.reason).toBe(
      'loop on br0 runs through ln0, not named by the policy, so not touched; no named member may be shut (up1: protected, not in breaker.shutOrder, or already tripped): reported, not acted on (name ln0 in a policy rule to let the breaker cut it)',
    );
  });

  it('a flood from an observed port: reported once per window, never acted on, and one line when it ends', () => {
    const { flood } = verdictsFor(policy);
    const d = breakerDriver(withObserved({ up1: 'uplink' }, ['tap9']), policy, initialBreakerState());
    for (let t = 0; t <= 3000; t += 10) d.at(t, { verdicts: [flood('tap9')] });
    expect(d.commands).toEqual([]);
    expect(d.events.map((e) => [e.event, e.port, e.reason])).toEqual([
      ['flood-observed', 'tap9', 'flood from tap9, which is not named by the policy (observed only): reported, not acted on (name tap9 in a policy rule, e.g. role vm, to let the breaker shut it)'],
    ]);
    d.at(4990);
    expect(d.events).toHaveLength(1);
    d.at(5000);
    expect(d.events[1]).toMatchObject({ event: 'ended', port: 'tap9', of: 'flood-observed', lastedMs: 3000, lines: 1 });
    expect(d.events[1]!.reason).toBe('flood-observed on tap9 ended: not seen for 2 s; it lasted 3.0 s and was journaled 1 time');
    d.at(9000);
    expect(d.events).toHaveLength(2);
  });

  it('an operator trip or hold of an observed port is refused', () => {
    const d = breakerDriver(withObserved({ up1: 'uplink' }, ['ln0']), policy, initialBreakerState());
    d.at(0, { operator: [op('trip', 'ln0'), op('hold', 'ln0')] });
    expect(d.commands).toEqual([]);
    expect(d.events.map((e) => [e.event, e.reason])).toEqual([
      ['action-failed', 'trip of ln0 refused: observed only, not named by the policy (by alice: ticket 7)'],
      ['action-failed', 'hold of ln0 refused: observed only, not named by the policy (by alice: ticket 7)'],
    ]);
    expect(portStates(d.state)).toEqual([]);
  });
});
