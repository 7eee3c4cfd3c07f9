import { describe, expect, it } from 'vitest';
import { RECENT_JOIN_MS } from '../../agent/breaker/state.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { PortPolicy } from '../../agent/types.js';
import { breakerDriver, result, T0, verdictsFor } from '../helpers/breaker-driver.js';

// Issue 11: a loop closed by plugging a port into the bridge is undone by cutting the port that
// just joined (PortPolicy.joinedNs), not the member that was there all along; never across roles.

const policy = testPolicy();
const { loop } = verdictsFor(policy);

/** Ports as the loader makes them (up* one rule, so up1 and up2 rank equal), with join times in ms from T0. */
function ports(joined: Record<string, number>, spec: Parameters<typeof testPorts>[0] = { up1: { role: 'uplink', rule: 0 }, up2: { role: 'uplink', rule: 0 }, vm1: 'vm', mgmt0: 'mgmt' }): Map<string, PortPolicy> {
  const out = testPorts(spec, policy);
  for (const [name, ms] of Object.entries(joined)) out.set(name, { ...out.get(name)!, joinedNs: T0 + ms * 1e6 });
  return out;
}

describe('a loop closed by a port that just joined its bridge', () => {
  it('cuts the joiner (up2) rather than the uplink that was there (up1), and says why in the trip', () => {
    const d = breakerDriver(ports({ up2: 0 }), policy);
    const v = loop(['up1', 'up2']);
    const out = d.at(12, { verdicts: [v] });
    expect(out.commands).toEqual([
      {
        kind: 'link-down',
        port: 'up2',
        reason: 'loop on br0: shut up2 (up2 joined br0 12 ms before this verdict: cutting it undoes the change that closed the loop; first of up2,up1 by shut order, recent joiners first)',
      },
    ]);
    const landed = d.at(14, { results: [result('link-down', 'up2')] });
    expect(landed.events).toMatchObject([{ event: 'trip', port: 'up2', joinedMsBefore: 12, evidence: v.evidence }]);
  });

  it('counts a join stamped inside the verdict\'s own tick, after its tNs (the port listed again mid-tick), as now', () => {
    const d = breakerDriver(ports({ up2: 0.3 }), policy);
    const out = d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(out.commands[0]!.port).toBe('up2');
    expect(out.commands[0]!.reason).toContain('up2 joined br0 0 ms before this verdict');
  });

  it('treats a join older than RECENT_JOIN_MS as no join: shut order and name decide (up1)', () => {
    const d = breakerDriver(ports({ up2: 0 }), policy);
    const out = d.at(RECENT_JOIN_MS + 1, { verdicts: [loop(['up1', 'up2'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'up1', reason: 'loop on br0: shut up1 (first of up1,up2 by shut order)' }]);
  });

  it('counts the recent join within the role even when rule order ranks the joiner later', () => {
    // up1 and up2 named by two uplink rules: ranks 2000 and 2001.
    const d = breakerDriver(ports({ up2: 0 }, { up1: 'uplink', up2: 'uplink', vm1: 'vm' }), policy);
    expect(d.at(30_000, { verdicts: [loop(['up1', 'up2'])] }).commands[0]!.port).toBe('up2');
  });

  it('never moves a joiner ahead of another role in shutOrder: the VM port is still cut first', () => {
    const d = breakerDriver(ports({ up2: 0 }), policy);
    const out = d.at(5, { verdicts: [loop(['up1', 'up2', 'vm1'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'vm1', reason: 'loop on br0: shut vm1 (first of vm1,up2,up1 by shut order)' }]);
    // ...and the joiner comes next among the uplinks, should the VM's cut fail.
    expect(d.at(6, { results: [result('link-down', 'vm1', false)] }).commands.map((c) => c.port)).toEqual(['up2']);
  });

  it('never cuts a protected or mgmt port that just joined', () => {
    const d = breakerDriver(ports({ mgmt0: 0 }), policy);
    expect(d.at(5, { verdicts: [loop(['up1', 'mgmt0'])] }).commands.map((c) => c.port)).toEqual(['up1']);
    const p = ports({ up2: 0 });
    p.set('up2', { ...p.get('up2')!, protected: true });
    const d2 = breakerDriver(p, policy);
    expect(d2.at(5, { verdicts: [loop(['up1', 'up2'])] }).commands.map((c) => c.port)).toEqual(['up1']);
  });

  it('of two recent joiners, cuts the newest (the join that closed the loop)', () => {
    const spec = { up1: { role: 'uplink' as const, rule: 0 }, up2: { role: 'uplink' as const, rule: 0 }, up3: { role: 'uplink' as const, rule: 0 } };
    const d = breakerDriver(ports({ up2: 1000, up3: 0 }, spec), policy);
    const out = d.at(1500, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    expect(out.commands[0]!.port).toBe('up2');
    expect(out.commands[0]!.reason).toContain('first of up2,up3,up1 by shut order, recent joiners first');
  });

  it('says so in a dry run too (would-trip)', () => {
    const dry = testPolicy({ dryRun: true });
    const p = testPorts({ up1: { role: 'uplink', rule: 0 }, up2: { role: 'uplink', rule: 0 } }, dry);
    p.set('up2', { ...p.get('up2')!, joinedNs: T0 });
    const d = breakerDriver(p, dry);
    const out = d.at(2500, { verdicts: [loop(['up1', 'up2'])] });
    expect(out.events).toMatchObject([{ event: 'would-trip', port: 'up2', joinedMsBefore: 2500, dryRun: true }]);
  });
});
