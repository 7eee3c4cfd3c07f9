// Static lint: the host's bridge/bond/OVS layout checked against the policy's roles, before
// anything is switched on. fetchHostNet is the only I/O (argv commands with timeouts); every rule
// is a pure function of the fetched data, tested with captured outputs (test/fixtures/preflight/).
//
// Rules (ids are stable; scripts match on them):
//   bridge-uplinks-no-stp   a Linux bridge holds two or more uplinks directly (not through one
//                           bond) with STP off                                     error/warning
//   ovs-uplinks-no-stp      an OVS bridge with redundant uplink ports, no STP/RSTP; error when
//                           it also drops BPDUs (other_config:forward-bpdu false)  error/warning
//   vm-port-no-bpdu-guard   a guest-facing (role vm) bridge port without an *effective* BPDU
//                           guard                                                   warning
//   vm-peers-bridged        two vm ports of one bridge whose veth peers sit in one bridge of
//                           another namespace: the guest bridges its two vNICs      error
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { runArgv } from '../host/exec.js';
import { resolvePorts } from '../policy/match.js';
import type { Policy, PortPolicy, Role } from '../types.js';
import type { CheckReport, Finding } from './findings.js';
import { parseOvs, type OvsBridge } from './ovs.js';
import {
  mergeBridgeInfo,
  parseBonds,
  parseBridgeLinks,
  parseIpLinks,
  parseNetnsIds,
  type LinkState,
} from './netstate.js';

export type Exec = (argv: readonly string[], timeoutMs: number) => Promise<{ stdout: string }>;

export interface PeerNamespace {
  nsid: number;
  /** null: the namespace has no name (not from `ip netns add`), so it could not be inspected. */
  name: string | null;
  links: LinkState[];
}

/** Everything the rules look at: plain data, JSON-serialisable (fixtures are exactly this). */
export interface HostNet {
  links: LinkState[];
  bonds: string[];
  /** null when ovs-vsctl is not installed (or did not answer: see notes). */
  ovs: OvsBridge[] | null;
  /** Namespaces holding the peers of vm-role veth ports, by netnsid. */
  peers: PeerNamespace[];
  notes: string[];
}

export type Roles = ReadonlyMap<string, Pick<PortPolicy, 'role'>>;

const CMD_TIMEOUT_MS = 3000;
/** Bounds the peer-namespace walk on hosts with thousands of containers. */
const MAX_PEER_NAMESPACES = 64;

/** Is `file` an executable somewhere on PATH? No spawn: ovs-vsctl may be absent, that is normal. */
export function onPath(file: string, path = process.env.PATH ?? ''): boolean {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, file), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Run the commands and parse their output. Never throws for OVS or peer lookups: notes instead. */
export async function fetchHostNet(exec: Exec = runArgv, opts: { ovs?: boolean; roles?: Roles } = {}): Promise<HostNet> {
  const notes: string[] = [];
  const [ipOut, brOut, bondOut] = await Promise.all([
    exec(['ip', '-j', '-d', 'link', 'show'], CMD_TIMEOUT_MS),
    exec(['bridge', '-j', '-d', 'link', 'show'], CMD_TIMEOUT_MS),
    exec(['ip', '-j', '-d', 'link', 'show', 'type', 'bond'], CMD_TIMEOUT_MS),
  ]);
  const links = mergeBridgeInfo(parseIpLinks(ipOut.stdout), parseBridgeLinks(brOut.stdout));
  const bonds = parseBonds(bondOut.stdout);

  let ovs: OvsBridge[] | null = null;
  if (opts.ovs ?? onPath('ovs-vsctl')) {
    try {
      // --timeout: ovs-vsctl waits forever for an ovsdb-server that is not running.
      const list = (t: string) => exec(['ovs-vsctl', '--timeout=2', '--format=json', 'list', t], CMD_TIMEOUT_MS);
      const [b, p, i] = await Promise.all([list('Bridge'), list('Port'), list('Interface')]);
      ovs = parseOvs(b.stdout, p.stdout, i.stdout);
    } catch (err) {
      notes.push(`ovs-vsctl is installed but did not answer (${(err as Error).message.split('\n')[0]}): OVS bridges not checked`);
    }
  }

  // Peers only matter for vm ports (rule vm-peers-bridged); skip the walk when no roles are known.
  const wanted = new Set<number>();
  for (const l of links) if (l.peer && opts.roles?.get(l.name)?.role === 'vm' && l.master) wanted.add(l.peer.netnsid);
  const peers: PeerNamespace[] = [];
  if (wanted.size > 0) {
    const ids = parseNetnsIds((await exec(['ip', '-j', 'netns', 'list-id'], CMD_TIMEOUT_MS)).stdout);
    for (const nsid of [...wanted].sort((a, b) => a - b).slice(0, MAX_PEER_NAMESPACES)) {
      const name = ids.find((x) => x.nsid === nsid)?.name ?? null;
      if (name === null) {
        peers.push({ nsid, name: null, links: [] });
        continue;
      }
      try {
        const r = await exec(['ip', '-n', name, '-j', '-d', 'link', 'show'], CMD_TIMEOUT_MS);
        peers.push({ nsid, name, links: parseIpLinks(r.stdout) });
      } catch (err) {
        notes.push(`peer namespace ${name} (nsid ${nsid}) could not be read: ${(err as Error).message.split('\n')[0]}`);
        peers.push({ nsid, name: null, links: [] });
      }
    }
    if (wanted.size > MAX_PEER_NAMESPACES) notes.push(`only the first ${MAX_PEER_NAMESPACES} peer namespaces were inspected`);
  }
  return { links, bonds, ovs, peers, notes };
}

