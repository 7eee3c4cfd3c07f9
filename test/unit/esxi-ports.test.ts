// Pure parts of the ESXi edge: which ports are watched and how they are named, how a dead
// broadcast counter is handled, and which command an action becomes. The SSH and the real
// effects are proven in test/integration/esxi-agent.test.ts against a real sshd.
import { describe, expect, it } from 'vitest';
import { judgeBroadcast, streamItems, toCounters, watchedPorts, esxHostOf } from '../../agent/esxi/ports.js';
import { planEsxiAction, tripUndone } from '../../agent/actions/esxi.js';
import type { EsxInventory } from '../../agent/esxi/inventory.js';
import type { EsxiHostPolicy } from '../../agent/types.js';
import { emptyCounters } from '../../agent/types.js';
import { testPolicy } from '../../agent/testing/policy.js';

const host: EsxiHostPolicy = {
  name: 'esx1', address: '192.0.2.21', port: 22, user: 'root', identityFile: '/k', knownHostsFile: '/kh',
  sampleMs: 100, staleMs: 1000, connectTimeoutMs: 3000, commandTimeoutMs: 5000, counters: 'vsish',
  vmnics: [{ name: 'vmnic0', role: 'uplink', protected: true }, { name: 'vmnic1', role: 'uplink', protected: false }, { name: 'vmnic7', role: 'uplink', protected: false }],
  portgroups: ['VM Network', 'Management Network'], protectedPortgroups: ['Management Network'], watchBridgingVms: true,
  actions: ['vnic-disconnect', 'portgroup-quarantine', 'nic-down'], quarantineVlan: 4001, thresholds: { holdSamples: 3 }, line: 1,
};

const nic = (name: string) => ({ name, pci: '0000:00:00.0', driver: 'x', adminUp: true, linkUp: true, speedMbps: 1000, duplex: 'Full', mac: null, mtu: 1500, description: '' });
const pg = (name: string, vlanId: number) => ({ name, vswitch: 'vSwitch0', activeClients: 1, vlanId, unusable: null, security: null, failover: null });
const inv: EsxInventory = {
  host: 'esx1',
  nics: [nic('vmnic0'), nic('vmnic1')],
  vswitches: [{ name: 'vSwitch0', class: null, numPorts: null, usedPorts: null, configuredPorts: null, mtu: 1500, cdpStatus: null, beaconEnabled: null, beaconInterval: null, beaconThreshold: null, beaconRequiredBy: [], uplinks: ['vmnic0', 'vmnic1'], portgroups: ['VM Network'], extra: {} }],
  portgroups: [pg('VM Network', 12), pg('Management Network', 0)],
  vms: [
    { name: 'vmA', worldId: '100', vmid: '7', nics: [
      { portId: 33554440, mac: '00:0c:29:5b:a0:00', portgroup: 'VM Network', vswitch: 'vSwitch0', teamUplink: 'vmnic0', deviceKey: 4000, connected: true },
      { portId: null, mac: '00:0c:29:5b:a0:01', portgroup: 'VM Network', vswitch: 'vSwitch0', teamUplink: null, deviceKey: 4001, connected: false },
    ] },
    { name: 'vcsa', worldId: '101', vmid: null, nics: [{ portId: 33554442, mac: '00:0c:29:00:00:01', portgroup: 'Management Network', vswitch: 'vSwitch0', teamUplink: 'vmnic0', deviceKey: null, connected: true }] },
    { name: 'db', worldId: '102', vmid: null, nics: [{ portId: 33554443, mac: '00:0c:29:00:00:02', portgroup: 'VM Network', vswitch: 'vSwitch0', teamUplink: 'vmnic1', deviceKey: null, connected: true }] },
  ],
  blockGuestBpdu: null,
  readAtMs: 0,
};
const policy = testPolicy();
const noExec = async () => ({ code: 0, stdout: '', stderr: '', durationMs: 0 });

