// Which VMs can bridge two vNICs into a loop (agent/esxi/l2.ts), on the captured `vm list` and
// `portgroup list` outputs in test/fixtures/esxcli/; which of them the daemon watches
// (watchedPorts with watchBridgingVms); and which VMs the inventory read opens (readInventory with
// a recording exec that answers from the fixtures: which commands run is what is tested).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { EsxInventory, EsxVm } from '../../agent/esxi/inventory.js';
import { bridgingNics, mayBridge, sameL2 } from '../../agent/esxi/l2.js';
import { parsePortgroupList, type Portgroup } from '../../agent/esxi/portgroup.js';
import { watchedPorts } from '../../agent/esxi/ports.js';
import type { VSwitch } from '../../agent/esxi/vswitch.js';
import { readInventory } from '../../agent/esxi/read-inventory.js';
import type { Result } from '../../agent/esxi/result.js';
import type { RemoteExec } from '../../agent/esxi/session.js';
import { parseVmList, type VmListEntry } from '../../agent/esxi/vm-list.js';
import { testPolicy } from '../../agent/testing/policy.js';
import type { EsxiHostPolicy } from '../../agent/types.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'esxcli');
const fixture = (name: string): string => readFileSync(join(DIR, `${name}.txt`), 'utf8');
function value<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error} (line ${r.line})`);
  return r.value;
}

// elatov: VM Network and VM_VLAN1 are both VLAN 0 on vSwitch0 (one L2); VM_VLAN3 is VLAN 3; iscsi
// and nfs-for-vm sit on another vSwitch.
const elatov = value(parsePortgroupList(fixture('portgroup-list_elatov')));
const vmsOf = (name: string): Map<string, VmListEntry> => new Map(value(parseVmList(fixture(name))).map((v) => [v.name, v]));
const entry = (networks: string[], numPorts = networks.length): VmListEntry => ({ worldId: '1', name: 'x', numPorts, networks, networksComplete: networks.length === numPorts });
const trunk: Portgroup = { name: 'Trunk', vswitch: 'vSwitch0', activeClients: 0, vlanId: 4095, unusable: null };

describe('mayBridge: from vm list and portgroup list alone', () => {
  it('captured lists: two ports on one port group can bridge; one port, or port groups the host does not list, cannot be told apart from safe', () => {
    const gns3 = vmsOf('vm-list_esxi67-vagrant-blog');
    expect(mayBridge(gns3.get('gns3_vm')!, elatov)).toBe(true); // "Server Network, Server Network"
    expect(mayBridge(gns3.get('ubuntu_gns3')!, elatov)).toBe(false); // one port
    const lab = vmsOf('vm-list_rayd62-blog');
    expect(mayBridge(lab.get('FTD_Lab')!, elatov)).toBe(true); // Security_Lab_Site1_Inside twice among 6
    // Different names the host's list lacks: compared by name only, as the lint does.
    expect(mayBridge(lab.get('Win_Nor')!, elatov)).toBe(false);
    expect(mayBridge(vmsOf('vm-list_unresolved-doc').get('fnOS')!, elatov)).toBe(false);
  });

  it('same vSwitch and VLAN, or a 4095 trunk beside any VLAN, is one L2; another VLAN or vSwitch is not', () => {
    expect(mayBridge(entry(['VM Network', 'VM_VLAN1']), elatov)).toBe(true); // both VLAN 0 on vSwitch0
    expect(mayBridge(entry(['VM Network', 'VM_VLAN3']), elatov)).toBe(false);
    expect(mayBridge(entry(['VM_VLAN3', 'Trunk']), [...elatov, trunk])).toBe(true);
    expect(mayBridge(entry(['VM Network', 'iscsi']), elatov)).toBe(false); // VLAN 0 both, but vSwitch0 vs storage
    // A Networks column that cannot be mapped back per port (a comma in a name): any two ports might.
    expect(mayBridge(entry(['a', 'b', 'c'], 2), elatov)).toBe(true);
    expect(mayBridge(entry(['VM Network'], 1), elatov)).toBe(false);
    expect(sameL2({ vswitch: 's', vlanId: null, portgroup: 'p' }, { vswitch: 's', vlanId: null, portgroup: 'p' })).toBe(true);
    expect(sameL2({ vswitch: 's', vlanId: null, portgroup: 'p' }, { vswitch: 's', vlanId: 0, portgroup: 'q' })).toBe(false);
  });
});

const host: EsxiHostPolicy = {
  name: 'esx1', address: '192.0.2.21', port: 22, user: 'root', identityFile: '/k', knownHostsFile: '/kh',
  sampleMs: 100, staleMs: 1000, connectTimeoutMs: 3000, commandTimeoutMs: 5000, counters: 'vsish',
  vmnics: [{ name: 'vmnic0', role: 'uplink', protected: false }, { name: 'vmnic1', role: 'uplink', protected: false }],
  portgroups: [], protectedPortgroups: ['Management Network'], watchBridgingVms: true,
  actions: ['vnic-disconnect', 'nic-down'], quarantineVlan: null, thresholds: {}, line: 1,
};
const vnic = (mac: string, portgroup: string, portId: number | null, connected: boolean) => ({ portId, mac, portgroup, vswitch: portgroup === 'iscsi' ? 'storage' : 'vSwitch0', teamUplink: null, deviceKey: 4000, connected });
const inv = (vms: EsxVm[]): EsxInventory => ({
  host: 'esx1',
  nics: ['vmnic0', 'vmnic1'].map((name) => ({ name, pci: '0000:00:00.0', driver: 'x', adminUp: true, linkUp: true, speedMbps: 1000, duplex: 'Full', mac: null, mtu: 1500, description: '' })),
  vswitches: [],
  portgroups: elatov.map((p) => ({ ...p, security: null, failover: null })),
  vms,
  blockGuestBpdu: null,
  readAtMs: 0,
});
const bridge: EsxVm = { name: 'bridge', worldId: '10', vmid: '1', nics: [vnic('00:0c:29:00:00:a0', 'VM Network', 50, true), vnic('00:0c:29:00:00:a1', 'VM_VLAN1', null, false)] };
const split: EsxVm = { name: 'split', worldId: '11', vmid: '2', nics: [vnic('00:0c:29:00:00:b0', 'VM Network', 51, true), vnic('00:0c:29:00:00:b1', 'VM_VLAN3', 52, true)] };
const storage: EsxVm = { name: 'storage', worldId: '12', vmid: '3', nics: [vnic('00:0c:29:00:00:c0', 'VM Network', 53, true), vnic('00:0c:29:00:00:c1', 'iscsi', 54, true)] };

describe('watchedPorts with watchBridgingVms', () => {
  it('watches both vNICs of a VM with two in one L2 (a disconnected one listed, not streamed); other VMs stay unwatched', () => {
    const i = inv([bridge, split, storage]);
    expect(bridgingNics(i, bridge).map((n) => n.mac)).toEqual(['00:0c:29:00:00:a0', '00:0c:29:00:00:a1']);
    expect(bridgingNics(i, split)).toEqual([]);
    expect(bridgingNics(i, storage)).toEqual([]);
    const { ports } = watchedPorts(testPolicy(), host, i);
    expect(ports.map((p) => [p.name, p.id, p.policy.role, p.watched ?? null, p.vm ?? null])).toEqual([
      ['esx1/vmnic0', 'vmnic0', 'uplink', null, null],
      ['esx1/vmnic1', 'vmnic1', 'uplink', null, null],
      ['esx1/vnic-000c290000a0', '50', 'vm', 'bridging-vm', 'bridge'],
      ['esx1/vnic-000c290000a1', '', 'vm', 'bridging-vm', 'bridge'],
    ]);
  });

  it('off: only what the policy names; a named port group wins over the reason "bridging-vm"; protected port groups stay protected', () => {
    const i = inv([bridge, split]);
    expect(watchedPorts(testPolicy(), { ...host, watchBridgingVms: false }, i).ports.map((p) => p.name)).toEqual(['esx1/vmnic0', 'esx1/vmnic1']);
    const named = watchedPorts(testPolicy(), { ...host, portgroups: ['VM Network'], protectedPortgroups: ['VM_VLAN1'] }, i).ports.filter((p) => p.kind === 'port');
    expect(named.map((p) => [p.name, p.watched, p.policy.protected])).toEqual([
      ['esx1/vnic-000c290000a0', 'portgroup', false],
      ['esx1/vnic-000c290000a1', 'bridging-vm', true],
      ['esx1/vnic-000c290000b0', 'portgroup', false],
      // split's other vNIC (VLAN 3) is read as its guest's peer: see the next case.
      ['esx1/vnic-000c290000b1', 'guest-peer', false],
    ]);
  });

  it("a VM with a vNIC on a watched port group: its vNIC on another vSwitch with an uplink is read too (guest-peer); one on a vSwitch without uplinks is not", () => {
    // The stand-in lab's split variant: vmA's eth0 on "VM Network" (vSwitch0, vmnic0), its eth1 on
    // "VM Network1" (vSwitch1, vmnic1), both uplinks into one switch; eth2 on an internal vSwitch.
    const nic = (mac: string, portgroup: string, vswitch: string, portId: number) => ({ portId, mac, portgroup, vswitch, teamUplink: null, deviceKey: 4000, connected: true });
    const vmA: EsxVm = { name: 'vmA', worldId: '20', vmid: '4', nics: [nic('00:0c:29:5b:a0:00', 'VM Network', 'vSwitch0', 60), nic('00:0c:29:5b:a0:01', 'VM Network1', 'vSwitch1', 61), nic('00:0c:29:5b:a0:02', 'Internal', 'vSwitch2', 62)] };
    const lone: EsxVm = { name: 'lone', worldId: '21', vmid: '5', nics: [nic('00:0c:29:5b:b0:00', 'VM Network1', 'vSwitch1', 63), nic('00:0c:29:5b:b0:01', 'Internal', 'vSwitch2', 64)] };
    const vs = (name: string, uplinks: string[]): VSwitch => ({ name, class: null, numPorts: null, usedPorts: null, configuredPorts: null, mtu: null, cdpStatus: null, beaconEnabled: null, beaconInterval: null, beaconThreshold: null, beaconRequiredBy: [], uplinks, portgroups: [], extra: {} });
    const i: EsxInventory = { ...inv([vmA, lone]), vswitches: [vs('vSwitch0', ['vmnic0']), vs('vSwitch1', ['vmnic1']), vs('vSwitch2', [])] };
    const watched = (h: EsxiHostPolicy) => watchedPorts(testPolicy(), h, i).ports.filter((p) => p.kind === 'port').map((p) => [p.name, p.watched, p.bridge]);
    expect(watched({ ...host, portgroups: ['VM Network'] })).toEqual([
      ['esx1/vnic-000c295ba000', 'portgroup', 'esx1/vSwitch0'],
      ['esx1/vnic-000c295ba001', 'guest-peer', 'esx1/vSwitch1'],
    ]);
    // Off with watchBridgingVms, like the bridging VMs; a VM with no watched vNIC brings none.
    expect(watched({ ...host, portgroups: ['VM Network'], watchBridgingVms: false })).toEqual([['esx1/vnic-000c295ba000', 'portgroup', 'esx1/vSwitch0']]);
    expect(watched({ ...host, portgroups: [] })).toEqual([]);
  });
});

describe('readInventory: which VMs it opens', () => {
  // vm list (captured): ubuntu_gns3 (1 port) and gns3_vm (2 ports on "Server Network").
  const server: Portgroup = { name: 'Server Network', vswitch: 'vSwitch0', activeClients: 2, vlanId: 0, unusable: null };
  const pgText = `${fixture('portgroup-list_elatov').trimEnd()}\n${server.name.padEnd(18)}  ${server.vswitch.padEnd(14)}  ${'2'.padStart(14)}  ${'0'.padStart(7)}\n`;
  const answers: Array<[RegExp, string]> = [
    [/^esxcli network nic list$/, fixture('nic-list_2vmnic_masked-mac_unresolved-doc')],
    [/^esxcli network vswitch standard list$/, fixture('vswitch-standard-list_elatov')],
    [/^esxcli network vswitch standard portgroup list$/, pgText],
    [/^esxcli network vm list$/, fixture('vm-list_esxi67-vagrant-blog')],
    [/^vim-cmd vmsvc\/getallvms$/, fixture('vim-cmd-getallvms_esxi5-restart-post')],
    [/^esxcli network vm port list -w [0-9]+$/, fixture('vm-port-list_w2270220_unresolved-doc')],
  ];
  async function opened(opts: { bridgeSuspects?: boolean; alsoVms?: string[]; onlyPortgroups?: string[] }): Promise<string[]> {
    const ran: string[] = [];
    const exec: RemoteExec = async (argv) => {
      const line = argv.join(' ');
      ran.push(line);
      const a = answers.find(([re]) => re.test(line));
      return a ? { code: 0, stdout: a[1], stderr: '', durationMs: 1 } : { code: 1, stdout: '', stderr: `no answer for ${line}`, durationMs: 1 };
    };
    const r = await readInventory(exec, { host: 'esx1', ...opts, onlyPortgroups: opts.onlyPortgroups ?? [] });
    expect(r.inventory.portgroups.map((p) => p.name)).toContain('Server Network');
    return ran.filter((l) => l.startsWith('esxcli network vm port list')).map((l) => l.split(' ').at(-1)!);
  }

  it('opens the VM that may bridge (gns3_vm, World ID 4455345), the VMs named in alsoVms, and nothing else', async () => {
    expect(await opened({ bridgeSuspects: true })).toEqual(['4455345']);
    expect(await opened({ bridgeSuspects: false })).toEqual([]);
    expect(await opened({ bridgeSuspects: false, alsoVms: ['ubuntu_gns3'] })).toEqual(['4455488']);
    expect(await opened({ onlyPortgroups: ['Server Network'] })).toEqual(['4455488', '4455345']);
  });
});