const plural = (names: readonly string[], one: string, many: string): string => `${names.length === 1 ? one : many} ${names.join(', ')}`;
const roleOf = (roles: Roles, name: string): Role | null => roles.get(name)?.role ?? null;
const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

function bridgesOf(net: HostNet): LinkState[] {
  return net.links.filter((l) => l.kind === 'bridge');
}

function portsOf(net: HostNet, bridge: string): LinkState[] {
  return net.links.filter((l) => l.master === bridge && l.slaveKind === 'bridge');
}

/** (a) Two or more uplinks directly in one Linux bridge, STP off. A bond counts as one port. */
export function ruleBridgeUplinks(net: HostNet, roles: Roles): Finding[] {
  const out: Finding[] = [];
  const bonds = new Set(net.bonds);
  for (const br of bridgesOf(net)) {
    if (br.stpState !== 0) continue;
    const uplinks = portsOf(net, br.name).filter((p) => roleOf(roles, p.name) === 'uplink');
    if (uplinks.length < 2) continue;
    const names = sorted(uplinks.map((u) => u.name));
    const up = names.filter((n) => uplinks.find((u) => u.name === n)?.adminUp);
    const bonded = names.filter((n) => bonds.has(n));
    // Both up: a loop right now if they reach one L2 network (the probe tells). One down: the
    // next `ip link set up` closes it, which is exactly the go-live moment of the story.
    const now = up.length >= 2;
    out.push({
      rule: 'bridge-uplinks-no-stp',
      severity: now ? 'error' : 'warning',
      ports: names,
      what:
        `bridge ${br.name} holds ${names.length} uplinks (${names.join(', ')}) side by side with STP off` +
        (bonded.length > 0 ? ` (${bonded.join(', ')} ${bonded.length === 1 ? 'is a bond' : 'are bonds'}, but not one bond)` : '') +
        (now ? ': if they reach the same L2 network they close a loop' : `: ${names.filter((n) => !up.includes(n)).join(', ')} down now; bringing ${names.length - up.length === 1 ? 'it' : 'them'} up closes a loop if they reach the same L2 network`),
      fix:
        `bond the uplinks and put only the bond in ${br.name} (ip link add bond0 type bond mode active-backup; ip link set ${names[0]} master bond0; ...; ip link set bond0 master ${br.name}), ` +
        `or run STP on ${br.name} (ip link set ${br.name} type bridge stp_state 1), or keep one uplink out of the bridge`,
      evidence: { bridge: br.name, stpState: br.stpState, uplinks: uplinks.map((u) => ({ port: u.name, adminUp: u.adminUp, state: u.portState })) },
    });
  }
  return out;
}

