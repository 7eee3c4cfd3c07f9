// The detector's warm-up (warmup.ts) for the forwarding domains that are not a Linux bridge: a
// host's NICs with guests' macvtap devices on them, and an ESXi standard vSwitch. Their rules came
// after the first warm-up (session 19: the macvtap ring judged by frames that come back,
// PortRates.rxRetPps; the ESXi exchange rule, one VM port or a VM's own stream among hot uplinks)
// and ran for the first time in a real storm, interpreted (issue 11: a cold agent must react as a
// warm one). Here each runs on synthetic ticks, on a throwaway state and ports of its own. Pure:
// no clock, no I/O; nothing it touches outlives the call. As in warmup.ts, rates are doubles and
// names are strings made at run time (what the compiler sees in a real storm).
import type { PortPolicy, PortRates, Policy, Role, Verdict } from '../types.js';
import { blankRates } from '../sample/rates.js';
import { portPolicyOf } from '../policy/port-policy.js';
import { ESXI_EXCHANGE_MS, emptyTick, initialDetectorState, step } from './signature.js';

/** A string made at run time, as sources make theirs (a literal is interned: another string type to the compiler). */
export const runtime = (s: string): string => s.split('').join('');

/** Two NICs, each with one guest's macvtap on it (the guest bridges them: a ring through the switch). */
export const WARM_NICS: readonly string[] = ['warm-n0', 'warm-n1'].map(runtime);
export const WARM_TAPS: readonly string[] = ['warm-t0', 'warm-t1'].map(runtime);
/** An ESXi vSwitch: two vmnics, two VM ports (one guest's vNICs, one VM identity). */
export const WARM_VSWITCH = runtime('warm-esx/vSwitch0');
export const WARM_VMNICS: readonly string[] = ['warm-esx/vmnic0', 'warm-esx/vmnic1'].map(runtime);
export const WARM_VNICS: readonly string[] = ['warm-esx/vnic-0', 'warm-esx/vnic-1'].map(runtime);

/** Ticks each synthetic storm of the macvtap host runs (1 ms each); the vSwitch's run ESXI_TICKS. */
const RING_TICKS = 200;
/** At the ESXi source's burst period (15 ms), past ESXI_EXCHANGE_MS: the exchange turns into a loop verdict. */
const ESXI_TICKS = Math.ceil((ESXI_EXCHANGE_MS + 300) / 15);

/** What the storms produced: verdicts by rule, and an ESXi storm's ticks without one. */
export interface DomainWarmUp {
  ring: number;
  guestFlood: number;
  /** Loop verdicts on the vSwitch; of them, those of the one-VM-port storm (past ESXI_EXCHANGE_MS). */
  esxiLoop: number;
  esxiAfterExchange: number;
  /** Ticks of a vSwitch storm, past its first samples, without a verdict (an exchange rule held it back). */
  esxiQuietTicks: number;
}

/** Run the synthetic storms of both kinds of domain; see the top of the file. `portPolicy` supplies the thresholds. */
export function warmUpDomains(policy: Policy, portPolicy: PortPolicy): DomainWarmUp {
  const out: DomainWarmUp = { ring: 0, guestFlood: 0, esxiLoop: 0, esxiAfterExchange: 0, esxiQuietTicks: 0 };
  const f = portPolicy.thresholds.floodPps;
  // A ring under floodPps whose frames come back (judged by returns alone), one over it (by rates,
  // returns counted), and a guest flooding its own frames (its budget, not a ring).
  for (const [pps, fwd, back] of [[f / 4, 1, 0.5], [3 * f, 1, 0.5], [4 * f, 0, 0]] as const) {
    for (const v of macvtapStorm(policy, portPolicy, pps, fwd, back)) {
      if (v.kind !== 'loop') out.guestFlood++;
      else out.ring++;
    }
  }
  // One VM port and both vmnics circling (an exchange, then a loop past ESXI_EXCHANGE_MS), a VM's
  // stream returned by the switch (an exchange throughout), the bridging guest's two vNICs (a loop).
  for (const shape of ['exchange', 'stream', 'loop'] as const) {
    const r = esxiStorm(policy, portPolicy, shape);
    out.esxiLoop += r.loops;
    if (shape === 'exchange') out.esxiAfterExchange += r.loops;
    out.esxiQuietTicks += r.held;
  }
  return out;
}

function port(portPolicy: PortPolicy, name: string, role: Role, rank: number): [string, PortPolicy] {
  return [name, portPolicyOf({ ...portPolicy, name, role, protected: false, dryRun: false, shutRank: rank })];
}

function rates(name: string, bridge: string, mark: (r: PortRates) => void): PortRates {
  const r = blankRates(name, bridge, NaN);
  r.valid = true;
  mark(r);
  return r;
}

