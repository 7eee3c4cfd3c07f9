// The detector on an ESXi standard vSwitch (PortRates.esxiVm): no FDB is seen there, and the
// vSwitch never forwards uplink to uplink, so a loop needs a guest forwarding between two vNICs.
// A vmnic and one VM port hot with rx ≈ tx is that VM's exchange through the uplink (a PXE wave
// answered by a DHCP server behind it), not a loop, until it lasts ESXI_EXCHANGE_MS.
import { describe, expect, it } from 'vitest';
import { ESXI_EXCHANGE_MS, initialDetectorState, step, VM_READ_GAP_MAX_MS } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, mulberry32, type LoadFn } from '../../agent/testing/traces.js';
import type { PortPolicy, Tick, Verdict } from '../../agent/types.js';

const policy = testPolicy();
const UP0 = 'esx1/vmnic0';
const UP1 = 'esx1/vmnic1';
const A0 = 'esx1/vnic-000c295ba000';
const A1 = 'esx1/vnic-000c295ba001';
const VM1 = 'esx1/vnic-000c295b1000';
const ALL = [UP0, UP1, A0, A1, VM1];
const VNICS = [A0, A1, VM1];
const esxPorts = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [A0]: 'vm', [A1]: 'vm', [VM1]: 'vm' }, policy);

/** `load` sampled every 15 ms (the fuse's burst period) on vSwitch0, VM ports and the vSwitch marked as the ESXi source marks them. */
function esxTrace(load: LoadFn, ms: number, esxiVm = true): Tick[] {
  const ticks = buildTrace({ name: 'esxi', ports: ALL.map((port) => ({ port, bridge: 'esx1/vSwitch0' })), load, periodMs: 15, jitterMs: 3 }, ms);
  return ticks.map((t) => ({ ...t, ports: t.ports.map((r) => ({ ...r, esxiVm: esxiVm && VNICS.includes(r.port), vmSwitch: esxiVm })) }));
}

function verdicts(ticks: Tick[], ports: ReadonlyMap<string, PortPolicy> = esxPorts): Array<{ ms: number; v: Verdict }> {
  const state = initialDetectorState();
  const out: Array<{ ms: number; v: Verdict }> = [];
  for (const t of ticks) for (const v of step(state, t, ports, policy).verdicts) out.push({ ms: (t.tNs - ticks[0]!.tNs) / 1e6, v });
  return out;
}

const quiet = { rxPps: 20, txPps: 20, bcastPps: 10 };

/** From 100 ms for `forMs`: `members` carry broadcast both ways at `pps` (rx ≈ tx); the rest hear it. */
const symmetric =
  (members: readonly string[], pps: number, forMs: number): LoadFn =>
  (p, tMs) => {
    if (tMs < 100 || tMs >= 100 + forMs) return quiet;
    if (members.includes(p)) return { rxPps: pps * 0.98, txPps: pps * 1.02, bcastPps: pps * 0.98 };
    return { rxPps: 20, txPps: pps, bcastPps: 10 };
  };

