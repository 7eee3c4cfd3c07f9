// The ESXi preflight lint (agent/preflight/esxi-lint.ts) on inventories built from parsed outputs
// in test/fixtures/esxcli/ (provenance in SOURCES.txt). Policies and BlockGuestBPDU come from the
// RECONSTRUCTED fixtures (no public capture exists): the rules are tested on the documented shape.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BLOCK_GUEST_BPDU_PATH, blockGuestBpduOn, parseAdvancedInt } from '../../agent/esxi/advanced.js';
import type { EsxInventory, EsxPortgroup, EsxVm, EsxVmNic } from '../../agent/esxi/inventory.js';
import { parseNicList } from '../../agent/esxi/nic-list.js';
import { parseFailoverPolicy, parseSecurityPolicy } from '../../agent/esxi/policy-get.js';
import { parsePortgroupList } from '../../agent/esxi/portgroup.js';
import type { Result } from '../../agent/esxi/result.js';
import { joinVmNics, parseGetAllVms, type VmNicDevice } from '../../agent/esxi/vim.js';
import { parseVmList } from '../../agent/esxi/vm-list.js';
import { parseVmPortList } from '../../agent/esxi/vm-port.js';
import { parseVswitchList } from '../../agent/esxi/vswitch.js';
import { lintEsxi } from '../../agent/preflight/esxi-lint.js';
import { renderText } from '../../agent/preflight/findings.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'esxcli');
const fixture = (name: string): string => readFileSync(join(DIR, `${name}.txt`), 'utf8');
function value<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error} (line ${r.line})`);
  return r.value;
}

const security = {
  defaults: value(parseSecurityPolicy(fixture('portgroup-policy-security-get_RECONSTRUCTED'))),
  nested: value(parseSecurityPolicy(fixture('portgroup-policy-security-get_nested-lab-RECONSTRUCTED'))),
};
const failover = {
  twoActive: value(parseFailoverPolicy(fixture('portgroup-policy-failover-get_RECONSTRUCTED'))),
  activeStandby: value(parseFailoverPolicy(fixture('portgroup-policy-failover-get_active-standby-RECONSTRUCTED'))),
};
const bpduOff = blockGuestBpduOn(value(parseAdvancedInt(fixture('advanced-list-BlockGuestBPDU_RECONSTRUCTED'), BLOCK_GUEST_BPDU_PATH)));

/**
 * The host of the Chinese design doc (SOURCES.txt): its two NICs, its vm port list of fnOS_2 and
 * its getallvms. Its vSwitch layout is only partly printed there ("vSwitch1 ... Uplinks: vmnic1,
 * Portgroups: VM Network1, Management Network1"), so the vswitch/portgroup text here follows it.
 */
const VSWITCHES = `vSwitch0
   Name: vSwitch0
   Class: cswitch
   Uplinks: vmnic0
   Portgroups: VM Network, Management Network
vSwitch1
   Name: vSwitch1
   Class: cswitch
   Uplinks: vmnic1
   Portgroups: VM Network1, Management Network1
