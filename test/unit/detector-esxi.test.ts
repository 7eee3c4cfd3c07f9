// The detector on an ESXi standard vSwitch (PortRates.esxiVm): no FDB is seen there, and the
// vSwitch never forwards uplink to uplink, so a loop needs a guest forwarding between two vNICs.
// A vmnic and one VM port hot with rx ≈ tx is that VM's exchange through the uplink (a PXE wave
// answered by a DHCP server behind it), not a loop, until it lasts ESXI_EXCHANGE_MS.
import { describe, expect, it } from 'vitest';
import { ESXI_EXCHANGE_MS, initialDetectorState, step } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, type LoadFn } from '../../agent/testing/traces.js';
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

  it('a loop through a guest whose vNICs are not watched, vm1 watched and quiet: the vmnics circling are a loop', () => {
    const vm1Watched = testPorts({ [UP0]: 'uplink', [UP1]: 'uplink', [VM1]: 'vm' }, policy);
    const first = verdicts(esxTrace(symmetric([A0, A1, UP0, UP1], 100_000, 1000), 600), vm1Watched)[0]!;
    expect(first.v).toMatchObject({ kind: 'loop', members: [UP0, UP1] });
    expect(first.ms - 100).toBeLessThan(60);
  });
});
