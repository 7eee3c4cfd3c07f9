// ESXi ports as the detector and the breaker see them. Pure: inventory + policy in, plain data out.
//
// Names: `<host>/<vmnicN>` for physical NICs, `<host>/vnic-<mac without colons>` for a VM's
// virtual NIC. A '/' can never appear in a Linux interface name, so these never collide with
// local ports; the MAC is what stays the same across a VM's power cycles and a vNIC's
// disconnect/reconnect (the vSwitch port ID does not). The bridge is `<host>/<vSwitch>`: a loop
// is two or more hot ports of one vSwitch, exactly as on a Linux bridge.
import type { Counters, EsxiHostPolicy, Policy, PortPolicy, Role } from '../types.js';
import type { EsxInventory } from './inventory.js';
import { bridgingNics, guestPeerNics } from './l2.js';
import type { StreamItem, Section } from './stream.js';
import { BROADCAST_MIN_FRAMES, broadcastStatus, broadcastUsable, parseNicStats } from './nic-stats.js';
import { parseVsishPnicStats } from './vsish.js';
import { parsePortStats } from './port-stats.js';
import { ok, fail, type Result } from './result.js';
import { esxiHostThresholds } from '../policy/match.js';
import { portPolicyOf } from '../policy/port-policy.js';

export interface EsxPort {
  name: string;
  kind: 'nic' | 'port';
  /** vmnic name, or the vSwitch port ID (digits) for a VM port. */
  id: string;
  bridge: string | null;
  policy: PortPolicy;
  /** VM ports only. */
  vm?: string;
  /**
   * VM ports only: the VM's World ID (`esxcli network vm list`, the id `vm port list -w` took),
   * null when not known. With the host's name it is the VM's identity in the rates (vmIdOf).
   */
  worldId?: string | null;
  /**
   * VM ports only: why it is watched. 'portgroup': on a port group the policy names.
   * 'bridging-vm': its VM has another vNIC in the same L2 (watchBridgingVms), so the guest can
   * close a loop through the vSwitch, and that loop is cut best at this vNIC.
   * 'guest-peer': its VM has a vNIC on a watched port group and this one reaches the physical
   * switch by another vSwitch or VLAN (watchBridgingVms, l2.ts guestPeerNics): a guest bridging
   * the two is told from the VM's exchange only with both read.
   */
  watched?: 'portgroup' | 'bridging-vm' | 'guest-peer';
  portgroup?: string;
  mac?: string;
}

export const nicPortName = (host: string, nic: string): string => `${host}/${nic}`;
export const vnicPortName = (host: string, mac: string): string => `${host}/vnic-${mac.toLowerCase().replace(/:/g, '')}`;

/**
 * The identity of a VM port's VM in PortRates.esxiVmId: by World ID (unique among a host's
 * running VMs, where names may repeat), by name where the World ID is not known; '' for a vmnic.
 */
export function vmIdOf(host: string, p: Pick<EsxPort, 'kind' | 'vm' | 'worldId'>): string {
  if (p.kind !== 'port') return '';
  if (p.worldId) return `${host}/world ${p.worldId}`;
  return p.vm ? `${host}/vm ${p.vm}` : '';
}

/** The MAC a vNIC port name carries (`vnic-000c295ba000` -> `00:0c:29:5b:a0:00`), or null. */
export function macOfVnicPort(local: string): string | null {
  const m = /^vnic-([0-9a-f]{12})$/.exec(local);
  return m ? m[1]!.match(/../g)!.join(':') : null;
}

/** Is this an ESXi port name, and of which host? */
export function esxHostOf(port: string): string | null {
  const i = port.indexOf('/');
  return i > 0 ? port.slice(0, i) : null;
}

function portPolicy(policy: Policy, host: EsxiHostPolicy, name: string, role: Role, prot: boolean, index: number): PortPolicy {
  const order = policy.breaker.shutOrder.indexOf(role);
  return portPolicyOf({
    name,
    role,
    protected: prot,
    shutRank: order < 0 ? Infinity : order * 1000 + index,
    thresholds: esxiHostThresholds(policy, host),
    rule: -1,
    dryRun: policy.dryRun,
    // Over SSH there is no automatic probing: a tripped ESXi port comes back by a human's hand.
    recovery: { mode: 'manual', cooldownMs: 0, probeMs: 0, backoff: 1, maxTries: 1 },
    // A shut shows in the counters only after the block that straddles it and one more.
    settleMs: 3 * host.sampleMs,
  });
}

/**
 * The ports of one host to watch: the policy's vmnics that the host lists, the vNICs on the
 * policy's port groups, and (watchBridgingVms) the vNICs of every VM with two vNICs in one L2.
 * A disconnected vNIC is listed (so it can be restored) but not streamed. What the policy names
 * but the host does not have is returned in `missing` (said in status and the log, never watched).
 */
