// The stand-in ESXi lab's layout variants (issue 12): management in band and shaped uplinks.
import { describe, expect, it } from 'vitest';
import { esxiLabPlan, esxiPlanCommands } from '../../scripts/lab/esxi/plan.js';
import { defaultInventory } from '../../scripts/lab/esxi/inventory.js';

describe('stand-in ESXi lab plan', () => {
  it('out of band by default: vmk0 pairs with the agent directly, nothing shaped', () => {
    const p = esxiLabPlan('sbq-');
    expect(p.mgmtMode).toBe('oob');
    expect(p.veths.find((v) => v.name === 'vmk0')).toMatchObject({ peerNs: 'sbq-agent', peer: 'eth0' });
    expect(esxiPlanCommands(p).some((c) => c.includes('tbf'))).toBe(false);
  });

  it('in band: vmk0 is a vSwitch0 port and the agent hangs off the physical switch', () => {
    const p = esxiLabPlan('sbq-', { mgmt: 'inband' });
    expect(p.veths.find((v) => v.name === 'vmk0')).toMatchObject({ ns: 'sbq-esx', peerNs: 'sbq-esx', peer: 'vmk0sw', peerMaster: 'vSwitch0', addr: '192.168.254.1/30' });
    expect(p.veths.find((v) => v.ns === 'sbq-agent')).toMatchObject({ name: 'eth0', peerNs: 'sbq-sw', peer: 'swagent', peerMaster: 'sw0', addr: '192.168.254.2/30' });
  });

  it('shaped uplinks: a tbf qdisc on both directions of each uplink; bad rates refused', () => {
    const cmds = esxiPlanCommands(esxiLabPlan('sbq-', { mgmt: 'inband', uplinkRate: '4mbit' })).filter((c) => c.includes('tbf'));
    expect(cmds.map((c) => `${c[2]} ${c[6]}`)).toEqual(['sbq-esx vmnic0', 'sbq-esx vmnic1', 'sbq-sw swe0', 'sbq-sw swe1']);
    expect(cmds[0]).toEqual(['tc', '-n', 'sbq-esx', 'qdisc', 'replace', 'dev', 'vmnic0', 'root', 'tbf', 'rate', '4mbit', 'burst', '6kb', 'limit', '6kb']);
    expect(() => esxiLabPlan('sbq-', { uplinkRate: '4mbit; reboot' })).toThrow(/bad uplink rate/);
    expect(() => esxiLabPlan('sbq-', { mgmt: 'x' as never })).toThrow(/bad mgmt mode/);
  });

  it('split (session 20): vmA\'s second vNIC on vSwitch1, whose uplink is vmnic1 (same physical switch); the inventory says so', () => {
    const p = esxiLabPlan('sbq-', { split: true });
    expect(p.bridges.map((b) => `${b.ns} ${b.name}`)).toContain('sbq-esx vSwitch1');
    expect(p.veths.find((v) => v.name === 'vnA1')).toMatchObject({ master: 'vSwitch1', peerNs: 'sbq-vmA', peerMaster: 'vbr', peerDown: true });
    expect(p.veths.find((v) => v.name === 'vnA0')).toMatchObject({ master: 'vSwitch0' });
    expect(p.veths.find((v) => v.name === 'vmnic1')).toMatchObject({ master: 'vSwitch1', isolated: true, peerNs: 'sbq-sw', peer: 'swe1', peerMaster: 'sw0' });
    expect(p.veths.find((v) => v.name === 'vmnic0')).toMatchObject({ master: 'vSwitch0' });
    const facts = Object.fromEntries(p.uplinks.map((u) => [u, { mac: '02:00:00:00:00:01', mtu: 1500, speed: 10000 }]));
    const inv = defaultInventory(p, facts);
    expect(inv.vswitches.map((s) => [s.name, s.uplinks, s.portgroups])).toEqual([
      ['vSwitch0', ['vmnic0'], ['VM Network', 'Management Network']],
      ['vSwitch1', ['vmnic1'], ['VM Network1']],
    ]);
    expect(inv.portgroups.map((g) => [g.name, g.vswitch, g.activeUplinks])).toEqual([
      ['VM Network', 'vSwitch0', ['vmnic0']],
      ['Management Network', 'vSwitch0', ['vmnic0']],
      ['VM Network1', 'vSwitch1', ['vmnic1']],
    ]);
    expect(inv.vms.find((v) => v.name === 'vmA')!.nics.map((n) => [n.dev, n.portgroup])).toEqual([['vnA0', 'VM Network'], ['vnA1', 'VM Network1']]);
    // The default lab is unchanged: one vSwitch, two uplinks.
    const one = esxiLabPlan('sbq-');
    expect([one.uplinks, one.split, one.bridges.length, one.veths.find((v) => v.name === 'vmnic1')!.master]).toEqual([['vmnic0', 'vmnic1'], null, 3, 'vSwitch0']);
  });
});