`;
const PORTGROUPS = `Name                 Virtual Switch  Active Clients  VLAN ID
-------------------  --------------  --------------  -------
Management Network   vSwitch0                     1        0
VM Network           vSwitch0                    13        0
Management Network1  vSwitch1                     0        0
VM Network1          vSwitch1                    13        0
`;

function portgroups(text: string, sec: EsxPortgroup['security'] = security.defaults, fo: EsxPortgroup['failover'] = failover.activeStandby): EsxPortgroup[] {
  return value(parsePortgroupList(text)).map((p) => ({ ...p, security: sec, failover: fo }));
}

/** fnOS_2 from the real vm port list, its device keys as device.getdevices would give them. */
function fnos2(pgs: readonly EsxPortgroup[], connected: Array<boolean | null> = [true, true]): EsxVm {
  const ports = value(parseVmPortList(fixture('vm-port-list_w2270220_unresolved-doc')));
  const devices: VmNicDevice[] = ports.map((p, i) => ({
    key: 4000 + i, type: 'VirtualVmxnet3', label: `Network adapter ${i + 1}`, summary: p.portgroup, backing: 'NetworkBackingInfo',
    portgroup: p.portgroup, dvPortgroupKey: null, mac: p.mac, addressType: 'generated', connected: connected[i]!, startConnected: true, status: 'ok',
  }));
  const world = value(parseVmList(fixture('vm-list_unresolved-doc'))).find((v) => v.name === 'fnOS_2')!;
  return { name: world.name, worldId: world.worldId, vmid: '140', nics: joinVmNics(ports, devices, pgs).nics };
}

function host(over: Partial<EsxInventory> = {}): EsxInventory {
  const pgs = over.portgroups ?? portgroups(PORTGROUPS);
  return {
    host: 'esx-a',
    nics: value(parseNicList(fixture('nic-list_2vmnic_masked-mac_unresolved-doc'))),
    vswitches: value(parseVswitchList(VSWITCHES)),
    portgroups: pgs,
    vms: [fnos2(pgs)],
    blockGuestBpdu: true,
    readAtMs: 0,
    ...over,
  };
}

const rules = (inv: EsxInventory): string[] => lintEsxi(inv).findings.map((f) => f.rule);

describe('a host with everything read and nothing wrong', () => {
  it('has no findings and no notes', () => {
    expect(lintEsxi(host())).toEqual({ findings: [], notes: [] });
  });
});

describe('esxi-guest-bpdu-not-blocked', () => {
  it('BlockGuestBPDU = 0 (the reconstructed output): a warning on the host uplinks, fixed with esxcli', () => {
    expect(bpduOff).toBe(false);
    const r = lintEsxi(host({ blockGuestBpdu: bpduOff }));
    expect(r.findings).toHaveLength(1);
    const f = r.findings[0]!;
    expect([f.rule, f.severity, f.ports]).toEqual(['esxi-guest-bpdu-not-blocked', 'warning', ['esx-a/vmnic0', 'esx-a/vmnic1']]);
    expect(f.fix).toMatch(/^esxcli system settings advanced set -o \/Net\/BlockGuestBPDU -i 1/);
  });

  it('not read -> a note, never silence', () => {
    const r = lintEsxi(host({ blockGuestBpdu: null }));
    expect(r.findings).toEqual([]);
    expect(r.notes).toEqual(['esx-a: /Net/BlockGuestBPDU was not read; the guest BPDU filter was not checked']);
  });
});

describe('esxi-promisc-forged-multi-uplink (the nested-ESXi loop)', () => {
  const NESTED = `Name    Virtual Switch  Active Clients  VLAN ID
------  --------------  --------------  -------
Nested  vSwitch0                     2     4095
`;
  const vsw = value(parseVswitchList(VSWITCHES.replace('Uplinks: vmnic0', 'Uplinks: vmnic0, vmnic1').replace('Uplinks: vmnic1\n', 'Uplinks: \n')));

  it('promiscuous + forged transmits + two active uplinks: an error naming the port group and both uplinks', () => {
    const inv = host({ vswitches: vsw, portgroups: portgroups(NESTED, security.nested, failover.twoActive), vms: [] });
    const r = lintEsxi(inv);
    expect(r.findings).toHaveLength(1);
    const f = r.findings[0]!;
    expect([f.rule, f.severity, f.ports]).toEqual(['esxi-promisc-forged-multi-uplink', 'error', ['esx-a/Nested', 'esx-a/vmnic0', 'esx-a/vmnic1']]);
    expect(f.what).toMatch(/2 active uplinks \(vmnic0, vmnic1\)/);
    expect(f.fix).toContain('esxcli network vswitch standard portgroup policy failover set -p "Nested" --active-uplinks vmnic0 --standby-uplinks vmnic1');
    expect(f.fix).toContain('esxcli network vswitch standard portgroup policy security set -p "Nested" --allow-promiscuous false');
  });

  it('one active uplink with a standby, or promiscuous off, or forged transmits off: nothing', () => {
    expect(rules(host({ portgroups: portgroups(NESTED, security.nested, failover.activeStandby), vms: [] }))).toEqual([]);
    expect(rules(host({ portgroups: portgroups(NESTED, security.defaults, failover.twoActive), vms: [] }))).toEqual([]);
    const noForged = { ...security.nested, allowForgedTransmits: false };
    expect(rules(host({ portgroups: portgroups(NESTED, noForged, failover.twoActive), vms: [] }))).toEqual([]);
  });

  it('security not read, or teaming not read on a promiscuous+forged port group: notes, not silence', () => {
    const r1 = lintEsxi(host({ portgroups: portgroups(NESTED, null, failover.twoActive), vms: [] }));
    expect(r1.findings).toEqual([]);
    expect(r1.notes).toEqual(['esx-a/Nested: security policy not read; promiscuous + forged-transmit loop check not done']);
    const r2 = lintEsxi(host({ vswitches: vsw, portgroups: portgroups(NESTED, security.nested, null), vms: [] }));
    expect(r2.findings).toEqual([]);
    expect(r2.notes).toEqual(['esx-a/Nested: allows promiscuous mode and forged transmits, but its teaming was not read (vSwitch vSwitch0 has 2 uplinks); the multi-uplink loop check was not done']);
    const unusable = portgroups(NESTED, null, null).map((p) => ({ ...p, unusable: "port group name contains one of ' \" ` \\ $ ," }));
    expect(lintEsxi(host({ portgroups: unusable, vms: [] })).notes[0]).toMatch(/security policy not read \(port group name contains/);
  });
});