describe('ESXi vSwitch: one VM port and the uplinks hot with rx ≈ tx is an exchange, two VM ports a loop', () => {
  it('a PXE wave from vm1 answered through the uplinks (24k/s both ways for 1 s): no verdict', () => {
    // vm1's DISCOVERs out by the vmnics, the server's OFFERs in by them and on to vm1; the stand-in
    // (a Linux bridge) floods vm1's frames to both vmnics and its switch reflects them, so both
    // vmnics show rx ≈ tx too.
    const pxe = esxTrace(symmetric([VM1, UP0, UP1], 24_000, 1000), 1300);
    expect(verdicts(pxe).map((x) => x.v.kind)).toEqual([]);
  });

  it('the same counters on ports not marked as an ESXi vSwitch (no FDB view): a loop by rate, as before', () => {
    const pxe = esxTrace(symmetric([VM1, UP0, UP1], 24_000, 1000), 1300, false);
    expect(verdicts(pxe)[0]?.v).toMatchObject({ kind: 'loop', bridge: 'esx1/vSwitch0' });
  });

  it('the bridging VM closing its loop (both of its vNICs and the uplinks circling): a loop within a few samples, its vNICs members', () => {
    const loop = esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 1000), 600);
    const first = verdicts(loop)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', bridge: 'esx1/vSwitch0' });
    expect((first.v as { members: string[] }).members).toEqual(expect.arrayContaining([A0, A1]));
    expect(first.ms - 100).toBeLessThan(60);
  });

  it('uplinks only watched (the forwarding guest out of sight): the vmnics circling are a loop, as before', () => {
    const uplinksOnly = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink' }, policy);
    const first = verdicts(esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 1000), 600), uplinksOnly)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', members: [UP0, UP1] });
    expect(first.ms - 100).toBeLessThan(60);
  });

  it('one vNIC of a bridging guest watched (the other not): still a loop, once it outlasts ESXI_EXCHANGE_MS, and the clue says why', () => {
    const oneWatched = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [A0]: 'vm' }, policy);
    const first = verdicts(esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 4000), ESXI_EXCHANGE_MS + 600), oneWatched)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', bridge: 'esx1/vSwitch0' });
    expect(first.ms - 100).toBeGreaterThanOrEqual(ESXI_EXCHANGE_MS - 30); // the hot run starts with its first sample's interval
    expect(first.ms - 100).toBeLessThan(ESXI_EXCHANGE_MS + 100);
    expect(first.v.evidence.clues.join(' | ')).toMatch(/one VM port of esx1\/vSwitch0 among them/);
  });

  it("a multicast stream from vm1 (15k/s), each uplink's copy returned by the other: no verdict", () => {
    // The vSwitch sends vm1's stream out of both vmnics (the stand-in's bridge does), the physical
    // switch returns each copy by the other: both vmnics rx ≈ tx, vm1 receives the copies too.
    const stream: LoadFn = (p, tMs) => {
      if (tMs < 100) return quiet;
      if (p === VM1) return { rxPps: 15_000, txPps: 30_000, bcastPps: 15_000 };
      if (p === UP0 || p === UP1) return { rxPps: 15_000, txPps: 15_000, bcastPps: 15_000 };
      return { rxPps: 0, txPps: 30_000, bcastPps: 0 };
    };
    expect(verdicts(esxTrace(stream, 3000)).map((x) => x.v.kind)).toEqual([]);
  });

  it("the same stream read with each port's counters skewed by up to 4 ms per 5 ms sample (a busy host's fuse): no verdict", () => {
    // Lab, esxi-benign under load (session 20): the fuse samples every 5 ms while warm and reads
    // the items one after another; a busy host delays some reads by ms, so one sample showed vmnic0
    // at 18k and vmnic1 at 1k from one 15k stream. vm1's send on a 10 ms average then fell under
    // an uplink's tx / SLOW_RX_TX_FACTOR on one tick, and the vmnics, rx ≈ tx for a second, were
    // shut as a sustained loop. Each port here is read `skew` ms late, a new draw per sample:
    // the frames counted are the stream's between two reads, over the sample's nominal interval.
    const rand = mulberry32(20);
    const skew = new Map<string, number>(); // port -> last read's lateness, ms
    const at = new Map<string, number>(); // port -> tMs of the last draw
    const factor = (p: string, tMs: number): number => {
      const before = skew.get(p) ?? 0;
      if (at.get(p) !== tMs) {
        at.set(p, tMs);
        skew.set(p, rand() * 4);
      }
      return Math.max(0, (PERIOD + skew.get(p)! - before) / PERIOD);
    };
    const PERIOD = 5;
    const stream: LoadFn = (p, tMs) => {
      if (tMs < 100) return quiet;
      const f = factor(p, tMs); // rx and tx of one port are read together
      if (p === VM1) return { rxPps: 15_000 * f, txPps: 30_000 * f, bcastPps: 15_000 };
      if (p === UP0 || p === UP1) return { rxPps: 15_000 * f, txPps: 15_000 * f, bcastPps: 15_000 };
      return { rxPps: 0, txPps: 30_000 * f, bcastPps: 0 };
    };
    const ticks = buildTrace({ name: 'esxi-skew', ports: ALL.map((port) => ({ port, bridge: 'esx1/vSwitch0' })), load: stream, periodMs: PERIOD }, 3000);
    const marked = ticks.map((t) => ({ ...t, ports: t.ports.map((r) => ({ ...r, esxiVm: VNICS.includes(r.port), vmSwitch: true })) }));
    expect(verdicts(marked).map((x) => `${x.v.kind} ${x.v.evidence.clues.join('; ')}`)).toEqual([]);
  });

  /** ticks with `port`'s samples in [fromMs, toMs) unread (valid false, rates 0), as the ESXi rates give a failed read. */
  const unread = (ticks: Tick[], port: string, fromMs: number, toMs: number): Tick[] =>
    ticks.map((t) => {
      const ms = (t.tNs - ticks[0]!.tNs) / 1e6;
      if (ms < fromMs || ms >= toMs) return t;
      return { ...t, ports: t.ports.map((r) => (r.port === port ? { ...r, valid: false, rxPps: 0, txPps: 0, floodPps: 0, bcastPps: 0 } : r)) };
    });
  /** vm1 sends `pps` broadcast from 100 ms (a PXE wave): out of both vmnics, each copy returned by the other, on to vm1. */
  const vmWave =
    (pps: number): LoadFn =>
    (p, tMs) => {
      if (tMs < 100) return quiet;
      if (p === VM1) return { rxPps: pps, txPps: 2 * pps, bcastPps: pps };
      if (p === UP0 || p === UP1) return { rxPps: pps, txPps: pps, bcastPps: pps };
      return { rxPps: 0, txPps: 2 * pps, bcastPps: 0 };
    };

  it("vm1's wave through the uplinks with vm1's counters unread as it begins (a failed read, ~50 ms): no verdict", () => {
    // A failed read leaves vm1's 50 ms average behind the uplinks' once it is read again: on old
    // code the vmnics were then judged uplinks alone circling, a loop by rate, at ~130 ms.
    const ticks = unread(esxTrace(vmWave(24_000), 1500), VM1, 80, 130);
    expect(verdicts(ticks).map((x) => `${x.v.kind} ${x.v.evidence.clues.join('; ')}`)).toEqual([]);
  });

  it('vm1 unread for good (a read that keeps failing): an uplinks-only loop is judged after VM_READ_GAP_MAX_MS at the latest', () => {
    const vm1Watched = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [VM1]: 'vm' }, policy);
    const ticks = unread(esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 1500), 1500), VM1, 90, 1500);
    const first = verdicts(ticks, vm1Watched)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', members: [UP0, UP1] });
    expect(first.ms - 100).toBeLessThan(VM_READ_GAP_MAX_MS + 100);
  });

  it('a loop through a guest whose vNICs are not watched, vm1 watched and quiet: the vmnics circling are a loop', () => {
    const vm1Watched = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [VM1]: 'vm' }, policy);
    const first = verdicts(esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 1000), 600), vm1Watched)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', members: [UP0, UP1] });
    expect(first.ms - 100).toBeLessThan(60);
  });
});

