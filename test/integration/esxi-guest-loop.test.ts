// A loop through a guest whose two vNICs sit on two vSwitches (session 20), in the stand-in ESXi lab's
// split variant (scripts/lab/esxi/plan.ts): vmA's eth0 on vSwitch0 (uplink vmnic0), its eth1 on
// vSwitch1 (uplink vmnic1), both uplinks into one physical switch. vmA bridging eth0
// and eth1 closes a loop through vSwitch0, the switch and vSwitch1; each vSwitch shows ONE VM port
// of vmA and its uplinks circling, which alone is a VM's exchange with the world (session 19,
// ESXI_EXCHANGE_MS = 2 s). The agent knows from `esxcli network vm list` / `vm port list` that both
// ports are vmA's (PortRates.esxiVmId): two member vNICs of one VM forwarding to each other are a
// loop through that guest, cut at its vNIC like any loop, and the trip's reason says so.
// Zero false trips: the same VM with both vNICs up but NOT bridged (a multi-homed host: an address
// on each, answering an ARP sweep on both) is not cut.
// The agent's own detector decides (`fuse: stream`, as esxi-agent and esxi-benign).
//
// Measured (first case alone, `-t "is cut as a loop"`), old main (d09cf5f) against this code:
// old idle: 2273 ms, a loop verdict after the exchange wait; 689 ms, a FLOOD verdict at vnA1
// ("not a loop": its rx and tx samples apart by > RX_TX_FACTOR while the loop ramps); old with one
// core busy (/work/busy-run.sh): 570 and 801 ms, flood verdicts. New: idle 276 and 257 ms, busy
// 419, 469 and 451 ms, each a loop verdict naming vmA. So on old main the vNIC was often cut in
// under a second, by the flood rule and for the wrong reason, and otherwise after ~2.3 s; the
// assertion on the reason fails there every time, the one on time in 1 run of 4.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EsxiLab } from '../../scripts/lab/esxi/lab.js';
import type { AgentHandle } from '../../scripts/lab/agent.js';
import { inject } from '../../scripts/lab/traffic.js';
import { run } from '../../scripts/lab/exec.js';
import { readLinkStats } from '../../scripts/lab/counters.js';
import { describeLine, guestLoopStorm, restoreAll as restoreAllOf, startEsxiCase, stopEsxiCase } from '../helpers/esxi-case.js';
import { sleep } from '../helpers/agent-lab.js';

const PREFIX = 'sbeg-';
const VNIC_A0 = 'esx1/vnic-000c295ba000';
const VNIC_A1 = 'esx1/vnic-000c295ba001';
const NOISE = ['trip', 'would-trip', 'escalate'];
/**
 * A verdict held for ESXI_EXCHANGE_MS comes >= 2000 ms after the storm starts (and so after t0,
 * taken before the frame is sent); a loop by rate within a few samples (288-454 ms from t0 in
 * five clean-clone runs, idle and with one core busy). Under the hold's 2 s, so a held verdict
 * still fails; not 1000 ms, which left a slower or busier machine than ours only 2x.
 */
const FAST_MS = 1800;

let lab: EsxiLab;
let agent: AgentHandle | null = null;

beforeAll(async () => {
  ({ lab, agent } = await startEsxiCase(PREFIX, 'esxi-guest-loop', { split: true, portgroups: '["VM Network", "VM Network1"]' }));
}, 60_000);

afterAll(async () => {
  await stopEsxiCase(PREFIX, { lab, agent: agent ?? undefined });
}, 60_000);

/** The next case starts clean (helpers/esxi-case.ts). */
const restoreAll = (): Promise<void> => restoreAllOf({ lab, agent: agent! }, 'sbt esxi guest loop: next case');