/** (b) OVS: redundant uplink ports (a bond port counts once) without STP/RSTP. */
export function ruleOvsUplinks(net: HostNet, roles: Roles): Finding[] {
  const out: Finding[] = [];
  for (const br of net.ovs ?? []) {
    if (br.stp || br.rstp) continue;
    // A port is an uplink if its own name or any of its interfaces' names has role uplink.
    const uplinks = br.ports.filter((p) => [p.name, ...p.interfaces].some((n) => roleOf(roles, n) === 'uplink'));
    if (uplinks.length < 2) continue;
    const names = sorted(uplinks.map((p) => p.name));
    out.push({
      rule: 'ovs-uplinks-no-stp',
      severity: br.forwardBpdu ? 'warning' : 'error',
      ports: names,
      what: br.forwardBpdu
        ? `OVS bridge ${br.name} has ${names.length} uplink ports (${names.join(', ')}) and no STP/RSTP; it forwards BPDUs (forward-bpdu=true), so only the upstream switches' STP can block the loop`
        : `OVS bridge ${br.name} has ${names.length} uplink ports (${names.join(', ')}), no STP/RSTP, and drops BPDUs (forward-bpdu false): a loop through them is invisible to upstream STP`,
      fix: `make the uplinks one OVS bond (ovs-vsctl add-bond ${br.name} bond0 ${names.join(' ')}), or enable RSTP (ovs-vsctl set Bridge ${br.name} rstp_enable=true)${br.forwardBpdu ? '' : ', or at least let upstream STP see the loop (ovs-vsctl set Bridge ' + br.name + ' other_config:forward-bpdu=true)'}`,
      evidence: { bridge: br.name, stp: br.stp, rstp: br.rstp, forwardBpdu: br.forwardBpdu, uplinks: uplinks.map((p) => ({ port: p.name, interfaces: p.interfaces, bondMode: p.bondMode })) },
    });
  }
  return out;
}

/**
 * (c) Guest-facing ports without an effective BPDU guard. Measured on this kernel: the Linux
 * bridge acts on `guard on` only when it runs kernel STP (stp_state 1); with STP off a BPDU from
 * the guest is flooded like any frame and the port stays forwarding. So "guard on, STP off" is
 * flagged too. With user-space STP (stp_state 2) the daemon (mstpd) owns BPDU guard: not judged.
 */
export function ruleBpduGuard(net: HostNet, roles: Roles): Finding[] {
  const out: Finding[] = [];
  for (const br of bridgesOf(net)) {
    if (br.stpState === 2) continue;
    const vmPorts = portsOf(net, br.name).filter((p) => roleOf(roles, p.name) === 'vm');
    const noGuard = sorted(vmPorts.filter((p) => p.bpduGuard !== true).map((p) => p.name));
    const inert = br.stpState === 0 ? sorted(vmPorts.filter((p) => p.bpduGuard === true).map((p) => p.name)) : [];
    if (noGuard.length > 0) {
      out.push({
        rule: 'vm-port-no-bpdu-guard',
        severity: 'warning',
        ports: noGuard,
        what: `${plural(noGuard, 'guest port', 'guest ports')} of bridge ${br.name} ${noGuard.length === 1 ? 'has' : 'have'} BPDU guard off: a guest that bridges its vNICs is not cut off when the host's BPDU comes back`,
        fix: `${noGuard.map((p) => `bridge link set dev ${p} guard on`).join('; ')}${br.stpState === 0 ? `, and run STP on ${br.name} (ip link set ${br.name} type bridge stp_state 1): the guard acts only under kernel STP` : ''}`,
        evidence: { bridge: br.name, stpState: br.stpState, ports: vmPorts.map((p) => ({ port: p.name, guard: p.bpduGuard })) },
      });
    }
    if (inert.length > 0) {
      out.push({
        rule: 'vm-port-no-bpdu-guard',
        severity: 'warning',
        ports: inert,
        what: `${plural(inert, 'guest port', 'guest ports')} ${inert.length === 1 ? 'has' : 'have'} BPDU guard on, but bridge ${br.name} runs no STP, so the guard never fires (BPDUs are flooded like data)`,
        fix: `run kernel STP on ${br.name} (ip link set ${br.name} type bridge stp_state 1)`,
        evidence: { bridge: br.name, stpState: br.stpState, ports: inert },
      });
    }
  }
  return out;
}