// Session 20: which VM a vNIC belongs to (PortRates.esxiVmId). A guest with one vNIC on vSwitch0
// and one on vSwitch1 that bridges them closes a loop through both vSwitches: each shows one VM port
// and its uplink circling, which alone is that VM's exchange until ESXI_EXCHANGE_MS. Both ports of
// ONE VM forwarding to each other is that guest bridging them: a loop at once.
describe('ESXi: two member vNICs of one VM (on two vSwitches) forwarding to each other are a loop through that guest', () => {
  const W = 'esx1/world 2270220';
  const S0 = 'esx1/vSwitch0';
  const S1 = 'esx1/vSwitch1';
  const B0 = 'esx1/vnic-000c29723fe3';
  const B1 = 'esx1/vnic-000c29723fed';
  const VM2 = 'esx1/vnic-000c29000002';
  const SPLIT = [UP0, B0, VM1, UP1, B1, VM2];
  const bridgeOf = (p: string): string => ([UP0, B0, VM1].includes(p) ? S0 : S1);
  const vmOf: Record<string, [string, string]> = { [B0]: [W, 'fnOS_2'], [B1]: [W, 'fnOS_2'], [VM1]: ['esx1/world 2100861', 'Docker'], [VM2]: ['esx1/world 2104084', 'Snapshot'] };
  const splitPorts = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [B0]: 'vm', [B1]: 'vm', [VM1]: 'vm', [VM2]: 'vm' }, policy);

  function splitTrace(load: LoadFn, ms: number, identity = true): Tick[] {
    const ticks = buildTrace({ name: 'esxi-split', ports: SPLIT.map((port) => ({ port, bridge: bridgeOf(port) })), load, periodMs: 15, jitterMs: 3 }, ms);
    return ticks.map((t) => ({
      ...t,
      ports: t.ports.map((r) => {
        const vm = vmOf[r.port];
        // Both vSwitches have a watched VM port (vmSwitch, as host-rates sets it).
        return { ...r, esxiVm: vm !== undefined, vmSwitch: true, esxiVmId: identity && vm ? vm[0] : '', esxiVmName: identity && vm ? vm[1] : '' };
      }),
    }));
  }

  it('the guest bridging B0 (vSwitch0) and B1 (vSwitch1): a loop on each vSwitch within a few samples, naming the guest', () => {
    const loop = splitTrace(symmetric([UP0, B0, UP1, B1], 100_000, 3000), 800);
    const out = verdicts(loop, splitPorts);
    const first = out[0]!;
    expect(first.ms - 100).toBeLessThan(60);
    const bridges = new Set(out.filter((x) => x.ms === first.ms).map((x) => (x.v as { bridge: string }).bridge));
    expect(bridges).toEqual(new Set([S0, S1]));
    const v = first.v as Extract<Verdict, { kind: 'loop' }>;
    expect(v.guest).toEqual({ vm: 'fnOS_2', ports: [B0, B1] });
    expect(v.members).toEqual(expect.arrayContaining([v.bridge === S0 ? B0 : B1]));
    expect(v.evidence.clues.join(' | ')).toMatch(/are vNICs of one VM, fnOS_2 \(esx1\/world 2270220\), and it forwards between them/);
  });

  it('the same counters without the VM identity (old rates): no verdict before ESXI_EXCHANGE_MS', () => {
    const out = verdicts(splitTrace(symmetric([UP0, B0, UP1, B1], 100_000, 3000), 1500, false), splitPorts);
    expect(out).toEqual([]);
  });

  it('two VMs, one on each vSwitch, each answering a PXE wave through its uplink (24k/s both ways, 1 s): no verdict', () => {
    expect(verdicts(splitTrace(symmetric([UP0, VM1, UP1, VM2], 24_000, 1000), 1300), splitPorts)).toEqual([]);
  });

  it('one VM with a vNIC on each vSwitch answering two separate waves (24k/s on one, 120k/s on the other): no verdict', () => {
    // A DHCP server with a leg in two LANs: each vNIC rx ≈ tx with its own uplink, but what one
    // delivers to the guest is not what the other sends.
    const twoWaves: LoadFn = (p, tMs) => {
      if (tMs < 100 || tMs >= 1100) return quiet;
      const pps = bridgeOf(p) === S0 ? 24_000 : 120_000;
      if ([UP0, B0, UP1, B1].includes(p)) return { rxPps: pps * 0.98, txPps: pps * 1.02, bcastPps: pps * 0.98 };
      return { rxPps: 20, txPps: pps, bcastPps: 10 };
    };
    expect(verdicts(splitTrace(twoWaves, 1300), splitPorts)).toEqual([]);
  });

  it('one VM with a vNIC on each vSwitch answering ARP on both (a multi-homed host: broadcast in, unicast out, 60k/s): no verdict', () => {
    const arp: LoadFn = (p, tMs) => {
      if (tMs < 100 || tMs >= 2600) return quiet;
      if (p === UP0 || p === UP1) return { rxPps: 60_000, txPps: 60_000, bcastPps: 60_000 };
      if (p === B0 || p === B1) return { rxPps: 60_000, txPps: 60_000, bcastPps: 0 };
      return { rxPps: 0, txPps: 60_000, bcastPps: 0 };
    };
    expect(verdicts(splitTrace(arp, 2800), splitPorts)).toEqual([]);
  });

  it('a guest forwarding one way only (a bridge between two LANs, a flood from vSwitch0 passed on to vSwitch1, not back): no loop verdict', () => {
    const oneWay: LoadFn = (p, tMs) => {
      if (tMs < 100 || tMs >= 1100) return quiet;
      if (p === UP0) return { rxPps: 100_000, txPps: 20, bcastPps: 100_000 };
      if (p === B0) return { rxPps: 20, txPps: 100_000, bcastPps: 10 };
      if (p === B1) return { rxPps: 100_000, txPps: 20, bcastPps: 100_000 };
      if (p === UP1) return { rxPps: 20, txPps: 100_000, bcastPps: 10 };
      return { rxPps: 20, txPps: 100_000, bcastPps: 10 };
    };
    expect(verdicts(splitTrace(oneWay, 1300), splitPorts).filter((x) => x.v.kind === 'loop')).toEqual([]);
  });
});
