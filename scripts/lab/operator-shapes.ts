// Loop shapes an operator meets that the kvm/esx labs do not show, built on the kvm lab:
//  - two bridges: br0 with uplink up1, br1 with uplink up2 (both into the same switch), and a VM
//    (namespace vmB) bridging its vNIC vmb0 on br0 with its vNIC vmb1 on br1. Per bridge only one
//    uplink and one VM port carry the loop. Or the same two bridges joined by a veth pair ln0/ln1.
//  - two loops on one bridge at once: up1/up2 through the switch, and a VM bridging its vNICs
//    vm7 and vm8, both on br0 (twoLoopsOnBridge): each loop needs one cut, and only one.
//  - a victim host: one uplink only, and a storm arriving from a loop elsewhere in the network.
//  - a VM bridging a named vNIC with a tap the policy does not name, both on br0 (tapOnBridge),
//    and a guest on such a tap that only sends ordinary traffic (unnamedGuest).
// Quiet-lab rules as in topology.ts: IPv6 off in a new namespace before its links exist, bridges
// without STP or multicast snooping, loop members up last, then assertQuiet.
import { run } from './exec.js';
import { assertQuiet, ipv6Off, type Lab } from './topology.js';

const ip = (netns: string, ...a: string[]) => run(['ip', '-n', netns, ...a]);
const bridgeArgs = ['type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0'];

/** up2 moves from br0 to a new bridge br1 (left down: the caller closes the loop). */
async function secondBridge(lab: Lab): Promise<void> {
  const h = lab.ns.host;
  await ip(h, 'link', 'set', 'dev', 'up2', 'down');
  await ip(h, 'link', 'add', 'name', 'br1', ...bridgeArgs);
  await ip(h, 'link', 'set', 'dev', 'up2', 'master', 'br1');
  await ip(h, 'link', 'set', 'dev', 'br1', 'up');
}

/** A VM (namespace `vm`) bridging its two vNICs, host sides `ports[i][0]` on bridge `ports[i][1]`, left down. */
async function bridgingVm(lab: Lab, vm: string, ports: ReadonlyArray<readonly [string, string]>): Promise<void> {
  const h = lab.ns.host;
  await run(['ip', 'netns', 'add', vm]);
  await ipv6Off(vm);
  await ip(vm, 'link', 'add', 'name', 'vbr', ...bridgeArgs);
  for (const [i, [port, br]] of ports.entries()) {
    await ip(h, 'link', 'add', 'name', port, 'type', 'veth', 'peer', 'name', `eth${i}`, 'netns', vm);
    await ip(h, 'link', 'set', 'dev', port, 'master', br);
    await ip(vm, 'link', 'set', 'dev', `eth${i}`, 'master', 'vbr');
    await ip(vm, 'link', 'set', 'dev', `eth${i}`, 'up');
  }
  await ip(vm, 'link', 'set', 'dev', 'lo', 'up');
  await ip(vm, 'link', 'set', 'dev', 'vbr', 'up');
}

/** kvm lab -> two bridges joined by a VM bridging its two vNICs (see the file comment). */
export async function splitByVm(lab: Lab): Promise<Lab> {
  await secondBridge(lab);
  await bridgingVm(lab, `${lab.prefix}vmB`, [['vmb0', 'br0'], ['vmb1', 'br1']]);
  return closeSplit(lab, ['vmb0', 'vmb1']);
}

/**
 * kvm lab -> one uplink (up2 deleted) and a VM bridging two vNICs on br0: vm7, which the policy
 * names (vm*), and myvm0, a tap whose name the policy's globs miss. The loop circles br0 -> vm7
 * -> VM -> myvm0 -> br0; on the watched side only vm7 shows it. Closed when myvm0 comes up.
 */
export async function tapOnBridge(lab: Lab): Promise<Lab> {
  const h = lab.ns.host;
  await ip(h, 'link', 'del', 'dev', 'up2');
  await bridgingVm(lab, `${lab.prefix}vmC`, [['vm7', 'br0'], ['myvm0', 'br0']]);
  const out: Lab = { ...lab, ns: { ...lab.ns }, loopPorts: ['vm7', 'myvm0'], hostPorts: ['up1', 'vm1', 'mgmt0', 'vm7', 'myvm0'] };
  for (const p of out.loopPorts) await ip(h, 'link', 'set', 'dev', p, 'up');
  await assertQuiet(out);
  return out;
}

/**
 * kvm lab -> two loops on br0 at once: the lab's own (up1/up2 through the switch) and a VM
 * (namespace `<prefix>vmD`) bridging its vNICs vm7 and vm8, both on br0. One frame starts both:
 * br0 floods it out all four. Each loop needs exactly one cut (one of vm7/vm8, one of up1/up2);
 * a second cut in either pair is needless. loopPorts lists all four and loopMinMembers is 3: the
 * scenario opens them by hand when fewer than two are down (the caller bounds the case of two
 * down in one pair).
 */