/**
 * (d) Two vm ports of one host bridge whose veth peers are enslaved to one bridge in another
 * namespace: the ESX story, a guest bridging its two vNICs. Only visible where peers are veths in
 * named namespaces (the lab, containers); a real VM's tap device has no peer to inspect.
 */
export function ruleVmPeersBridged(net: HostNet, roles: Roles): Finding[] {
  const out: Finding[] = [];
  const nsById = new Map(net.peers.map((p) => [p.nsid, p]));
  for (const br of bridgesOf(net)) {
    const groups = new Map<string, { ns: string; peerBridge: string; ports: Array<{ port: string; peer: string }> }>();
    for (const p of portsOf(net, br.name)) {
      if (roleOf(roles, p.name) !== 'vm' || !p.peer) continue;
      const ns = nsById.get(p.peer.netnsid);
      if (!ns || ns.name === null) continue;
      const peer = ns.links.find((l) => l.ifindex === p.peer?.ifindex);
      if (!peer || !peer.master) continue;
      const peerBridge = ns.links.find((l) => l.name === peer.master);
      if (!peerBridge || peerBridge.kind !== 'bridge') continue;
      const key = `${ns.nsid}/${peer.master}`;
      const g = groups.get(key) ?? { ns: ns.name, peerBridge: peer.master, ports: [] };
      g.ports.push({ port: p.name, peer: peer.name });
      groups.set(key, g);
    }
    for (const g of groups.values()) {
      if (g.ports.length < 2) continue;
      const names = sorted(g.ports.map((x) => x.port));
      out.push({
        rule: 'vm-peers-bridged',
        severity: 'error',
        ports: names,
        what: `ports ${names.join(', ')} of bridge ${br.name} lead into one bridge ${g.peerBridge} in namespace ${g.ns} (peers ${g.ports.map((x) => x.peer).join(', ')}): the guest bridges its vNICs and closes a loop through ${br.name}`,
        fix: `take one vNIC out of the guest's bridge ${g.peerBridge} (or bond them in the guest), or detach one of ${names.join(', ')} from ${br.name}; run STP with BPDU guard on ${br.name} as a safety net`,
        evidence: { bridge: br.name, peerNamespace: g.ns, peerBridge: g.peerBridge, pairs: g.ports },
      });
    }
  }
  return out;
}

export const LINT_RULES = [ruleBridgeUplinks, ruleOvsUplinks, ruleBpduGuard, ruleVmPeersBridged] as const;

/** Every rule over one snapshot. Pure. */
export function lintHostNet(net: HostNet, roles: Roles): CheckReport {
  const findings = LINT_RULES.flatMap((r) => r(net, roles));
  const notes = [...net.notes];
  if (net.ovs === null && !net.notes.some((n) => n.startsWith('ovs-vsctl'))) notes.push('ovs-vsctl not installed: no OVS bridges checked');
  for (const p of net.peers) {
    if (p.name === null) notes.push(`peer namespace nsid ${p.nsid} has no name: vm-peers-bridged not checked for its ports`);
  }
  return { findings, notes };
}

/** Roles of every link (and OVS interface) of the snapshot, from the policy. */
export function rolesFor(policy: Policy, net: Pick<HostNet, 'links' | 'ovs'>): Map<string, PortPolicy> {
  const names = new Set(net.links.map((l) => l.name));
  for (const b of net.ovs ?? []) for (const p of b.ports) for (const n of [p.name, ...p.interfaces]) names.add(n);
  return resolvePorts(policy, [...names]);
}

/** Fetch, then lint: the I/O edge used by the CLI. */
export async function runLint(policy: Policy, exec: Exec = runArgv): Promise<{ report: CheckReport; net: HostNet }> {
  // Roles first (from a link list without peers), so the peer walk only visits what matters.
  const first = parseIpLinks((await exec(['ip', '-j', '-d', 'link', 'show'], CMD_TIMEOUT_MS)).stdout);
  const roles0 = resolvePorts(policy, first.map((l) => l.name));
  const net = await fetchHostNet(exec, { roles: roles0 });
  return { report: lintHostNet(net, rolesFor(policy, net)), net };
}
