// Lab topologies in network namespaces: a hypervisor ("host") bridged twice to an upstream
// switch (kvm), or a vSwitch with a VM that bridges its two vNICs (esx). The plan is pure data
// (labPlan/planCommands); buildLab only runs it, then proves the lab is quiet.
//
// Quiet-lab rules (../shared/LAB-FACTS.md): a single stray frame circles a loop forever, so
// IPv6 is disabled in every namespace BEFORE links exist (no ND/MLD), bridges run without
// STP and without multicast snooping (a snooping bridge sends its own IGMP report), and loop
// members carry no addresses (an IPv4 address sends IGMPv3 reports).
import { run } from './exec.js';
import { readLinkStats, statsDelta } from './counters.js';
import { assertIfName, assertNetns, assertPrefix } from './names.js';

export type Shape = 'kvm' | 'esx';

export interface LabNamespaces {
  host: string;
  sw: string;
  prod: string;
  vm1: string;
  mgmt: string;
  vmA?: string;
}

export interface Lab {
  shape: Shape;
  prefix: string;
  ns: LabNamespaces;
  bridge: 'br0' | 'vsw0';
  /** Host-side ports that close the loop (kvm: up1, up2; esx: vmA1, vmA2). */
  loopPorts: string[];
  /** How many of loopPorts up close the loop: 2 when absent; 1 for a hairpin port looping alone. */
  loopMinMembers?: number;
  /** Every port enslaved to the host bridge. */
  hostPorts: string[];
}

export interface HostOnlyLab {
  prefix: string;
  ns: { host: string; vms?: string };
  bridge: 'br0';
  /** Bridge ports p0..pN-1 (peers q0..qN-1 unenslaved, in the host namespace or in ns.vms). */
  ports: string[];
}

interface BridgeSpec {
  ns: string;
  name: string;
}

interface VethSpec {
  ns: string;
  name: string;
  master?: string;
  peerNs: string;
  peer: string;
  peerMaster?: string;
}

export interface LabPlan {
  lab: Lab;
  namespaces: string[];
  bridges: BridgeSpec[];
  veths: VethSpec[];
}

const QUIET_WINDOW_MS = 300;
const MAX_HOST_ONLY_PORTS = 1000;

/** Pure: namespaces, bridges and veth pairs of a lab shape. */
export function labPlan(shape: Shape, prefix: string): LabPlan {
  assertPrefix(prefix);
  const ns: LabNamespaces = {
    host: `${prefix}host`,
    sw: `${prefix}sw`,
    prod: `${prefix}prod`,
    vm1: `${prefix}vm1`,
    mgmt: `${prefix}mgmt`,
  };
  const bridges: BridgeSpec[] = [{ ns: ns.sw, name: 'sw0' }];
  const veths: VethSpec[] = [{ ns: ns.prod, name: 'eth0', peerNs: ns.sw, peer: 'swp', peerMaster: 'sw0' }];
  let bridge: Lab['bridge'];
  let loopPorts: string[];
  let hostPorts: string[];
  if (shape === 'kvm') {
    bridge = 'br0';
    bridges.push({ ns: ns.host, name: bridge });
    veths.push(
      { ns: ns.host, name: 'up1', master: bridge, peerNs: ns.sw, peer: 'sw1', peerMaster: 'sw0' },
      { ns: ns.host, name: 'up2', master: bridge, peerNs: ns.sw, peer: 'sw2', peerMaster: 'sw0' },
    );
    loopPorts = ['up1', 'up2'];
    hostPorts = ['up1', 'up2', 'vm1', 'mgmt0'];
  } else if (shape === 'esx') {
    bridge = 'vsw0';
    ns.vmA = `${prefix}vmA`;
    bridges.push({ ns: ns.host, name: bridge }, { ns: ns.vmA, name: 'vbr' });
    veths.push(
      { ns: ns.host, name: 'up1', master: bridge, peerNs: ns.sw, peer: 'sw1', peerMaster: 'sw0' },
      { ns: ns.host, name: 'vmA1', master: bridge, peerNs: ns.vmA, peer: 'eth0', peerMaster: 'vbr' },
      { ns: ns.host, name: 'vmA2', master: bridge, peerNs: ns.vmA, peer: 'eth1', peerMaster: 'vbr' },
    );
    loopPorts = ['vmA1', 'vmA2'];
    hostPorts = ['up1', 'vmA1', 'vmA2', 'vm1', 'mgmt0'];
  } else {
    throw new Error(`unknown lab shape ${JSON.stringify(shape)}`);
  }
  veths.push(
    { ns: ns.host, name: 'vm1', master: bridge, peerNs: ns.vm1, peer: 'eth0' },
    { ns: ns.host, name: 'mgmt0', master: bridge, peerNs: ns.mgmt, peer: 'eth0' },
  );
  const namespaces = Object.values(ns).filter((n): n is string => typeof n === 'string');
  for (const n of namespaces) assertNetns(n);
  for (const v of veths) (assertIfName(v.name), assertIfName(v.peer));
  return { lab: { shape, prefix, ns, bridge, loopPorts, hostPorts }, namespaces, bridges, veths };
}

