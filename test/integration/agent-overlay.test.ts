// Overlay (VXLAN) loops (session 18, issue 11: loop shapes not in the first labs). Host A runs the
// agent; host B (no agent) and host C are VTEPs of the same segment (VNI 5) over a shared underlay
// (scripts/lab/overlay-shapes.ts). A's br0 bridges its uplink up1 with vxlan-5; B's br0 bridges
// its uplink up2 (into the same switch) with its vxlan-5: the classic overlay mistake, a loop
// switch -> up1 -> A.br0 -> vxlan-5 -> underlay UDP -> B -> up2 -> switch. A's underlay NIC ul0
// is no bridge port and carries the encapsulated storm: it must never be cut.
// The policy is what an operator of such a host writes: the uplinks as role uplink, the VXLAN
// ports (vxlan-<VNI>, as OpenStack's linuxbridge agent names them) as role uplink too (the
// host's way to the rest of the segment), the underlay NIC ul0 as role uplink, VMs and mgmt.
//  - Loops: a broadcast from a VM on A, from the LAN, from a VM on C (entering A by the tunnel),
//    an unknown unicast, a multicast, and with head-end replication to B and C (A sends each
//    flooded frame twice into the underlay). Each: one port of A's br0 cut, as a loop, quiet
//    within the observation; ul0 never touched.
//  - The same loop under a policy that does not name vxlan-*: the tunnel is observed, never cut;
//    up1 is, and its reason names vxlan-5 as a VXLAN tunnel port.
//  - A remote host bridging two VNIs (B's vxlan-5 and vxlan-6 in one bridge, B's uplink down)
//    joins A's br0 (up1, vxlan-5) and br1 (up3, vxlan-6) through the overlay: a loop on each of
//    A's bridges, one tunnel cut, not a member of each bridge.
//  - A multicast underlay (vxlan-5 with a group: ul0 receives every VNI's BUM as IP multicast):
//    the classic loop, a 15k/s stream (nothing), and a 40k/s flood from a VM on C with ul0 ranked
//    `other` by the policy (reloaded): reported, ul0 never cut (the old main cut it).
//  - Not loops (B's uplink down: the overlay as it should be): an ARP scan from C's VM, a PXE
//    wave from the LAN answered by a DHCP server on C's VM (broadcast both ways through up1 and
//    vxlan-5: rx ≈ tx on both), a multicast stream through the tunnel, a unicast flood to an
//    unknown MAC through the tunnel. Nothing journaled.
// Every storm is bounded: frameStorm opens the loop by hand after OBSERVE_MS, a guard downs A's
// loop members after 5 s, and the lab (A, B, C, the underlay) is torn down in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { frameStorm, type FrameStorm } from '../../scripts/lab/more-shapes.js';
import { addSecondSegment, buildOverlayLab, setFloodList, setRemoteUplink, setSecondSegment, setUnderlay, vxlanFdb, VX, VX6, type OverlayLab } from '../../scripts/lab/overlay-shapes.js';
import { downHostPorts, resetPorts } from '../../scripts/lab/scenario.js';
import { flood, inject, wave, type FrameKind } from '../../scripts/lab/traffic.js';
import { readLinkStats, statsDelta } from '../../scripts/lab/counters.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { teardownLab } from '../../scripts/lab/topology.js';
import { eventsOf, isUp, listedIn, newStateDir, readJournalStrict, removeStateDirs, requireBuiltAgent, sleep, stopAgentAndLab, stormGuard, waitForNew } from '../helpers/agent-lab.js';

const PREFIX = 'sbvx18-';
const OBSERVE_MS = 600;
/** Verdict from the injected frame: a few ms idle; room for a busy core. */
const VERDICT_MS = 150;

const POLICY = `version: 1
breaker:
  maxShuts: 1000
  windowMs: 1000
ports:
  - match: "up*"
    role: uplink
  - match: "vxlan-*"
    role: uplink
  - match: "ul0"
    role: uplink
  - match: "vm*"
    role: vm
  - match: "mgmt*"
    role: mgmt
    protected: true
`;

let lab: OverlayLab;
let agent: AgentHandle | null = null;
let policyPath = '';

