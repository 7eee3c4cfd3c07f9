// Overlay (VXLAN) loops (session 18), built on the kvm lab. Host A (the kvm lab's host, where the
// agent runs) and host B (`<prefix>hostb`, no agent) each bridge a VXLAN port of one segment
// (VNI 5, named vxlan-5 as OpenStack's linuxbridge agent names it) with a physical uplink into the
// same switch: A's br0 has up1 (to sw1) and vxlan-5, B's br0 has up2 (the kvm lab's second uplink,
// moved into B, to sw2) and vxlan-5. That is the classic overlay mistake: a broadcast circles
// switch -> A.up1 -> A.br0 -> A.vxlan-5 -> UDP over the underlay -> B.vxlan-5 -> B.br0 -> B.up2
// -> switch, both ways round. Host C (`<prefix>hostc`) is a third VTEP with no uplink: a VM on a
// remote host (vmC in `<prefix>vmc`, its port vmc on C's br0), which is what an overlay is for.
//
// The underlay is a shared L2 segment (bridge ul0 in `<prefix>ul`, the fabric), each host's NIC
// ul0 with 10.99.0.{1,2,3}/24. It is NOT a bridge port: it carries the encapsulated storm as
// unicast UDP, and no loop breaker may cut it (it is the host's tunnel endpoint for every VNI).
// Head-end replication: each VTEP's flood list (all-zeros FDB entries of its vxlan device) names
// the remote VTEPs, A's B only (classic) or B and C (setFloodList): then A sends every flooded
// frame twice into the underlay.
//
// Quiet-lab rules as in topology.ts; besides, the underlay NICs have addresses, so they carry no
// multicast (IFF_MULTICAST off: no IGMP) and know each other by static neighbour entries (no ARP
// at the storm's first frame, so its timing is the loop's, not a resolution's). The loop closes
// when B's up2 comes up, last. teardownLab(prefix) removes every namespace, B's and C's included.
import { run } from './exec.js';
import { assertIfName, assertNetns } from './names.js';
import { assertQuiet, buildLab, ipv6Off, teardownLab, type Lab } from './topology.js';

/** The segment's VXLAN port on every host (OpenStack linuxbridge names it vxlan-<VNI>). */
export const VX = 'vxlan-5';
const VNI = '5';
const VTEP = { a: '10.99.0.1', b: '10.99.0.2', c: '10.99.0.3' } as const;
export type Vtep = keyof typeof VTEP;

export interface OverlayLab extends Lab {
  ns: Lab['ns'] & { hostb: string; hostc: string; vmc: string; ul: string };
  /** Underlay addresses of the VTEPs. */
  vtep: typeof VTEP;
}

const ip = (netns: string, ...a: string[]) => run(['ip', '-n', assertNetns(netns), ...a]);
const bridgeArgs = ['type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0'];

async function newNetns(name: string): Promise<void> {
  await run(['ip', 'netns', 'add', assertNetns(name)]);
  await ipv6Off(name);
  await ip(name, 'link', 'set', 'dev', 'lo', 'up');
}

async function macOf(netns: string, dev: string): Promise<string> {
  const { stdout } = await ip(netns, '-j', 'link', 'show', 'dev', assertIfName(dev));
  const mac = (JSON.parse(stdout) as Array<{ address?: string }>)[0]?.address;
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error(`no MAC for ${dev} in ${netns}`);
  return mac;
}

/** A host's underlay NIC ul0 on the fabric bridge: address, no multicast, up. */
async function underlayNic(host: string, under: string, addr: string): Promise<void> {
  const peer = `ul-${addr.split('.')[3]}`;
  await ip(host, 'link', 'add', 'name', 'ul0', 'type', 'veth', 'peer', 'name', peer, 'netns', under);
  await ip(under, 'link', 'set', 'dev', peer, 'master', 'ul0');
  await ip(under, 'link', 'set', 'dev', peer, 'up');
  await ip(host, 'link', 'set', 'dev', 'ul0', 'multicast', 'off');
  await ip(host, 'addr', 'add', `${addr}/24`, 'dev', 'ul0');
  await ip(host, 'link', 'set', 'dev', 'ul0', 'up');
}

/** The host's VXLAN port on its br0 (left down), flooding to `remotes` (head-end replication). */
async function vxlanPort(host: string, me: Vtep, remotes: readonly Vtep[]): Promise<void> {
  await ip(host, 'link', 'add', 'name', VX, 'type', 'vxlan', 'id', VNI, 'dstport', '4789', 'local', VTEP[me], 'dev', 'ul0');
  for (const r of remotes) await run(['bridge', '-n', host, 'fdb', 'append', '00:00:00:00:00:00', 'dev', VX, 'dst', VTEP[r]]);
  await ip(host, 'link', 'set', 'dev', VX, 'master', 'br0');
}