function sysctlArgv(netns: string, key: string): string[] {
  return ['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=1`];
}

/** IPv6 off in a lab namespace (all and default), so no router solicitation or DAD frame joins a storm's count. */
export async function ipv6Off(netns: string): Promise<void> {
  for (const k of ['all', 'default']) await run(sysctlArgv(assertNetns(netns), `net.ipv6.conf.${k}.disable_ipv6`));
}

function bridgeAddArgv(b: BridgeSpec): string[] {
  return ['ip', '-n', b.ns, 'link', 'add', 'name', b.name, 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0'];
}

function linkSetArgv(netns: string, dev: string, ...what: string[]): string[] {
  return ['ip', '-n', netns, 'link', 'set', 'dev', dev, ...what];
}

export interface BuildOptions {
  /**
   * Build the host side in the network namespace of this process (e.g. a booted container's
   * PID 1) instead of a new one: `ip netns attach` names it `${prefix}host`, and the agent
   * running there sees the lab's ports as its own. Teardown deletes the links and the name.
   */
  hostNetnsOfPid?: number;
}

/**
 * Pure: the commands that build a plan, in order. Loop members come up last so that the loop
 * closes only once everything else is in place.
 */
export function planCommands(plan: LabPlan, opts: BuildOptions = {}): string[][] {
  const cmds: string[][] = [];
  for (const n of plan.namespaces) {
    // The host side may be a namespace that already exists (a container's), given a name here.
    if (n === plan.lab.ns.host && opts.hostNetnsOfPid !== undefined) cmds.push(['ip', 'netns', 'attach', n, String(opts.hostNetnsOfPid)]);
    else cmds.push(['ip', 'netns', 'add', n]);
  }
  for (const n of plan.namespaces) {
    // Before any link exists: new devices copy `default`, `all` covers the rest.
    cmds.push(sysctlArgv(n, 'net.ipv6.conf.all.disable_ipv6'), sysctlArgv(n, 'net.ipv6.conf.default.disable_ipv6'));
  }
  for (const b of plan.bridges) cmds.push(bridgeAddArgv(b));
  for (const v of plan.veths) {
    cmds.push(['ip', '-n', v.ns, 'link', 'add', 'name', v.name, 'type', 'veth', 'peer', 'name', v.peer, 'netns', v.peerNs]);
    if (v.master) cmds.push(linkSetArgv(v.ns, v.name, 'master', v.master));
    if (v.peerMaster) cmds.push(linkSetArgv(v.peerNs, v.peer, 'master', v.peerMaster));
  }
  // lo carries nothing into the loop; the agent may want it for a loopback metrics endpoint.
  for (const n of plan.namespaces) cmds.push(linkSetArgv(n, 'lo', 'up'));
  for (const b of plan.bridges) cmds.push(linkSetArgv(b.ns, b.name, 'up'));
  const loop = new Set(plan.lab.loopPorts);
  const last: string[][] = [];
  for (const v of plan.veths) {
    cmds.push(linkSetArgv(v.peerNs, v.peer, 'up'));
    const up = linkSetArgv(v.ns, v.name, 'up');
    if (v.ns === plan.lab.ns.host && loop.has(v.name)) last.push(up);
    else cmds.push(up);
  }
  return [...cmds, ...last];
}

/** Pure: namespace names from `ip netns list` ("name" or "name (id: N)" per line). */
export function parseNetnsList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export async function listNamespaces(prefix: string): Promise<string[]> {
  assertPrefix(prefix);
  const { stdout } = await run(['ip', 'netns', 'list']);
  return parseNetnsList(stdout).filter((n) => n.startsWith(prefix));
}

/**
 * Throw "lab not quiet" if any host port moved a frame during windowMs. Any frame now means a
 * storm that started on its own, and then nothing can be timed.
 */
export async function assertQuiet(lab: Lab, windowMs = QUIET_WINDOW_MS): Promise<void> {
  const before = await readLinkStats(lab.ns.host);
  await sleep(windowMs);
  const after = await readLinkStats(lab.ns.host);
  const delta = statsDelta(before, after, lab.hostPorts);
  const moved = Object.entries(delta).filter(([, d]) => d.rx !== 0 || d.tx !== 0);
  if (moved.length > 0) {
    throw new Error(`lab not quiet: counters moved in ${windowMs} ms: ${JSON.stringify(delta)}`);
  }
}

export async function buildLab(shape: Shape, prefix: string, opts: BuildOptions = {}): Promise<Lab> {
  const plan = labPlan(shape, prefix);
  if (opts.hostNetnsOfPid !== undefined && !(Number.isInteger(opts.hostNetnsOfPid) && opts.hostNetnsOfPid > 1)) {
    throw new Error(`hostNetnsOfPid must be a process id > 1, got ${opts.hostNetnsOfPid}`);
  }
  // Leftovers of an earlier run with this prefix would make `ip netns add` fail.
  await teardownLab(prefix);
  try {
    for (const argv of planCommands(plan, opts)) await run(argv);
    await assertQuiet(plan.lab);
    return plan.lab;
  } catch (err) {
    // A half-built or noisy lab may already be storming: never leave it behind.
    await teardownLab(prefix).catch(() => undefined);
    throw err;
  }
}

/** One namespace `${prefix}host` with bridge br0 and nPorts veth pairs p_i (enslaved) / q_i. No loop. */
/**
 * opts.peersNs puts the peers q0..qN-1 in their own namespace `${prefix}vms`, as VM interfaces
 * are on a real host: a broadcast flooded out of the bridge is then not received again by N
 * peers in the agent's own namespace (which its namespace-wide tripwire would count N times).
 */
export async function buildHostOnly(prefix: string, nPorts: number, opts: { peersNs?: boolean } = {}): Promise<HostOnlyLab> {
  assertPrefix(prefix);
  if (!Number.isInteger(nPorts) || nPorts < 1 || nPorts > MAX_HOST_ONLY_PORTS) {
    throw new Error(`nPorts must be an integer in 1..${MAX_HOST_ONLY_PORTS}, got ${nPorts}`);
  }
  const host = assertNetns(`${prefix}host`);
  const ports = Array.from({ length: nPorts }, (_, i) => `p${i}`);
  await teardownLab(prefix);
  try {
    await run(['ip', 'netns', 'add', host]);
    await ipv6Off(host);
    // One `ip -batch` instead of 4N spawns: hundreds of ports build in well under a second.
    const lines = ['link add name br0 type bridge stp_state 0 mcast_snooping 0', 'link set dev br0 up'];
    ports.forEach((p, i) => {
      lines.push(`link add name ${p} type veth peer name q${i}`, `link set dev ${p} master br0`);
      lines.push(`link set dev q${i} up`, `link set dev ${p} up`);
    });
    await run(['ip', '-n', host, '-batch', '-'], { input: `${lines.join('\n')}\n`, timeoutMs: 30_000 + nPorts * 100 });
    if (!opts.peersNs) return { prefix, ns: { host }, bridge: 'br0', ports };
    const vms = assertNetns(`${prefix}vms`);
    await run(['ip', 'netns', 'add', vms]);
    await ipv6Off(vms);
    const moves = ports.map((_, i) => `link set dev q${i} netns ${vms}`);
    await run(['ip', '-n', host, '-batch', '-'], { input: `${moves.join('\n')}\n`, timeoutMs: 30_000 + nPorts * 100 });
    const ups = ports.map((_, i) => `link set dev q${i} up`);
    await run(['ip', '-n', vms, '-batch', '-'], { input: `${ups.join('\n')}\n`, timeoutMs: 30_000 + nPorts * 100 });
    return { prefix, ns: { host, vms }, bridge: 'br0', ports };
  } catch (err) {
    await teardownLab(prefix).catch(() => undefined);
    throw err;
  }
}

/**
 * Delete every namespace whose name starts with prefix. Idempotent, and safe when nothing
 * exists. Links are deleted first: a namespace pinned by a process that is still running
 * outlives `ip netns del`, and so would its storm.
 */
export async function teardownLab(prefix: string): Promise<string[]> {
  const names = await listNamespaces(prefix);
  for (const n of names) {
    const stats = await readLinkStats(n).catch(() => new Map());
    const lines = [...stats.keys()].filter((i) => i !== 'lo').map((i) => `link del dev ${assertIfName(i)}`);
    // -force: a veth whose peer was deleted a line earlier is already gone; keep going.
    if (lines.length > 0) {
      await run(['ip', '-force', '-n', n, '-batch', '-'], { input: `${lines.join('\n')}\n`, timeoutMs: 30_000 }).catch(
        () => undefined,
      );
    }
  }
  for (const n of names) {
    // Lab processes (observers, agents) left inside would pin the namespace; they were
    // started inside our own namespace, so ending them by pid is part of tearing it down.
    const { stdout } = await run(['ip', 'netns', 'pids', n]).catch(() => ({ stdout: '' }));
    for (const pid of stdout.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await run(['ip', 'netns', 'del', n]).catch(async (err: unknown) => {
      // A concurrent teardown may have won the race; only a namespace that still exists is an error.
      if ((await listNamespaces(prefix)).includes(n)) throw err;
    });
  }
  return names;
}

export function linkUp(lab: Lab, port: string): Promise<void> {
  return run(linkSetArgv(lab.ns.host, assertIfName(port), 'up')).then(() => undefined);
}

export function linkDown(lab: Lab, port: string): Promise<void> {
  return run(linkSetArgv(lab.ns.host, assertIfName(port), 'down')).then(() => undefined);
}

/** The fix a human would make: down the second loop member (kvm up2, esx vmA2). */
export function breakLoopByHand(lab: Lab): Promise<void> {
  return linkDown(lab, secondLoopPort(lab));
}

/** Bring the second loop member back: the loop is closed again (a new frame will storm). */
export function closeLoop(lab: Lab): Promise<void> {
  return linkUp(lab, secondLoopPort(lab));
}

function secondLoopPort(lab: Lab): string {
  const p = lab.loopPorts[1];
  if (!p) throw new Error('lab has no second loop port');
  return p;
}

/**
 * Give prod, vm1 and mgmt addresses in 10.77.0.0/24. Not done by default: addresses make
 * IGMP/ARP noise, and in a closed loop that noise is a storm. IFF_MULTICAST is cleared first
 * so that no IGMP report can leave these interfaces, whatever group a process joins. (Measured:
 * the address alone sent nothing in 1.5 s here; any ARP, e.g. a ping, will still start a storm.)
 */
export async function addAddresses(lab: Lab): Promise<Record<'prod' | 'vm1' | 'mgmt', string>> {
  const addrs = { prod: '10.77.0.1', vm1: '10.77.0.2', mgmt: '10.77.0.3' } as const;
  for (const [role, ip] of Object.entries(addrs) as Array<[keyof typeof addrs, string]>) {
    const n = lab.ns[role];
    await run(['ip', '-n', n, 'link', 'set', 'dev', 'eth0', 'multicast', 'off']);
    await run(['ip', '-n', n, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  }
  return addrs;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