export function watchedPorts(policy: Policy, host: EsxiHostPolicy, inv: EsxInventory): { ports: EsxPort[]; missing: string[] } {
  const ports: EsxPort[] = [];
  const missing: string[] = [];
  const hostNics = new Set(inv.nics.map((n) => n.name));
  const bridgeOfNic = new Map<string, string>();
  for (const vs of inv.vswitches) for (const u of vs.uplinks) bridgeOfNic.set(u, `${host.name}/${vs.name}`);
  host.vmnics.forEach((v, i) => {
    if (!hostNics.has(v.name)) {
      missing.push(`${v.name} (not in esxcli network nic list)`);
      return;
    }
    const name = nicPortName(host.name, v.name);
    ports.push({ name, kind: 'nic', id: v.name, bridge: bridgeOfNic.get(v.name) ?? null, policy: portPolicy(policy, host, name, v.role, v.protected, i) });
  });
  const hostPgs = new Set(inv.portgroups.map((p) => p.name));
  for (const pg of host.portgroups) if (!hostPgs.has(pg)) missing.push(`port group ${pg} (not in portgroup list)`);
  const watchedPgs = new Set(host.portgroups);
  const protectedPgs = new Set(host.protectedPortgroups);
  let i = host.vmnics.length;
  for (const vm of inv.vms) {
    const bridging = host.watchBridgingVms ? new Set(bridgingNics(inv, vm)) : null;
    const peers = host.watchBridgingVms ? new Set(guestPeerNics(inv, vm, (n) => watchedPgs.has(n.portgroup))) : null;
    for (const n of vm.nics) {
      const why = watchedPgs.has(n.portgroup) ? 'portgroup' : bridging?.has(n) ? 'bridging-vm' : peers?.has(n) ? 'guest-peer' : null;
      if (why === null) continue;
      const name = vnicPortName(host.name, n.mac);
      // A disconnected vNIC has no vSwitch port: listed (so it can be restored), not streamed.
      ports.push({
        name,
        kind: 'port',
        id: n.portId === null || n.connected === false ? '' : String(n.portId),
        bridge: `${host.name}/${n.vswitch}`,
        policy: portPolicy(policy, host, name, 'vm', protectedPgs.has(n.portgroup), i++),
        vm: vm.name,
        worldId: vm.worldId,
        portgroup: n.portgroup,
        mac: n.mac,
        watched: why,
      });
    }
  }
  return { ports, missing };
}

/** What the stream runs for each port: vsish (fast path) or esxcli for NICs, port stats for vNICs. */
export function streamItems(host: EsxiHostPolicy, ports: readonly EsxPort[]): StreamItem[] {
  return ports.filter((p) => p.id !== '').map((p) =>
    p.kind === 'nic'
      ? { kind: 'nic', id: p.id, op: host.counters === 'vsish' ? { op: 'vsish-pnic-stats', nic: p.id } : { op: 'nic-stats', nic: p.id } }
      : { kind: 'port', id: p.id, op: { op: 'port-stats', portId: p.id } },
  );
}

/** The raw counters one stream section holds (cumulative, as the host prints them). */
export interface RawCounters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  rxBroadcast: number;
  rxMulticast: number;
  txBroadcast: number;
  txMulticast: number;
}

export function sectionCounters(s: Section, counters: EsxiHostPolicy['counters']): Result<RawCounters> {
  if (s.rc !== 0) return fail(`exit status ${s.rc ?? 'missing'}: ${s.text.trim().split('\n').slice(-1)[0] ?? ''}`);
  const r = s.kind === 'port' ? parsePortStats(s.text) : counters === 'vsish' ? parseVsishPnicStats(s.text) : parseNicStats(s.text);
  if (!r.ok) return r;
  const v = r.value;
  return ok({ rxPackets: v.rxPackets, txPackets: v.txPackets, rxBytes: v.rxBytes, rxBroadcast: v.rxBroadcast, rxMulticast: v.rxMulticast, txBroadcast: v.txBroadcast, txMulticast: v.txMulticast });
}

/** Per port: can its rx broadcast counter be trusted? Decided once it has moved; until then re-judged. */
export interface BroadcastJudgement {
  usable: boolean;
  settled: boolean;
  /** broadcastStatus() when it was made: re-judged only when that changes. */
  status: 'reported' | 'absent' | 'unknown';
  reason: string;
}

export function judgeBroadcast(prev: BroadcastJudgement | undefined, raw: RawCounters): BroadcastJudgement {
  if (prev?.settled) return prev;
  // Called per sample (66/s per port with the fuse): while the status stays, the judgement (and
  // its sentence, logged when it changes) stays the same object.
  const status = broadcastStatus(raw);
  if (prev && prev.status === status) return prev;
  const c = broadcastUsable([raw]);
  if (c.usable) return { usable: true, settled: true, status, reason: c.reason };
  // A dead broadcast counter must not hide a storm: rate on every received frame instead
  // (thresholds.rxPps), which a loop storm crosses as surely as the flood threshold.
  // Not yet decided: no frame count in the sentence, which stays until the status changes.
  const why = status === 'unknown' ? `rx broadcast still 0 after fewer than ${BROADCAST_MIN_FRAMES} frames` : c.reason.replace(/; rating on .*$/, '');
  return { usable: false, settled: false, status, reason: `${why}; judging on total rx packets (rxPps) instead` };
}

/** Fill a Counters from raw ones as the judgement says (NaN = unknown: the detector rates rx total). */
export function toCounters(raw: RawCounters, j: BroadcastJudgement, out: Counters): Counters {
  out.rxPackets = raw.rxPackets;
  out.txPackets = raw.txPackets;
  out.rxBytes = raw.rxBytes;
  out.rxBroadcast = j.usable ? raw.rxBroadcast : NaN;
  out.rxMulticast = j.usable && Number.isFinite(raw.rxMulticast) ? raw.rxMulticast : NaN;
  out.ok = Number.isFinite(raw.rxPackets) && Number.isFinite(raw.txPackets) && Number.isFinite(raw.rxBytes);
  return out;
}
