// Loop shapes an operator meets that the kvm/esx labs do not show, built on the kvm lab:
//  - two bridges: br0 with uplink up1, br1 with uplink up2 (both into the same switch), and a VM
//    (namespace vmB) bridging its vNIC vmb0 on br0 with its vNIC vmb1 on br1. Per bridge only one
//    uplink and one VM port carry the loop. Or the same two bridges joined by a veth pair ln0/ln1.
//  - a victim host: one uplink only, and a storm arriving from a loop elsewhere in the network.
// Quiet-lab rules as in topology.ts: IPv6 off in a new namespace before its links exist, bridges
// without STP or multicast snooping, loop members up last, then assertQuiet.
import { run } from './exec.js';
import { assertQuiet, type Lab } from './topology.js';

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

/** kvm lab -> two bridges joined by a VM bridging its two vNICs (see the file comment). */
export async function splitByVm(lab: Lab): Promise<Lab> {
  const h = lab.ns.host;
  const vmB = `${lab.prefix}vmB`;
  await secondBridge(lab);
  await run(['ip', 'netns', 'add', vmB]);
  for (const k of ['all', 'default']) await run(['ip', 'netns', 'exec', vmB, 'sysctl', '-q', '-w', `net.ipv6.conf.${k}.disable_ipv6=1`]);
  await ip(vmB, 'link', 'add', 'name', 'vbr', ...bridgeArgs);
  for (const [port, peer, br] of [['vmb0', 'eth0', 'br0'], ['vmb1', 'eth1', 'br1']] as const) {
    await ip(h, 'link', 'add', 'name', port, 'type', 'veth', 'peer', 'name', peer, 'netns', vmB);
    await ip(h, 'link', 'set', 'dev', port, 'master', br);
    await ip(vmB, 'link', 'set', 'dev', peer, 'master', 'vbr');
    await ip(vmB, 'link', 'set', 'dev', peer, 'up');
  }
  await ip(vmB, 'link', 'set', 'dev', 'lo', 'up');
  await ip(vmB, 'link', 'set', 'dev', 'vbr', 'up');
  return closeSplit(lab, ['vmb0', 'vmb1']);
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