/** vmA as a multi-homed host: eth0 and eth1 out of its bridge, up, an address on each (Linux answers ARP for either on both). */
async function multiHomed(on: boolean): Promise<void> {
  const lines = on
    ? ['link set dev eth0 nomaster', 'link set dev eth1 nomaster', 'addr add 10.77.0.254/24 dev eth0', 'addr add 10.77.0.250/24 dev eth1', 'link set dev eth0 up', 'link set dev eth1 up']
    : ['link set dev eth0 down', 'link set dev eth1 down', 'addr flush dev eth0', 'addr flush dev eth1', 'link set dev eth0 master vbr', 'link set dev eth1 master vbr'];
  await run(['ip', '-n', lab.ns.vmA, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

describe('a guest bridging its vNIC on vSwitch0 with its vNIC on vSwitch1', () => {
  it('is cut as a loop through that guest within a few samples, at one of its vNICs, and only one', async () => {
    const { trip, ms, lines } = await guestLoopStorm({ lab, agent: agent! });
    const trips = lines.filter((l) => l.msg === 'trip');
    console.log(`[esxi-guest-loop] ${ms} ms: ${describeLine(trip)}`);
    for (const l of lines.filter((x) => x !== trip && /trip|loop|flood|escalat/.test(String(x.msg)))) console.log(`[esxi-guest-loop] then: ${describeLine(l)}`);
    await restoreAll();
    expect([VNIC_A0, VNIC_A1]).toContain(trip.port);
    expect(String(trip.reason)).toMatch(/^loop on esx1\/vSwitch[01] through VM vmA \(the guest forwards between its vNICs esx1\/vnic-000c295ba000,esx1\/vnic-000c295ba001; esx1\/vnic-000c295ba00[01] is its vNIC\)/);
    // Not after the exchange's 2 s: by rate, like any loop.
    expect(ms).toBeLessThan(FAST_MS);
    // One cut ends the loop through both vSwitches (the breaker waits for the first shut).
    expect(trips.map((l) => l.port)).toEqual([trip.port]);
  }, 30_000);

  it('the same VM not bridging (a multi-homed host answering an ARP sweep on both vNICs, 30k requests/s for 2 s): not cut', async () => {
    const seen = agent!.logs.length;
    await multiHomed(true);
    let sent = 0;
    let d = { a0: { rx: 0, tx: 0 }, a1: { rx: 0, tx: 0 } };
    try {
      const s0 = await readLinkStats(lab.ns.esx);
      sent = (await inject({ prefix: lab.prefix, ns: { prod: lab.ns.prod } }, 'prod', 'eth0', { kind: 'arp', pps: 30_000, duration: 2 })).sent;
      const s1 = await readLinkStats(lab.ns.esx);
      const delta = (p: string) => ({ rx: s1.get(p)!.rxPackets - s0.get(p)!.rxPackets, tx: s1.get(p)!.txPackets - s0.get(p)!.txPackets });
      d = { a0: delta('vnA0'), a1: delta('vnA1') };
      await sleep(500); // a verdict at the very end (over SSH, a few samples late) is still seen
    } finally {
      await multiHomed(false);
    }
    const noise = agent!.logs.slice(seen).filter((l) => NOISE.includes(String(l.msg)));
    console.log(`[esxi-guest-loop multi-homed] ARP requests sent ${sent}; vnA0 rx +${d.a0.rx} tx +${d.a0.tx}; vnA1 rx +${d.a1.rx} tx +${d.a1.tx}; noise ${noise.map(describeLine).join(' || ') || 'none'}`);
    if (noise.length > 0) await restoreAll();
    expect(noise.map(describeLine)).toEqual([]);
    // 2 s at 30k/s asked; with one core held by a busy loop the injector reached 16.5k/s (33,000
    // sent): still both vNICs busy both ways at most of floodPps, the shape the rule must not cut.
    expect(sent).toBeGreaterThanOrEqual(30_000);
    // The requests reached both vNICs and the guest answered on both (host-side rx = what the guest sent).
    expect(d.a0.tx).toBeGreaterThanOrEqual(sent);
    expect(d.a1.tx).toBeGreaterThanOrEqual(sent);
    expect(d.a0.rx).toBeGreaterThanOrEqual(sent * 0.9);
    expect(d.a1.rx).toBeGreaterThanOrEqual(sent * 0.9);
  }, 30_000);
});