describe('esxi-vm-two-vnics-same-l2', () => {
  it('fnOS_2 (real vm port list): VM Network on vSwitch0 and VM Network1 on vSwitch1 are two L2 domains: nothing', () => {
    const vm = host().vms[0]!;
    expect(vm.nics.map((n) => [n.portgroup, n.vswitch, n.deviceKey])).toEqual([['VM Network', 'vSwitch0', 4000], ['VM Network1', 'vSwitch1', 4001]]);
    expect(rules(host())).toEqual([]);
  });

  it('the same two port groups on ONE vSwitch with the same VLAN: an error with the exact vim-cmd to cut one vNIC', () => {
    const pgs = portgroups(PORTGROUPS.replace('VM Network1          vSwitch1', 'VM Network1          vSwitch0'));
    const vm = fnos2(pgs);
    // The port list says vSwitch1; the host moved the port group. The lint trusts each vNIC's port.
    const moved: EsxVm = { ...vm, nics: vm.nics.map((n) => ({ ...n, vswitch: 'vSwitch0' })) };
    const r = lintEsxi(host({ portgroups: pgs, vms: [moved] }));
    expect(r.findings).toHaveLength(1);
    const f = r.findings[0]!;
    expect([f.rule, f.severity, f.ports]).toEqual(['esxi-vm-two-vnics-same-l2', 'error', ['esx-a/fnOS_2', 'esx-a/VM Network', 'esx-a/VM Network1']]);
    expect(f.what).toMatch(/00:0c:29:72:3f:e3 on "VM Network" vSwitch0 VLAN 0, 00:0c:29:72:3f:ed on "VM Network1" vSwitch0 VLAN 0/);
    expect(f.fix).toContain('vim-cmd vmsvc/device.connection 140 4001 0');
  });

  it('VLANs decide on a shared vSwitch: 0 vs 3 is apart, 4095 (trunk) overlaps everything', () => {
    const on = (vlan1: number): EsxInventory => {
      const pgs = portgroups(PORTGROUPS.replace('VM Network1          vSwitch1                    13        0', `VM Network1          vSwitch0                    13     ${String(vlan1).padStart(4)}`));
      const vm = fnos2(pgs);
      return host({ portgroups: pgs, vms: [{ ...vm, nics: vm.nics.map((n) => ({ ...n, vswitch: 'vSwitch0' })) }] });
    };
    expect(rules(on(3))).toEqual([]);
    expect(rules(on(4095))).toEqual(['esxi-vm-two-vnics-same-l2']);
    expect(lintEsxi(on(4095)).findings[0]!.what).toMatch(/VLAN 4095 trunks every VLAN/);
  });

  it('gns3_vm (real vm list: "Server Network, Server Network"): two vNICs on one port group', () => {
    // Port groups and vSwitches of that host as printed in the same blog post (SOURCES.txt).
    const pgs = portgroups(`Name                 Virtual Switch  Active Clients  VLAN ID
-------------------  --------------  --------------  -------
Management VMkernel  vSwitch0                     1        0
Server Network       vSwitch1                     3        0
`);
    const g = value(parseVmList(fixture('vm-list_esxi67-vagrant-blog'))).find((v) => v.name === 'gns3_vm')!;
    // The post has no vm port list: MACs and connection states here are made up for the join.
    const nics: EsxVmNic[] = g.networks.map((pg, i) => ({ portId: null, mac: `00:0c:29:00:00:0${i + 1}`, portgroup: pg, vswitch: 'vSwitch1', teamUplink: null, deviceKey: null, connected: null }));
    const r = lintEsxi(host({ host: 'cactus', portgroups: pgs, vms: [{ name: g.name, worldId: g.worldId, vmid: null, nics }] }));
    expect(r.findings.map((f) => [f.rule, f.ports])).toEqual([['esxi-vm-two-vnics-same-l2', ['cactus/gns3_vm', 'cactus/Server Network']]]);
    expect(r.findings[0]!.what).toMatch(/connection state of 2 vNICs not read; counted as connected/);
    expect(r.findings[0]!.fix).toMatch(/vim-cmd vmsvc\/device\.connection <vmid> <device key> 0 for 00:0c:29:00:00:02/);
  });

  it('FTD_Lab (real vm list: six ports, Security_Lab_Site1_Inside twice): one finding for that pair only', () => {
    const ftd = value(parseVmList(fixture('vm-list_rayd62-blog'))).find((v) => v.name === 'FTD_Lab')!;
    const names = [...new Set(ftd.networks)];
    const pgs = portgroups(`Name${' '.repeat(24)}Virtual Switch  Active Clients  VLAN ID
${'-'.repeat(26)}  --------------  --------------  -------
${names.map((n, i) => `${n.padEnd(26)}  vSwitch0        ${'1'.padStart(14)}  ${String(10 + i).padStart(7)}`).join('\n')}
`);
    const nics: EsxVmNic[] = ftd.networks.map((pg, i) => ({ portId: 33554600 + i, mac: `00:0c:29:aa:00:0${i}`, portgroup: pg, vswitch: 'vSwitch0', teamUplink: 'vmnic0', deviceKey: 4000 + i, connected: true }));
    const r = lintEsxi(host({ portgroups: pgs, vms: [{ name: ftd.name, worldId: ftd.worldId, vmid: '7', nics }] }));
    expect(r.findings).toHaveLength(1);
    expect(r.findings[0]!.ports).toEqual(['esx-a/FTD_Lab', 'esx-a/Security_Lab_Site1_Inside']);
    expect(r.findings[0]!.fix).toContain('vim-cmd vmsvc/device.connection 7 4004 0');
  });

  it('a disconnected vNIC does not count; a port group missing from the host list is compared by name only, with a note', () => {
    const pgs = portgroups(PORTGROUPS.replace('VM Network1          vSwitch1', 'VM Network1          vSwitch0'));
    const vm = fnos2(pgs, [true, false]);
    expect(rules(host({ portgroups: pgs, vms: [{ ...vm, nics: vm.nics.map((n) => ({ ...n, vswitch: 'vSwitch0' })) }] }))).toEqual([]);
    const ghost: EsxVm = { ...fnos2(portgroups(PORTGROUPS)), nics: fnos2(portgroups(PORTGROUPS)).nics.map((n) => ({ ...n, portgroup: 'Ghost', vswitch: 'vSwitch9' })) };
    const r = lintEsxi(host({ vms: [ghost] }));
    expect(r.findings.map((f) => f.rule)).toEqual(['esxi-vm-two-vnics-same-l2']);
    expect(r.notes).toEqual(['esx-a/fnOS_2: port group "Ghost" not in the host\'s port group list; its vNICs were compared by port group name only (VLAN unknown)']);
  });

  it('uses the getallvms Vmid the inventory carries (fnOS is 130 there, World ID 2270066)', () => {
    const fnos = value(parseGetAllVms(fixture('vim-cmd-getallvms_unresolved-doc'))).find((v) => v.name === 'fnOS')!;
    const pgs = portgroups(PORTGROUPS);
    const nics: EsxVmNic[] = [0, 1].map((i) => ({ portId: null, mac: `00:0c:29:bb:00:0${i}`, portgroup: 'VM Network', vswitch: 'vSwitch0', teamUplink: null, deviceKey: 4000 + i, connected: true }));
    const f = lintEsxi(host({ portgroups: pgs, vms: [{ name: 'fnOS', worldId: '2270066', vmid: fnos.vmid, nics }] })).findings[0]!;
    expect(f.fix).toContain('vim-cmd vmsvc/device.connection 130 4001 0');
    expect(f.evidence).toMatchObject({ vmid: '130', worldId: '2270066' });
  });
});