export async function twoLoopsOnBridge(lab: Lab): Promise<Lab> {
  const h = lab.ns.host;
  await ip(h, 'link', 'set', 'dev', 'up2', 'down');
  await bridgingVm(lab, `${lab.prefix}vmD`, [['vm7', 'br0'], ['vm8', 'br0']]);
  const out: Lab = { ...lab, ns: { ...lab.ns }, loopPorts: ['up1', 'up2', 'vm7', 'vm8'], loopMinMembers: 3, hostPorts: [...lab.hostPorts, 'vm7', 'vm8'] };
  for (const p of ['vm7', 'vm8', 'up2']) await ip(h, 'link', 'set', 'dev', p, 'up');
  await assertQuiet(out);
  return out;
}

/** kvm lab -> two bridges joined by a veth pair ln0 (on br0) / ln1 (on br1), as a wrong hand-made link. */
export async function splitByVeth(lab: Lab): Promise<Lab> {
  const h = lab.ns.host;
  await secondBridge(lab);
  await ip(h, 'link', 'add', 'name', 'ln0', 'type', 'veth', 'peer', 'name', 'ln1');
  await ip(h, 'link', 'set', 'dev', 'ln0', 'master', 'br0');
  await ip(h, 'link', 'set', 'dev', 'ln1', 'master', 'br1');
  return closeSplit(lab, ['ln0', 'ln1']);
}

/** Up the joining ports, then up2 (closes the loop); the joining ports are the loop's breakable members. */
async function closeSplit(lab: Lab, join: [string, string]): Promise<Lab> {
  const h = lab.ns.host;
  for (const p of join) await ip(h, 'link', 'set', 'dev', p, 'up');
  await ip(h, 'link', 'set', 'dev', 'up2', 'up');
  const out: Lab = { ...lab, ns: { ...lab.ns }, loopPorts: [...join], hostPorts: [...lab.hostPorts, ...join] };
  await assertQuiet(out);
  return out;
}

/**
 * kvm lab with the loop open (up2 down) and a guest whose tap, myvm0 on br0, no rule names
 * (namespace `<prefix>vmC`, its NIC eth0): ordinary traffic through an observed-only port.
 */
export async function unnamedGuest(lab: Lab): Promise<Lab & { ns: Lab['ns'] & { vmC: string } }> {
  const h = lab.ns.host;
  const vmC = `${lab.prefix}vmC`;
  await ip(h, 'link', 'set', 'dev', 'up2', 'down');
  await run(['ip', 'netns', 'add', vmC]);
  await ipv6Off(vmC);
  await ip(h, 'link', 'add', 'name', 'myvm0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vmC);
  await ip(h, 'link', 'set', 'dev', 'myvm0', 'master', 'br0');
  await ip(vmC, 'link', 'set', 'dev', 'lo', 'up');
  await ip(vmC, 'link', 'set', 'dev', 'eth0', 'up');
  await ip(h, 'link', 'set', 'dev', 'myvm0', 'up');
  const out = { ...lab, ns: { ...lab.ns, vmC }, loopPorts: ['up1', 'up2'], hostPorts: [...lab.hostPorts, 'myvm0'] };
  await assertQuiet(out);
  return out;
}

/**
 * kvm lab -> a victim host: up2 deleted, so up1 is the host's only uplink, and a loop elsewhere
 * in the network (a cable plugged back into the switch: veth lp0/lp1, both ends on sw0). A frame
 * from anywhere then circles on the switch and floods every switch port, up1 included.
 * The loop's ports are in the switch namespace: openSwitchLoop breaks it.
 */
export async function victimHost(lab: Lab): Promise<Lab> {
  const sw = lab.ns.sw;
  await ip(lab.ns.host, 'link', 'del', 'dev', 'up2');
  await ip(sw, 'link', 'add', 'name', 'lp0', 'type', 'veth', 'peer', 'name', 'lp1');
  for (const p of ['lp0', 'lp1']) await ip(sw, 'link', 'set', 'dev', p, 'master', 'sw0');
  await ip(sw, 'link', 'set', 'dev', 'lp1', 'up');
  const out: Lab = { ...lab, loopPorts: ['up1'], hostPorts: ['up1', 'vm1', 'mgmt0'] };
  await ip(sw, 'link', 'set', 'dev', 'lp0', 'up');
  await assertQuiet(out);
  return out;
}

/** Break (or close again) the switch's own loop of victimHost. */
export async function setSwitchLoop(lab: Lab, up: boolean): Promise<void> {
  await ip(lab.ns.sw, 'link', 'set', 'dev', 'lp0', up ? 'up' : 'down');
}