beforeAll(async () => {
  requireBuiltAgent();
  const dir = newStateDir('overlay');
  const policy = join(dir, 'policy.yaml');
  policyPath = policy;
  writeFileSync(policy, POLICY);
  lab = await buildOverlayLab(PREFIX);
  try {
    agent = await startAgent(lab.ns.host, { policy, stateDir: dir });
    await sleep(1500); // the first listing and the warm-up
  } catch (err) {
    await teardownLab(PREFIX);
    throw err;
  }
});

afterAll(async () => {
  try {
    await stopAgentAndLab(agent, PREFIX);
  } finally {
    removeStateDirs();
  }
});

const evTNs = (t: Record<string, unknown>) => (t.evidence as { tNs: number }).tNs;

/** One frame of `kind` from `from` into the closed loop; the agent's trips restored afterwards. */
async function storm(tag: string, from: 'vm1' | 'prod' | 'vmc', kind: FrameKind, l: OverlayLab = lab): Promise<{ r: FrameStorm; trips: Array<Record<string, unknown>>; verdictMs: number }> {
  const a = agent!;
  const seen = readJournalStrict(a.stateDir).length;
  const cancel = stormGuard(l, 5000);
  let r: FrameStorm;
  try {
    r = await frameStorm({ ...l, ns: { ...l.ns, vm1: l.ns[from] } }, a, { kind }, OBSERVE_MS);
  } finally {
    cancel();
  }
  await sleep(100); // the trip line follows its verified link-down
  const trips = eventsOf(readJournalStrict(a.stateDir).slice(seen), 'trip');
  for (const t of trips) {
    const restored = waitForNew(a, (l) => l.msg === 'restore' && l.port === t.port, 5000);
    await a.ask('restore', { port: t.port, reason: 'sbvx18: next storm' });
    await restored;
  }
  await resetPorts(l);
  await sleep(200); // nothing left circling
  const verdictMs = trips.length > 0 ? (evTNs(trips[0]!) - r.tInjectNs) / 1e6 : NaN;
  console.log(
    `[overlay ${tag}] down=${r.downAtEnd.join(',') || 'none'} openedByHand=${r.openedByHand} quietMs=${r.stats.quietAtNs === null ? 'never' : ((r.stats.quietAtNs - r.tInjectNs) / 1e6).toFixed(1)} frames=${r.stats.framesLeaked} verdictMs=${verdictMs.toFixed(1)} ` +
      `trips=${trips.map((t) => `${String(t.port)}(${String(t.reason)})`).join(';')} clue=${String((trips[0]?.evidence as { clues?: string[] } | undefined)?.clues?.[0] ?? '')}`,
  );
  return { r, trips, verdictMs };
}

async function expectOneCut(r: FrameStorm, trips: Array<Record<string, unknown>>, verdictMs: number): Promise<void> {
  expect(r.stats.firstFrameNs).not.toBeNull(); // the frame did circle and reach prod
  expect(trips).toHaveLength(1);
  expect(trips[0]!.port).toBe(VX);
  expect(String(trips[0]!.reason)).toMatch(/^loop on br0: shut vxlan-5 /);
  expect(r.downAtEnd).toEqual([VX]); // up1 untouched
  expect(await isUp(lab.ns.host, 'ul0')).toBe(true); // the underlay NIC too (it is no bridge port)
  expect(r.openedByHand).toBe(false);
  expect(verdictMs).toBeLessThan(VERDICT_MS);
  expect(r.stats.quietAtNs).not.toBeNull();
  expect((r.stats.quietAtNs! - r.tInjectNs) / 1e6).toBeLessThan(OBSERVE_MS);
}