describe('report', () => {
  it('renders with the shared finding format; every finding says what and how to fix with a host command', () => {
    const NESTED = 'Name    Virtual Switch  Active Clients  VLAN ID\n------  --------------  --------------  -------\nNested  vSwitch0                     2     4095\n';
    const pgs = [...portgroups(PORTGROUPS), ...portgroups(NESTED, security.nested, failover.twoActive)];
    const vm = fnos2(pgs);
    const inv = host({ portgroups: pgs, blockGuestBpdu: false, vms: [vm, { ...vm, name: 'twin', nics: vm.nics.map((n) => ({ ...n, portgroup: 'VM Network', vswitch: 'vSwitch0' })) }] });
    const r = lintEsxi(inv);
    expect(r.findings.map((f) => f.rule).sort()).toEqual(['esxi-guest-bpdu-not-blocked', 'esxi-promisc-forged-multi-uplink', 'esxi-vm-two-vnics-same-l2']);
    for (const f of r.findings) {
      expect(f.what.length).toBeGreaterThan(40);
      expect(f.fix).toMatch(/(esxcli|vim-cmd) /);
      for (const p of f.ports) expect(p.startsWith('esx-a/') || p === 'esx-a').toBe(true);
    }
    const text = renderText(r);
    expect(text).toMatch(/^error {3}esxi-promisc-forged-multi-uplink/m);
    expect(text).toMatch(/3 findings \(2 errors, 1 warning\)/);
  });
});
