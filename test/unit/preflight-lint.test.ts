// Static lint rules over real captured iproute2 outputs (test/fixtures/preflight/, see SOURCES.txt)
// and literal OVS outputs in the documented ovs-vsctl JSON shape (OVS is not installed here).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadPolicyFile, parsePolicy } from '../../agent/policy/load.js';
import type { Finding } from '../../agent/preflight/findings.js';
import {
  fetchHostNet,
  lintHostNet,
  rolesFor,
  ruleBpduGuard,
  ruleBridgeUplinks,
  ruleOvsUplinks,
  ruleVmPeersBridged,
  type Exec,
  type HostNet,
} from '../../agent/preflight/lint.js';
import {
  mergeBridgeInfo,
  parseBonds,
  parseBridgeLinks,
  parseIpLinks,
  parseNetnsIds,
  toPortState,
  type LinkState,
} from '../../agent/preflight/netstate.js';
import { decodeOvsValue, parseOvs, parseOvsTable } from '../../agent/preflight/ovs.js';
import type { Policy } from '../../agent/types.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/preflight');
const fx = (...p: string[]): string => readFileSync(join(FIX, ...p), 'utf8');

async function labPolicy(): Promise<Policy> {
  const r = await loadPolicyFile(join(ROOT, 'policies/lab.yaml'));
  if ('errors' in r) throw new Error('lab policy does not load');
  return r.policy;
}

function policyOf(yaml: string): Policy {
  const r = parsePolicy(yaml, 'test://p.yaml');
  if ('errors' in r) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.policy;
}

/** A HostNet from one captured lab directory (and optional peer namespaces by nsid). */
function captured(dir: string, peers: Array<{ nsid: number; name: string; file: string }> = []): HostNet {
  const links = mergeBridgeInfo(parseIpLinks(fx(dir, 'ip-link.json')), parseBridgeLinks(fx(dir, 'bridge-link.json')));
  return {
    links,
    bonds: parseBonds(fx(dir, 'ip-bond.json')),
    ovs: null,
    peers: peers.map((p) => ({ nsid: p.nsid, name: p.name, links: parseIpLinks(fx(dir, p.file)) })),
    notes: [],
  };
}

const rules = (fs: Finding[]): string[] => fs.map((f) => `${f.severity} ${f.rule} ${f.ports.join(',')}`).sort();

describe('parsers (captured iproute2 6.1 output)', () => {
  it('ip -j -d link show: kinds, masters, STP, port state, guard, veth peers', () => {
    const links = parseIpLinks(fx('esx', 'ip-link.json'));
    const by = new Map(links.map((l) => [l.name, l]));
    expect([...by.keys()].sort()).toEqual(['lo', 'mgmt0', 'up1', 'vm1', 'vmA1', 'vmA2', 'vsw0']);
    expect(by.get('vsw0')).toMatchObject({ kind: 'bridge', stpState: 0, master: null });
    expect(by.get('vmA1')).toMatchObject({ kind: 'veth', master: 'vsw0', slaveKind: 'bridge', adminUp: true, operUp: true, portState: 'forwarding', bpduGuard: false });
    // Peers from link_index + link_netnsid; vmA1 and vmA2 lead into the same namespace.
    expect(by.get('vmA1')?.peer?.netnsid).toBe(by.get('vmA2')?.peer?.netnsid);
    expect(by.get('lo')?.peer).toBeNull();
  });

  it('bridge -j -d link show; a down port; BPDU guard on', () => {
    const ports = parseBridgeLinks(fx('kvm-up2down-guard', 'bridge-link.json'));
    expect(ports.find((p) => p.name === 'vm1')).toMatchObject({ master: 'br0', bpduGuard: true });
    expect(ports.find((p) => p.name === 'up2')?.state).toBe('disabled');
    const links = parseIpLinks(fx('kvm-up2down-guard', 'ip-link.json'));
    expect(links.find((l) => l.name === 'up2')).toMatchObject({ adminUp: false, operUp: false });
  });

  it('STP state from the host-STP capture: up2 blocking', () => {
    const links = mergeBridgeInfo(parseIpLinks(fx('kvm-hoststp', 'ip-link.json')), parseBridgeLinks(fx('kvm-hoststp', 'bridge-link.json')));
    expect(links.find((l) => l.name === 'br0')?.stpState).toBe(1);
    expect(links.find((l) => l.name === 'up2')?.portState).toBe('blocking');
  });

  it('bond list `[{},{}]` without bonds is empty; list-id names; odd input', () => {
    expect(fx('kvm', 'ip-bond.json').trim()).toMatch(/^\[\{\}(,\{\})*\]$/);
    expect(parseBonds(fx('kvm', 'ip-bond.json'))).toEqual([]);
    expect(parseBonds('[{"ifname":"bond0"},{}]')).toEqual(['bond0']);
    expect(parseNetnsIds(fx('esx', 'netns-list-id.json')).every((x) => typeof x.nsid === 'number' && x.name?.startsWith('sbp-f-'))).toBe(true);
    expect(parseNetnsIds('')).toEqual([]);
    expect(parseNetnsIds('[{"nsid":3},{"nsid":4,"name":"a b"}]')).toEqual([{ nsid: 3, name: null }, { nsid: 4, name: null }]);
    expect(() => parseIpLinks('not json')).toThrow(/not JSON/);
    expect(() => parseIpLinks('{}')).toThrow(/array/);
    expect(parseIpLinks('[{"ifname":"bad name","ifindex":3},{"ifindex":4},null]')).toEqual([]);
    expect(toPortState(4)).toBe('blocking');
    expect(toPortState('weird')).toBe('unknown');
  });
});