/**
 * A built kvm lab -> the overlay lab (see the file comment), A's flood list B only. The caller
 * tears down on failure (buildOverlayLab does).
 */
export async function toOverlayLab(lab: Lab): Promise<OverlayLab> {
  const p = lab.prefix;
  const n = { hostb: `${p}hostb`, hostc: `${p}hostc`, vmc: `${p}vmc`, ul: `${p}ul` };
  for (const x of Object.values(n)) await newNetns(x);
  const a = lab.ns.host;
  // The fabric, and each host's NIC on it.
  await ip(n.ul, 'link', 'add', 'name', 'ul0', ...bridgeArgs);
  await ip(n.ul, 'link', 'set', 'dev', 'ul0', 'up');
  const hosts: Record<Vtep, string> = { a, b: n.hostb, c: n.hostc };
  for (const v of ['a', 'b', 'c'] as const) await underlayNic(hosts[v], n.ul, VTEP[v]);
  const macs = { a: await macOf(a, 'ul0'), b: await macOf(n.hostb, 'ul0'), c: await macOf(n.hostc, 'ul0') };
  for (const v of ['a', 'b', 'c'] as const) {
    for (const r of ['a', 'b', 'c'] as const) {
      if (r !== v) await ip(hosts[v], 'neigh', 'replace', VTEP[r], 'lladdr', macs[r], 'dev', 'ul0', 'nud', 'permanent');
    }
  }
  // B: up2 leaves A (it goes down on the move) for B's own bridge, with B's VXLAN port.
  await ip(n.hostb, 'link', 'add', 'name', 'br0', ...bridgeArgs);
  await ip(a, 'link', 'set', 'dev', 'up2', 'netns', n.hostb);
  await ip(n.hostb, 'link', 'set', 'dev', 'up2', 'master', 'br0');
  await vxlanPort(n.hostb, 'b', ['a', 'c']);
  // C: a VTEP with a VM and no uplink.
  await ip(n.hostc, 'link', 'add', 'name', 'br0', ...bridgeArgs);
  await ip(n.hostc, 'link', 'add', 'name', 'vmc', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.vmc);
  await ip(n.hostc, 'link', 'set', 'dev', 'vmc', 'master', 'br0');
  await vxlanPort(n.hostc, 'c', ['a', 'b']);
  await vxlanPort(a, 'a', ['b']);
  await ip(n.vmc, 'link', 'set', 'dev', 'eth0', 'up');
  for (const [h, devs] of [[n.hostc, ['vmc', VX, 'br0']], [n.hostb, [VX, 'br0']], [a, [VX]]] as const) {
    for (const d of devs) await ip(h, 'link', 'set', 'dev', d, 'up');
  }
  // hostPorts are A's bridge ports (what storm-control polices and the bench brings back up);
  // the underlay NIC is no bridge port, but it must be quiet too.
  const out: OverlayLab = {
    ...lab,
    ns: { ...lab.ns, ...n },
    vtep: VTEP,
    loopPorts: ['up1', VX],
    hostPorts: ['up1', VX, 'vm1', 'mgmt0'],
  };
  await setRemoteUplink(out, true); // closes the loop
  await assertQuiet({ ...out, hostPorts: [...out.hostPorts, 'ul0'] });
  return out;
}

/** kvm lab -> overlay lab, torn down on any failure. */
export async function buildOverlayLab(prefix: string): Promise<OverlayLab> {
  const lab = await buildLab('kvm', prefix);
  try {
    return await toOverlayLab(lab);
  } catch (err) {
    await teardownLab(prefix).catch(() => undefined);
    throw err;
  }
}

/** B's physical uplink up (the mistake: the loop is closed) or down (the overlay as it should be). */
export async function setRemoteUplink(lab: OverlayLab, up: boolean): Promise<void> {
  await ip(lab.ns.hostb, 'link', 'set', 'dev', 'up2', up ? 'up' : 'down');
}

/** A's head-end replication list: the VTEPs its vxlan-5 floods to (B alone, or B and C). */
export async function setFloodList(lab: OverlayLab, remotes: ReadonlyArray<Exclude<Vtep, 'a'>>): Promise<void> {
  for (const r of ['b', 'c'] as const) {
    await run(['bridge', '-n', assertNetns(lab.ns.host), 'fdb', 'del', '00:00:00:00:00:00', 'dev', VX, 'dst', VTEP[r]]).catch(() => undefined);
  }
  for (const r of remotes) await run(['bridge', '-n', assertNetns(lab.ns.host), 'fdb', 'append', '00:00:00:00:00:00', 'dev', VX, 'dst', VTEP[r]]);
}

/** The multicast group of multicastUnderlay (an administratively scoped IPv4 group). */
const GROUP = '239.1.1.5';