describe('ESXi ports', () => {
  it('names ports by host, vmnic and vNIC MAC; bridges by vSwitch; reports what the host lacks', () => {
    const { ports, missing } = watchedPorts(policy, host, inv);
    expect(ports.map((p) => [p.name, p.kind, p.id, p.bridge, p.policy.role, p.policy.protected])).toEqual([
      ['esx1/vmnic0', 'nic', 'vmnic0', 'esx1/vSwitch0', 'uplink', true],
      ['esx1/vmnic1', 'nic', 'vmnic1', 'esx1/vSwitch0', 'uplink', false],
      ['esx1/vnic-000c295ba000', 'port', '33554440', 'esx1/vSwitch0', 'vm', false],
      // Disconnected: listed (it can be restored), not streamed.
      ['esx1/vnic-000c295ba001', 'port', '', 'esx1/vSwitch0', 'vm', false],
      ['esx1/vnic-000c29000001', 'port', '33554442', 'esx1/vSwitch0', 'vm', true],
      ['esx1/vnic-000c29000002', 'port', '33554443', 'esx1/vSwitch0', 'vm', false],
    ]);
    expect(missing).toEqual(['vmnic7 (not in esxcli network nic list)']);
    expect(ports[0]!.policy.thresholds.holdSamples).toBe(3);
    expect(ports[0]!.policy.settleMs).toBe(300);
    expect(ports[0]!.policy.recovery?.mode).toBe('manual');
    expect(streamItems(host, ports).map((i) => `${i.kind}:${i.id}:${i.op.op}`)).toEqual([
      'nic:vmnic0:vsish-pnic-stats', 'nic:vmnic1:vsish-pnic-stats', 'port:33554440:port-stats', 'port:33554442:port-stats', 'port:33554443:port-stats',
    ]);
    expect(esxHostOf('esx1/vmnic0')).toBe('esx1');
    expect(esxHostOf('eth0')).toBeNull();
  });

  it('judges a NIC that never counts broadcast on total rx, says so, and trusts the counter once it moves', () => {
    const dead = { rxPackets: 700_000, txPackets: 1, rxBytes: 1e8, rxBroadcast: 0, rxMulticast: 5000, txBroadcast: 0 };
    const j = judgeBroadcast(undefined, dead);
    expect(j.usable).toBe(false);
    expect(j.reason).toMatch(/driver reports no rx broadcast.*judging on total rx packets/);
    const c = toCounters(dead, j, emptyCounters());
    expect([c.rxBroadcast, c.rxMulticast, c.ok]).toEqual([NaN, NaN, true]);
    const live = judgeBroadcast(j, { ...dead, rxBroadcast: 3 });
    expect(live).toMatchObject({ usable: true, settled: true });
    expect(judgeBroadcast(live, { ...dead, rxBroadcast: 0 })).toBe(live);
  });

  it('an undecided counter keeps one judgement (same object, same sentence) per status, sample after sample', () => {
    const quiet = { rxPackets: 10, txPackets: 1, rxBytes: 600, rxBroadcast: 0, rxMulticast: 0, txBroadcast: 0, txMulticast: 0 };
    const j = judgeBroadcast(undefined, quiet);
    expect(j).toMatchObject({ usable: false, settled: false, status: 'unknown' });
    expect(j.reason).toBe('rx broadcast still 0 after fewer than 10000 frames; judging on total rx packets (rxPps) instead');
    // More frames, still undecided: the same object (host-rates logs only when the sentence changes).
    let k = j;
    for (let n = 11; n < 9_999; n += 97) k = judgeBroadcast(k, { ...quiet, rxPackets: n });
    expect(k).toBe(j);
    // 10,000 frames and still no broadcast: absent, said once with the count at that moment.
    const absent = judgeBroadcast(k, { ...quiet, rxPackets: 10_000 });
    expect(absent).toMatchObject({ status: 'absent', settled: false });
    expect(absent.reason).toMatch(/0 while >= 10000 frames were received/);
    expect(judgeBroadcast(absent, { ...quiet, rxPackets: 20_000 })).toBe(absent);
    // The counter moves: trusted for good.
    expect(judgeBroadcast(absent, { ...quiet, rxPackets: 20_001, rxBroadcast: 1 })).toMatchObject({ usable: true, settled: true, status: 'reported' });
  });
});