/** 1 + a fraction: real intervals and rates are never whole numbers (warmup.ts). */
const jitterOf = (i: number): number => 1 + ((i * 7919) % 13) / 997;

/**
 * tap0's guest forwards (fwd of its send not from its own MAC) `pps` out by nic0 what tap1 on
 * nic1 receives; `back` of nic1's and tap1's receive comes back (the tripwire's count).
 */
function macvtapStorm(policy: Policy, portPolicy: PortPolicy, pps: number, fwd: number, back: number): Verdict[] {
  const names = [WARM_NICS[0]!, WARM_TAPS[0]!, WARM_NICS[1]!, WARM_TAPS[1]!];
  const nicOf = [WARM_NICS[0]!, WARM_NICS[0]!, WARM_NICS[1]!, WARM_NICS[1]!];
  const ports = new Map(names.map((n, i) => port(portPolicy, n, i % 2 ? 'vm' : 'uplink', i)));
  const rs = names.map((n, i) => rates(n, nicOf[i]!, (r) => (r.macvlan = true)));
  const st = initialDetectorState();
  const tick = emptyTick();
  tick.ports = rs;
  const out: Verdict[] = [];
  let tNs = 2e12;
  for (let i = 0; i < RING_TICKS; i++) {
    const j = jitterOf(i);
    tNs += 1e6 * j;
    const p = i < 20 ? 0.5 * j : pps * j; // quiet first: a storm starts
    for (let k = 0; k < rs.length; k++) {
      const r = rs[k]!;
      const inbound = k >= 2; // nic1 and tap1 receive the ring's frames
      r.dtMs = j;
      r.rxPps = inbound ? p : 0.5 * j;
      r.txPps = inbound ? 0.5 * j : p;
      r.floodPps = inbound ? p : 0;
      r.bcastPps = r.floodPps;
      r.rxBps = r.rxPps * 64.5;
      r.rxRetPps = inbound ? p * back : 0;
      // What the guest sends by its device (the packet source counts it on guests' devices only).
      r.txFloodPps = k % 2 ? (inbound ? 0 : p) : NaN;
      r.txFwdPps = k % 2 ? (inbound ? 0 : p * fwd) : NaN;
    }
    tick.tNs = tNs;
    for (const v of step(st, tick, ports, policy).verdicts) out.push(v);
  }
  return out;
}

/** The vSwitch's storms at the ESXi source's period: which ports circle (rx ≈ tx) and which only hear it. */
function esxiStorm(policy: Policy, portPolicy: PortPolicy, shape: 'exchange' | 'stream' | 'loop'): { loops: number; held: number } {
  const names = [...WARM_VMNICS, ...WARM_VNICS];
  const ports = new Map(names.map((n, i) => port(portPolicy, n, i < 2 ? 'uplink' : 'vm', i)));
  // Both vNICs of one VM (PortRates.esxiVmId): the loop shape runs guestPeer's match and its clue.
  const vm = runtime('warm-esx/world 1');
  const vmName = runtime('warm-vm');
  const rs = names.map((n, i) => rates(n, WARM_VSWITCH, (r) => {
    r.esxiVm = i >= 2;
    r.vmSwitch = true;
    if (i >= 2) {
      r.esxiVmId = vm;
      r.esxiVmName = vmName;
    }
  }));
  const st = initialDetectorState();
  const tick = emptyTick();
  tick.ports = rs;
  const f = portPolicy.thresholds.floodPps;
  const pps = shape === 'stream' ? 0.75 * f : shape === 'exchange' ? 1.2 * f : 5 * f;
  let loops = 0;
  let held = 0;
  let tNs = 3e12;
  for (let i = 0; i < ESXI_TICKS; i++) {
    const j = jitterOf(i);
    const dtMs = 15 * j;
    tNs += 1e6 * dtMs;
    const p = i < 3 ? 0.5 * j : pps * j;
    for (let k = 0; k < rs.length; k++) {
      const r = rs[k]!;
      // exchange: vmnics and vnic-0 circle; loop: all four; stream: vnic-0 sends p to both vmnics, each returned by the other.
      const member = k < 2 || (k === 2 && shape !== 'stream') || shape === 'loop';
      const sender = shape === 'stream' && k === 2;
      r.dtMs = dtMs;
      r.rxPps = member || sender ? p : 0.5 * j;
      r.txPps = member ? p * 1.02 : 2 * p;
      r.floodPps = member || sender ? p : 0.25 * j;
      r.bcastPps = r.floodPps;
      r.rxBps = r.rxPps * 64.5;
    }
    tick.tNs = tNs;
    const vs = step(st, tick, ports, policy).verdicts;
    loops += vs.filter((v) => v.kind === 'loop').length;
    // Past the storm's first samples with no verdict: the exchange rule held it back.
    if (vs.length === 0 && i >= 3 + portPolicy.thresholds.holdSamples) held++;
  }
  return { loops, held };
}