describe('rule bridge-uplinks-no-stp (a)', () => {
  it('kvm lab: up1 and up2 in br0, STP off, both up -> error naming both', async () => {
    const net = captured('kvm');
    const f = ruleBridgeUplinks(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['error bridge-uplinks-no-stp up1,up2']);
    expect(f[0]?.what).toContain('bridge br0');
    expect(f[0]?.fix).toMatch(/stp_state 1/);
  });

  it('one uplink down: a warning (the next link-up closes it)', async () => {
    const net = captured('kvm-up2down-guard');
    const f = ruleBridgeUplinks(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['warning bridge-uplinks-no-stp up1,up2']);
    expect(f[0]?.what).toMatch(/up2 down now/);
  });

  it('host bridge with kernel STP: no finding', async () => {
    const net = captured('kvm-hoststp');
    expect(ruleBridgeUplinks(net, rolesFor(await labPolicy(), net))).toEqual([]);
  });

  it('uplinks bonded: the bridge holds one bond, no finding; a bond beside a second uplink is one', () => {
    // Literal: this kernel has no bonding driver, so no capture exists (SOURCES.txt).
    const l = (name: string, o: Partial<LinkState>): LinkState => ({
      name, ifindex: 1, kind: null, master: null, slaveKind: null, adminUp: true, operUp: true, peer: null, stpState: null, portState: null, bpduGuard: null, ...o,
    });
    const bonded: HostNet = {
      links: [
        l('br0', { kind: 'bridge', stpState: 0 }),
        l('bond0', { kind: 'bond', master: 'br0', slaveKind: 'bridge', portState: 'forwarding' }),
        l('up1', { master: 'bond0', slaveKind: 'bond' }),
        l('up2', { master: 'bond0', slaveKind: 'bond' }),
      ],
      bonds: ['bond0'], ovs: null, peers: [], notes: [],
    };
    const p = policyOf('version: 1\nports:\n  - match: "up*"\n    role: uplink\n  - match: "bond*"\n    role: uplink\n');
    expect(ruleBridgeUplinks(bonded, rolesFor(p, bonded))).toEqual([]);
    bonded.links.push(l('up3', { master: 'br0', slaveKind: 'bridge', portState: 'forwarding' }));
    const f = ruleBridgeUplinks(bonded, rolesFor(p, bonded));
    expect(rules(f)).toEqual(['error bridge-uplinks-no-stp bond0,up3']);
    expect(f[0]?.what).toMatch(/bond0 is a bond, but not one bond/);
  });
});

