// A loop through a guest whose vNICs sit on two vSwitches, with only ONE of its port groups named
// by the policy (session 21): the stand-in ESXi lab's split variant (scripts/lab/esxi/plan.ts),
// vmA's eth0 on "VM Network" (vSwitch0, vmnic0), its eth1 on "VM Network1" (vSwitch1, vmnic1),
// both uplinks into one physical switch; the policy watches "VM Network" only, as an operator who
// names the production port group would. vmA's vNIC on vSwitch1 is then read as its guest's peer
// (watchBridgingVms, agent/esxi/l2.ts guestPeerNics): with both vNICs read, the guest forwarding
// between them is a loop at once (detector guestPeer), not, as before, one VM port and its uplink
// circling, held as that VM's exchange for ESXI_EXCHANGE_MS (2 s) and then cut.
// The agent's own detector decides (`fuse: stream`, as esxi-guest-loop).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EsxiLab } from '../../scripts/lab/esxi/lab.js';
import type { AgentHandle } from '../../scripts/lab/agent.js';
import { describeLine, guestLoopStorm, restoreAll as restoreAllOf, startEsxiCase, stopEsxiCase } from '../helpers/esxi-case.js';

const PREFIX = 'sbgp-';
const VNIC_A0 = 'esx1/vnic-000c295ba000';
const VNIC_A1 = 'esx1/vnic-000c295ba001';
/** Under the exchange hold's 2 s (a held verdict fails), as esxi-guest-loop's FAST_MS. */
const FAST_MS = 1800;

let lab: EsxiLab;
let agent: AgentHandle | null = null;

beforeAll(async () => {
  ({ lab, agent } = await startEsxiCase(PREFIX, 'esxi-guest-peer', { split: true, portgroups: '["VM Network"]' }));
}, 60_000);

afterAll(async () => {
  await stopEsxiCase(PREFIX, { lab, agent: agent ?? undefined });
}, 60_000);

describe('a guest bridging a vNIC on a watched port group with one on an unnamed port group of another vSwitch', () => {
  it('reads the unnamed one as its peer, and says why', async () => {
    const st = (await agent!.ask('status')) as { esxi: Array<{ ports: Array<{ port: string; watched?: string; portgroup?: string }> }> };
    const vms = st.esxi[0]!.ports.filter((p) => p.watched !== undefined).map((p) => [p.port, p.portgroup, p.watched]);
    expect(vms).toEqual(
      expect.arrayContaining([
        [VNIC_A0, 'VM Network', 'portgroup'],
        [VNIC_A1, 'VM Network1', 'guest-peer'],
      ]),
    );
  }, 20_000);

  it('is cut as a loop through that guest within a few samples, not after the exchange hold, and only once', async () => {
    const { trip, ms, lines } = await guestLoopStorm({ lab, agent: agent! });
    const trips = lines.filter((l) => l.msg === 'trip');
    console.log(`[esxi-guest-peer] ${ms} ms: ${describeLine(trip)}`);
    await restoreAllOf({ lab, agent: agent! }, 'sbt esxi guest peer: next case');
    expect([VNIC_A0, VNIC_A1]).toContain(trip.port);
    expect(String(trip.reason)).toMatch(/^loop on esx1\/vSwitch[01] through VM vmA/);
    expect(ms).toBeLessThan(FAST_MS);
    expect(trips.map((l) => l.port)).toEqual([trip.port]);
  }, 30_000);
});