describe('two hosts bridging one VXLAN segment and uplinks into one switch (the loop is closed)', () => {
  it('a broadcast from a VM on A: vxlan-5 cut, as a loop; up1 and ul0 stay up', async () => {
    const { r, trips, verdictMs } = await storm('bcast-vm1', 'vm1', 'broadcast');
    await expectOneCut(r, trips, verdictMs);
    expect(String(trips[0]!.reason)).toMatch(/VXLAN/);
  });

  it('a broadcast from the LAN', async () => {
    const { r, trips, verdictMs } = await storm('bcast-lan', 'prod', 'broadcast');
    await expectOneCut(r, trips, verdictMs);
  });

  it('a broadcast from a VM on a third VTEP (enters A by the tunnel)', async () => {
    const { r, trips, verdictMs } = await storm('bcast-vmc', 'vmc', 'broadcast');
    await expectOneCut(r, trips, verdictMs);
  });

  it('an unknown unicast', async () => {
    const { r, trips, verdictMs } = await storm('unicast', 'vm1', 'unicast');
    await expectOneCut(r, trips, verdictMs);
  });

  it('a multicast', async () => {
    const { r, trips, verdictMs } = await storm('multicast', 'vm1', 'multicast');
    await expectOneCut(r, trips, verdictMs);
  });

  it('head-end replication to two VTEPs (B and C): every flooded frame leaves vxlan-5 twice', async () => {
    await setFloodList(lab, ['b', 'c']);
    try {
      const { r, trips, verdictMs } = await storm('head-end', 'vm1', 'broadcast');
      await expectOneCut(r, trips, verdictMs);
    } finally {
      await setFloodList(lab, ['b']);
    }
  });
});