describe('rule vm-port-no-bpdu-guard (c)', () => {
  it('kvm lab: vm1 without guard -> warning; mgmt and uplinks are not guest ports', async () => {
    const net = captured('kvm');
    const f = ruleBpduGuard(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['warning vm-port-no-bpdu-guard vm1']);
    expect(f[0]?.fix).toContain('bridge link set dev vm1 guard on');
  });

  it('guard on but STP off: flagged as inert (measured: the guard acts only under kernel STP)', async () => {
    const net = captured('kvm-up2down-guard');
    const f = ruleBpduGuard(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['warning vm-port-no-bpdu-guard vm1']);
    expect(f[0]?.what).toMatch(/guard on, but bridge br0 runs no STP/);
  });

  it('STP on, guard off: the plain warning without the STP advice', async () => {
    const net = captured('kvm-hoststp');
    const f = ruleBpduGuard(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['warning vm-port-no-bpdu-guard vm1']);
    expect(f[0]?.fix).not.toMatch(/stp_state/);
  });
});

describe('rule vm-peers-bridged (d)', () => {
  it('esx lab: vmA1 and vmA2 lead into one bridge in the guest namespace -> error', async () => {
    const ids = parseNetnsIds(fx('esx', 'netns-list-id.json'));
    const vmA = ids.find((x) => x.name?.endsWith('vmA'));
    expect(vmA).toBeDefined();
    const net = captured('esx', [{ nsid: vmA!.nsid, name: vmA!.name!, file: 'peer-vmA-ip-link.json' }]);
    const f = ruleVmPeersBridged(net, rolesFor(await labPolicy(), net));
    expect(rules(f)).toEqual(['error vm-peers-bridged vmA1,vmA2']);
    expect(f[0]?.evidence).toMatchObject({ bridge: 'vsw0', peerBridge: 'vbr', pairs: [{ port: 'vmA1', peer: 'eth0' }, { port: 'vmA2', peer: 'eth1' }] });
  });

  it('without the peer namespace (unnamed): no finding, but a note says it was not checked', async () => {
    const net = captured('esx');
    const nsid = net.links.find((l) => l.name === 'vmA1')!.peer!.netnsid;
    net.peers = [{ nsid, name: null, links: [] }];
    const r = lintHostNet(net, rolesFor(await labPolicy(), net));
    expect(r.findings.filter((f) => f.rule === 'vm-peers-bridged')).toEqual([]);
    expect(r.notes.join('\n')).toMatch(new RegExp(`nsid ${nsid} has no name`));
  });

  it('kvm lab: vm1 peer is not bridged -> nothing', async () => {
    const net = captured('kvm');
    expect(ruleVmPeersBridged(net, rolesFor(await labPolicy(), net))).toEqual([]);
  });
});

describe('OVS (literal fixtures; not run against a real OVS)', () => {
  const ovs = () => parseOvs(fx('ovs', 'list-Bridge.json'), fx('ovs', 'list-Port.json'), fx('ovs', 'list-Interface.json'));
  const p = policyOf('version: 1\nports:\n  - match: "eth*"\n    role: uplink\n  - match: "vnet*"\n    role: vm\n');

  it('decodes OVSDB JSON values: uuid, set (also a bare one-element set), map', () => {
    expect(decodeOvsValue(['uuid', 'abc'])).toBe('abc');
    expect(decodeOvsValue(['set', [['uuid', 'a'], ['uuid', 'b']]])).toEqual(['a', 'b']);
    expect(decodeOvsValue(['map', [['forward-bpdu', 'true']]])).toEqual({ 'forward-bpdu': 'true' });
    expect(decodeOvsValue(false)).toBe(false);
    const rows = parseOvsTable(fx('ovs', 'list-Port.json'), 'Port');
    expect(rows.find((r) => r['name'] === 'eth1')?.['interfaces']).toMatch(/^[0-9a-f-]{36}$/);
    expect(() => parseOvsTable('{"data":[]}', 'Bridge')).toThrow(/headings/);
  });

  it('joins bridges, ports, interfaces', () => {
    const b = ovs();
    expect(b.map((x) => x.name)).toEqual(['br-ex', 'br-bond', 'br-fwd', 'br-rstp']);
    expect(b[1]?.ports.find((x) => x.name === 'bond0')).toEqual({ name: 'bond0', interfaces: ['eth3', 'eth4'], bondMode: 'active-backup' });
    expect(b[2]?.forwardBpdu).toBe(true);
    expect(b[3]?.rstp).toBe(true);
  });

  it('redundant uplinks: error without STP and with BPDUs dropped, warning when BPDUs pass; bond and RSTP are fine', () => {
    const net: HostNet = { links: [], bonds: [], ovs: ovs(), peers: [], notes: [] };
    const f = ruleOvsUplinks(net, rolesFor(p, net));
    expect(rules(f)).toEqual(['error ovs-uplinks-no-stp eth1,eth2', 'warning ovs-uplinks-no-stp eth5,eth6']);
    expect(f.find((x) => x.severity === 'error')?.fix).toContain('forward-bpdu=true');
  });
});