describe('ESXi action plans', () => {
  const ctx = { host, inventory: inv, exec: noExec, retries: 0 };
  const plan = (kind: 'link-down' | 'link-up', port: string, over: Partial<typeof ctx> & { previous?: never | object } = {}) =>
    planEsxiAction({ kind, port, reason: 't' }, { ...ctx, ...over } as never);

  it('disconnects a vNIC by vim-cmd id and device key, and reconnects it', () => {
    const d = plan('link-down', 'esx1/vnic-000c295ba000');
    expect(typeof d !== 'string' && d.op).toEqual({ op: 'vm-nic-disconnect', vmid: '7', deviceKey: 4000, vmNicKeys: [4000, 4001] });
    const u = plan('link-up', 'esx1/vnic-000c295ba001');
    expect(typeof u !== 'string' && u.op).toMatchObject({ op: 'vm-nic-connect', deviceKey: 4001 });
  });

  it('falls back to quarantining the port group when vim-cmd ids are unknown, and its undo restores the old VLAN', () => {
    const q = plan('link-down', 'esx1/vnic-000c29000002');
    expect(typeof q !== 'string' && q.op).toEqual({ op: 'portgroup-quarantine', portgroup: 'VM Network', vlanId: 4001, hostPortgroups: ['VM Network', 'Management Network'] });
    expect(typeof q !== 'string' && q.record.previousVlan).toBe(12);
    const u = plan('link-up', 'esx1/vnic-000c29000002', { previous: { host: 'esx1', action: 'portgroup-quarantine', target: 'VM Network', previousVlan: 12 } } as never);
    expect(typeof u !== 'string' && u.op).toMatchObject({ op: 'portgroup-restore-vlan', portgroup: 'VM Network', vlanId: 12 });
    // A second trip in the quarantined port group runs nothing, and its restore says where the VLAN is.
    const inQ = { ...inv, portgroups: [pg('VM Network', 4001), pg('Management Network', 0)] };
    const again = plan('link-down', 'esx1/vnic-000c29000002', { inventory: inQ });
    expect(typeof again !== 'string' && again.op).toBeNull();
    expect(typeof again !== 'string' && again.record.previousVlan).toBeUndefined();
    expect(plan('link-up', 'esx1/vnic-000c29000002', { previous: { host: 'esx1', action: 'portgroup-quarantine', target: 'VM Network' } } as never)).toMatch(/already quarantined when this port tripped/);
  });

  it('refuses what the policy does not allow or protects, and says why', () => {
    expect(plan('link-down', 'esx1/vnic-000c29000001')).toMatch(/protected port group Management Network/);
    expect(plan('link-down', 'esx1/vnic-000c29000002', { host: { ...host, actions: ['vnic-disconnect'] } })).toMatch(/no allowed action works.*vnic-disconnect: vim-cmd id/);
    expect(plan('link-down', 'esx1/vmnic1', { host: { ...host, actions: ['vnic-disconnect'] } })).toMatch(/does not list nic-down/);
    expect(plan('link-down', 'esx1/vnic-ffffffffffff')).toMatch(/no virtual NIC with that MAC/);
    expect(plan('link-down', 'esx2/vmnic0')).toMatch(/not a port of ESXi host esx1/);
    expect(plan('link-down', 'esx1/vmnic0', { inventory: null })).toMatch(/no inventory/);
    const n = plan('link-down', 'esx1/vmnic1');
    expect(typeof n !== 'string' && n.op).toEqual({ op: 'nic-down', nic: 'vmnic1', hostNics: ['vmnic0', 'vmnic1'] });
  });
});

describe('ESXi reassert: is a trip still in place?', () => {
  it('sees a vNIC reconnected by hand, a vmnic brought up, a port group moved back; unknown is not undone', () => {
    expect(tripUndone(inv, host, 'esx1/vnic-000c295ba000', { host: 'esx1', action: 'vnic-disconnect', target: 'vmA key 4000' })).toBe(true);
    expect(tripUndone(inv, host, 'esx1/vnic-000c295ba001', { host: 'esx1', action: 'vnic-disconnect', target: 'vmA key 4001' })).toBe(false);
    expect(tripUndone(inv, host, 'esx1/vmnic1', undefined)).toBe(true);
    const down = { ...inv, nics: [nic('vmnic0'), { ...nic('vmnic1'), adminUp: false }] };
    expect(tripUndone(down, host, 'esx1/vmnic1', undefined)).toBe(false);
    const q = { host: 'esx1', action: 'portgroup-quarantine' as const, target: 'VM Network', previousVlan: 12 };
    expect(tripUndone(inv, host, 'esx1/vnic-000c29000002', q)).toBe(true); // VLAN 12 again
    const quarantined = { ...inv, portgroups: [pg('VM Network', 4001), pg('Management Network', 0)] };
    expect(tripUndone(quarantined, host, 'esx1/vnic-000c29000002', q)).toBe(false);
    expect(tripUndone(inv, host, 'esx1/vnic-ffffffffffff', undefined)).toBe(false);
  });
});