describe('a remote host bridging two VNIs (B: vxlan-5 and vxlan-6 in one bridge) joins two bridges of A through the overlay', () => {
  // B's uplink down: the loop runs switch -> up1 -> A.br0 -> vxlan-5 -> B -> vxlan-6 -> A.br1 -> up3 -> switch.
  let two: OverlayLab;
  beforeAll(async () => {
    await setRemoteUplink(lab, false);
    two = await addSecondSegment(lab);
    await setSecondSegment(two, true);
    // A's listing has br1's members up3 and vxlan-6 (a fixed 1.5 s assumed it).
    if (!(await listedIn(agent!, { up3: 'br1', 'vxlan-6': 'br1' }))) throw new Error("up3 and vxlan-6 not in br1 in the agent's listing within 5 s");
  });
  afterAll(async () => {
    await setSecondSegment(two, false);
  });

  it('a broadcast from a VM on A: a loop on br0 and on br1, one tunnel cut (not both bridges\' members), up1, up3 and ul0 stay up', async () => {
    const { r, trips, verdictMs } = await storm('two-vnis', 'vm1', 'broadcast', two);
    expect(r.stats.firstFrameNs).not.toBeNull();
    expect(trips).toHaveLength(1);
    expect([VX, VX6]).toContain(trips[0]!.port);
    expect(String(trips[0]!.reason)).toMatch(/^loop on br[01]: shut vxlan-[56] \(vxlan-[56] is a VXLAN tunnel port/);
    expect(r.downAtEnd).toEqual([trips[0]!.port]);
    expect(r.openedByHand).toBe(false);
    expect(await isUp(lab.ns.host, 'ul0')).toBe(true);
    expect(verdictMs).toBeLessThan(VERDICT_MS);
    expect(r.stats.quietAtNs).not.toBeNull();
    expect((r.stats.quietAtNs! - r.tInjectNs) / 1e6).toBeLessThan(OBSERVE_MS);
  });
});

describe('a multicast underlay (vxlan-5 with group 239.1.1.5 on every host): BUM leaves each VTEP once, as IP multicast on ul0', () => {
  beforeAll(async () => {
    await setUnderlay(lab, 'multicast');
    await sleep(1500); // A's listing sees the new vxlan-5
  });
  afterAll(async () => {
    await setRemoteUplink(lab, true);
    await setUnderlay(lab, 'unicast');
    await setRemoteUplink(lab, false);
    await sleep(1500);
  });

  it("the classic loop (B's uplink up): vxlan-5 cut, ul0 (which now receives the storm as multicast) untouched", async () => {
    await setRemoteUplink(lab, true);
    try {
      const { r, trips, verdictMs } = await storm('mcast-underlay', 'vm1', 'broadcast');
      await expectOneCut(r, trips, verdictMs);
    } finally {
      await setRemoteUplink(lab, false);
    }
  });

  it('a multicast stream from C at 15k frames/s for 2 s with the loop open: nothing journaled', async () => {
    const seen = readJournalStrict(agent!.stateDir).length;
    const before = await readLinkStats(lab.ns.host);
    const sent = (await inject(lab, 'vmc', 'eth0', { kind: 'multicast', pps: 15_000, duration: 2, live: true })).sent;
    const d = statsDelta(before, await readLinkStats(lab.ns.host), ['up1', VX, 'ul0']);
    await sleep(300);
    const acted = readJournalStrict(agent!.stateDir).slice(seen).map((l) => `${String(l.event)} ${String(l.port)}: ${String(l.reason)}`);
    console.log(`[overlay mcast-underlay legit] sent=${sent} counters=${JSON.stringify(d)} journal=${JSON.stringify(acted)}`);
    expect(sent).toBeGreaterThan(20_000);
    expect(d.up1!.tx).toBeGreaterThan(0.9 * sent);
    expect(acted).toEqual([]);
  }, 30_000);

  it('a flood from a VM on C at 40k frames/s, the underlay NIC named role other: reported, ul0 never cut (the old main cut it as "a flood from ul0")', async () => {
    // An operator may rank a NIC that is no uplink of a bridge as `other`; floods from `other`
    // ports are cut (breaker.floodShutRoles). ul0's multicast is every VNI's BUM, encapsulated.
    const a = agent!;
    writeFileSync(policyPath, POLICY.replace('  - match: "ul0"\n    role: uplink', '  - match: "ul0"\n    role: other'));
    try {
      expect(await a.ask('reload')).toMatchObject({ ok: true });
      await sleep(1200); // the next listing resolves ul0 with the new role
      const seen = readJournalStrict(a.stateDir).length;
      const sent = (await inject(lab, 'vmc', 'eth0', { kind: 'multicast', pps: 40_000, duration: 1 })).sent;
      await sleep(300);
      const lines = readJournalStrict(a.stateDir).slice(seen);
      console.log(`[overlay mcast-underlay flood] sent=${sent} journal=${JSON.stringify(lines.map((l) => `${String(l.event)} ${String(l.port)}: ${String(l.reason)}`))}`);
      expect(sent).toBeGreaterThan(25_000);
      expect(await isUp(lab.ns.host, 'ul0')).toBe(true);
      expect(lines.filter((l) => ['trip', 'would-trip', 'escalate'].includes(String(l.event)))).toEqual([]);
      expect(lines.some((l) => l.event === 'flood-observed' && l.port === 'ul0' && /underlay of vxlan-5/.test(String(l.reason)))).toBe(true);
    } finally {
      writeFileSync(policyPath, POLICY);
      await a.ask('reload');
      await resetPorts(lab);
      await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', 'ul0', 'up']));
      const st = (await a.ask('status')) as { ports: Array<{ port: string; state: string }> };
      for (const p of st.ports.filter((x) => x.state === 'tripped')) await a.ask('restore', { port: p.port, reason: 'sbvx18: next case' });
    }
  }, 30_000);
});

describe('the overlay as it should be (B without an uplink into the switch): heavy BUM through the tunnel trips nothing', () => {
  beforeAll(async () => {
    await setRemoteUplink(lab, false);
    await setFloodList(lab, ['b', 'c']);
    await sleep(300);
  });
  afterAll(async () => {
    await setFloodList(lab, ['b']);
  });

  /** Journal lines since `seen` that act or would act on a port, and any flood report. */
  function actions(seen: number): string[] {
    return readJournalStrict(agent!.stateDir)
      .slice(seen)
      .filter((l) => ['trip', 'would-trip', 'escalate', 'flood-observed'].includes(String(l.event)))
      .map((l) => `${String(l.event)} ${String(l.port)}: ${String(l.reason)}`);
  }

  async function quietly(tag: string, fn: () => Promise<string>): Promise<Record<string, { rx: number; tx: number }>> {
    const seen = readJournalStrict(agent!.stateDir).length;
    const before = await readLinkStats(lab.ns.host);
    const what = await fn();
    const d = statsDelta(before, await readLinkStats(lab.ns.host), ['up1', VX, 'ul0']);
    await sleep(300);
    const acted = actions(seen);
    console.log(`[overlay legit ${tag}] ${what} counters=${JSON.stringify(d)} acted=${JSON.stringify(acted)}`);
    expect(acted).toEqual([]);
    expect(await downHostPorts(lab)).toEqual([]);
    expect(await isUp(lab.ns.host, 'ul0')).toBe(true);
    return d;
  }

  it('an ARP scan from a VM on C at 5k/s for 2 s (new source MACs behind the tunnel)', async () => {
    let sent = 0;
    const d = await quietly('arp-scan', async () => {
      sent = (await inject(lab, 'vmc', 'eth0', { kind: 'arp', pps: 5000, duration: 2, randomSrc: true })).sent;
      return `sent=${sent}`;
    });
    expect(sent).toBeGreaterThan(8000);
    expect(d[VX]!.rx).toBeGreaterThan(0.9 * sent);
    expect(d.up1!.tx).toBeGreaterThan(0.9 * sent);
  });

  it('a PXE wave from the LAN (2000 clients in 200 ms, twice) answered by a DHCP server on C with broadcast OFFERs', async () => {
    let line = '';
    const d = await quietly('pxe', async () => {
      const srv = wave(lab, 'vmc', 'eth0', 'dhcp-server', { duration: 3 });
      for (let i = 0; i < 100; i++) {
        const { stdout } = await run(ns(lab.ns.vmc, ['cat', '/proc/net/packet']));
        if (stdout.trim().split('\n').length > 1) break;
        await sleep(50);
      }
      const c = await wave(lab, 'prod', 'eth0', 'dhcp-clients', { n: 2000, spreadMs: 200, retries: 1, retryMs: 1000 });
      const s = await srv;
      line = `sent=${c.sent} seen=${s.seen} answered=${s.answered}`;
      expect(s.answered ?? 0).toBeGreaterThanOrEqual(3600);
      return line;
    });
    // Broadcast both ways through both ports: by counters, what a loop's members show.
    for (const p of ['up1', VX]) {
      expect(d[p]!.rx).toBeGreaterThanOrEqual(3600);
      expect(d[p]!.tx).toBeGreaterThanOrEqual(3600);
    }
  }, 30_000);

  it('a multicast stream from C through the tunnel at 15k frames/s for 3 s', async () => {
    let sent = 0;
    const d = await quietly('multicast', async () => {
      sent = (await inject(lab, 'vmc', 'eth0', { kind: 'multicast', pps: 15_000, duration: 3, live: true })).sent;
      return `sent=${sent}`;
    });
    expect(sent).toBeGreaterThan(30_000);
    expect(d.up1!.tx).toBeGreaterThan(0.9 * sent);
  }, 30_000);

  it('a unicast flood from the LAN to an unknown MAC, flooded into the tunnel at full speed for 1.5 s', async () => {
    let sent = 0;
    const d = await quietly('unicast-flood', async () => {
      sent = (await flood(lab, 'prod', 'eth0', { duration: 1.5, kind: 'unicast' })).sent;
      return `sent=${sent} vxlan-5 fdb entries=${(await vxlanFdb(lab)).trim().split('\n').length}`;
    });
    expect(sent).toBeGreaterThan(20_000);
    expect(d[VX]!.tx).toBeGreaterThan(0.5 * sent);
  }, 30_000);
});

// Last: up1, cut here and restored, would count as a recent joiner for a minute (the breaker's
// RECENT_JOIN_MS) and go before a tunnel in the cases above.
describe('a policy that does not name the tunnel port (observed only)', () => {
  it('the classic loop: up1 cut (vxlan-5 is never touched), and the trip says the loop runs through a VXLAN tunnel port', async () => {
    const a = agent!;
    writeFileSync(policyPath, POLICY.replace('  - match: "vxlan-*"\n    role: uplink\n', ''));
    await setRemoteUplink(lab, true); // the classic loop, closed again
    try {
      expect(await a.ask('reload')).toMatchObject({ ok: true });
      await sleep(1200); // the next listing resolves vxlan-5 as observed
      const { r, trips, verdictMs } = await storm('unnamed-tunnel', 'vm1', 'broadcast');
      expect(trips).toHaveLength(1);
      expect(trips[0]!.port).toBe('up1');
      expect(String(trips[0]!.reason)).toContain('the loop runs through vxlan-5 (vxlan-5: VXLAN tunnel port), which is not named by the policy, so not touched: up1 was shut instead');
      expect(r.downAtEnd).toEqual(['up1']);
      expect(await isUp(lab.ns.host, 'ul0')).toBe(true);
      expect(verdictMs).toBeLessThan(VERDICT_MS);
      expect(r.stats.quietAtNs).not.toBeNull();
    } finally {
      await setRemoteUplink(lab, false);
      writeFileSync(policyPath, POLICY);
      await a.ask('reload');
    }
  });
});