describe('fetchHostNet (fixture-backed exec: which commands, with what argv)', () => {
  it('runs the three ip/bridge commands, list-id and the peer namespace; OVS only when present', async () => {
    const calls: string[][] = [];
    const ids = parseNetnsIds(fx('esx', 'netns-list-id.json'));
    const vmA = ids.find((x) => x.name?.endsWith('vmA'))!;
    const exec: Exec = async (argv, timeoutMs) => {
      calls.push([...argv]);
      expect(timeoutMs).toBeGreaterThan(0);
      const key = argv.join(' ');
      if (key === 'ip -j -d link show') return { stdout: fx('esx', 'ip-link.json') };
      if (key === 'bridge -j -d link show') return { stdout: fx('esx', 'bridge-link.json') };
      if (key === 'ip -j -d link show type bond') return { stdout: fx('esx', 'ip-bond.json') };
      if (key === 'ip -j netns list-id') return { stdout: fx('esx', 'netns-list-id.json') };
      if (key === `ip -n ${vmA.name} -j -d link show`) return { stdout: fx('esx', 'peer-vmA-ip-link.json') };
      // The other guests' namespaces (vm1) were not captured: an empty link list.
      if (argv[1] === '-n') return { stdout: '[]' };
      throw new Error(`unexpected command ${key}`);
    };
    const policy = await labPolicy();
    const roles = rolesFor(policy, { links: parseIpLinks(fx('esx', 'ip-link.json')), ovs: null });
    const net = await fetchHostNet(exec, { ovs: false, roles });
    // Only namespaces holding peers of vm-role ports are read: vmA's and vm1's, not sw's or mgmt's.
    const read = calls.filter((c) => c[1] === '-n').map((c) => c[2] ?? '');
    expect(read.sort()).toEqual([vmA.name, ids.find((x) => x.name?.endsWith('vm1'))?.name].sort());
    expect(net.notes).toEqual([]);
    expect(calls.some((c) => c[0] === 'ovs-vsctl')).toBe(false);
    const r = lintHostNet(net, rolesFor(policy, net));
    expect(rules(r.findings)).toEqual(['error vm-peers-bridged vmA1,vmA2', 'warning vm-port-no-bpdu-guard vm1,vmA1,vmA2']);
  });

  it('an OVS that does not answer becomes a note, not a crash', async () => {
    const exec: Exec = async (argv) => {
      if (argv[0] === 'ovs-vsctl') throw new Error('ovs-vsctl: unix:/var/run/openvswitch/db.sock: database connection failed');
      const key = argv.join(' ');
      if (key === 'ip -j -d link show') return { stdout: fx('kvm', 'ip-link.json') };
      if (key === 'bridge -j -d link show') return { stdout: fx('kvm', 'bridge-link.json') };
      return { stdout: fx('kvm', 'ip-bond.json') };
    };
    const net = await fetchHostNet(exec, { ovs: true });
    expect(net.ovs).toBeNull();
    expect(net.notes.join('\n')).toMatch(/did not answer.*database connection failed/);
  });
});