/**
 * Every host's vxlan-5 recreated on a multicast underlay (`group 239.1.1.5 dev ul0`, no flood
 * list: a VTEP sends each flooded frame once, to the group, and the fabric bridge delivers it to
 * every VTEP), or back on unicast head-end replication (A to B, B and C to the others). The
 * underlay NICs then carry the overlay's BUM frames as IP multicast (01:00:5e:01:01:05), which
 * the agent's tripwire and packet counters see on ul0; IFF_MULTICAST goes on for the group joins
 * (their IGMP reports stay on the fabric, which is no loop). A's vxlan-5 is re-enslaved, so A's
 * listing sees a new interface under the same name.
 */
export async function setUnderlay(lab: OverlayLab, mode: 'multicast' | 'unicast'): Promise<void> {
  const hosts: Record<Vtep, string> = { a: lab.ns.host, b: lab.ns.hostb, c: lab.ns.hostc };
  const remotes: Record<Vtep, Vtep[]> = { a: ['b'], b: ['a', 'c'], c: ['a', 'b'] };
  for (const v of ['c', 'b', 'a'] as const) {
    const h = hosts[v];
    await ip(h, 'link', 'del', 'dev', VX);
    await ip(h, 'link', 'set', 'dev', 'ul0', 'multicast', mode === 'multicast' ? 'on' : 'off');
    if (mode === 'multicast') {
      await ip(h, 'link', 'add', 'name', VX, 'type', 'vxlan', 'id', VNI, 'dstport', '4789', 'local', VTEP[v], 'group', GROUP, 'dev', 'ul0');
      await ip(h, 'link', 'set', 'dev', VX, 'master', 'br0');
    } else {
      await vxlanPort(h, v, remotes[v]);
    }
    await ip(h, 'link', 'set', 'dev', VX, 'up');
  }
}

/** The second segment's VXLAN port (addSecondSegment). */
export const VX6 = 'vxlan-6';

/**
 * A second segment, VNI 6: A gets br1 with a second uplink up3 (into the same switch, sw3) and
 * vxlan-6; B puts its own vxlan-6 into its br0, beside vxlan-5: B bridges the two segments (a
 * host or gateway VM joining two VNIs, where it should route). With B's uplink down that closes
 * a loop through A's two bridges and the overlay only: switch -> up1 -> A.br0 -> vxlan-5 -> B ->
 * vxlan-6 -> A.br1 -> up3 -> switch. Left open (both vxlan-6 down): setSecondSegment closes it.
 * The loop's breakable members are A's two tunnels (loopPorts); A's hostPorts gain br1's ports.
 */
export async function addSecondSegment(lab: OverlayLab): Promise<OverlayLab> {
  const a = lab.ns.host;
  const b = lab.ns.hostb;
  await ip(a, 'link', 'add', 'name', 'br1', ...bridgeArgs);
  await ip(a, 'link', 'add', 'name', 'up3', 'type', 'veth', 'peer', 'name', 'sw3', 'netns', lab.ns.sw);
  await ip(lab.ns.sw, 'link', 'set', 'dev', 'sw3', 'master', 'sw0');
  await ip(a, 'link', 'set', 'dev', 'up3', 'master', 'br1');
  for (const [h, me, remote] of [[a, VTEP.a, VTEP.b], [b, VTEP.b, VTEP.a]] as const) {
    await ip(h, 'link', 'add', 'name', VX6, 'type', 'vxlan', 'id', '6', 'dstport', '4789', 'local', me, 'dev', 'ul0');
    await run(['bridge', '-n', assertNetns(h), 'fdb', 'append', '00:00:00:00:00:00', 'dev', VX6, 'dst', remote]);
  }
  await ip(a, 'link', 'set', 'dev', VX6, 'master', 'br1');
  await ip(b, 'link', 'set', 'dev', VX6, 'master', 'br0');
  await ip(lab.ns.sw, 'link', 'set', 'dev', 'sw3', 'up');
  for (const d of ['br1', 'up3']) await ip(a, 'link', 'set', 'dev', d, 'up');
  return { ...lab, loopPorts: [VX, VX6], hostPorts: [...lab.hostPorts, 'up3', VX6] };
}

/** Close (both hosts' vxlan-6 up) or open (down: no VNI 6 frame reaches the underlay) the loop of addSecondSegment. */
export async function setSecondSegment(lab: OverlayLab, up: boolean): Promise<void> {
  for (const h of [lab.ns.hostb, lab.ns.host]) await ip(h, 'link', 'set', 'dev', VX6, up ? 'up' : 'down');
}

/** A's vxlan-5 FDB (`bridge fdb show dev vxlan-5`): remote MACs learned with their VTEP (dst). */
export async function vxlanFdb(lab: OverlayLab): Promise<string> {
  const { stdout } = await run(['bridge', '-n', assertNetns(lab.ns.host), 'fdb', 'show', 'dev', VX]);
  return stdout;
}
