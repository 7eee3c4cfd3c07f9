// The next loop shapes a careful tester builds (issue 11, session 11), against the real agent in
// one kvm lab (up1/up2 into one switch, no STP) with a policy written from README alone:
//  - a loop circling an IPv6 multicast frame (an unsolicited Neighbor Advertisement to ff02::1,
//    33:33:00:00:00:01), as a host's own IPv6 stack sends when its link comes up;
//  - a loop circling an 802.1Q-tagged broadcast (VLAN 100) through bridges that trunk it;
//  - a loop of 1500-byte frames over uplinks shaped to 2 and 10 Mbit/s (tc tbf on both ends):
//    ~170 / ~830 frames/s per port, far under every flood threshold; and of 9000-byte (jumbo)
//    frames over 10 Mbit/s, ~138 frames/s;
//  - legitimate 1500-byte broadcast both ways through one uplink at the slow loop's rates (the
//    loop open): nothing may trip;
//  - a loop that starts while a legitimate unicast stream runs both ways through the uplinks
//    (20k frames/s each way to MACs pinned in both bridges, so the stream is never flooded);
//  - three uplinks into one switch, shaped to 10 Mbit/s, 1500-byte frames (one shut is not
//    enough: two must go, at the first verdict when the three are every way into br0, else the
//    second by escalation);
//  - uplinks renamed as VLAN subinterfaces are (up1.100, up2.100), named by a glob, with a
//    VLAN-100 tagged loop. (This kernel has no 8021q, bonding or bridge vlan_filtering, so real
//    VLAN devices and bonds cannot be built here; the names and the tagged frames can.);
//  - kernel STP on the host bridge (stp_state 1) beside a switch that drops BPDUs: the loop
//    storms as with STP off, and the kernel refuses the bridge state from user space (EBUSY),
//    so the agent must take its fallback (admin-down); with BPDUs passing, STP blocks an
//    uplink and a broadcast stream through it must trip nothing.
// Each storm must shut up1 alone (first by name of two uplinks), as a loop, and go quiet by the
// agent's doing inside the observation. Every storm is bounded: frameStorm opens the loop by hand
// after OBSERVE_MS, a guard downs the loop members after 5 s, and the lab is torn down in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentHandle } from '../../scripts/lab/agent.js';
import { frameStorm, macOf, pinMac, removeUplink, renameHostPorts, setLabMtu, unpinMac, type FrameStorm } from '../../scripts/lab/more-shapes.js';
import { resetPorts } from '../../scripts/lab/scenario.js';
import { addUplink, shapeUplinks, unshapeUplinks } from '../../scripts/lab/shapes.js';
import { hostStp, hostStpOff, waitStp } from '../../scripts/lab/stp-shapes.js';
import { linkDown, type Lab } from '../../scripts/lab/topology.js';
import { inject, type InjectOptions, type InjectResult } from '../../scripts/lab/traffic.js';
import { eventsOf, listedIn, newStateDir, readJournalStrict, kvmLabWithAgent, sleep, stopAgentAndLab, stormGuard, waitForNew } from '../helpers/agent-lab.js';

const PREFIX = 'sbsh11-';
const OBSERVE_MS = 600;
/** Issue 11's target for a slow-link loop (a benchmark target; the test allows the same). */
const SLOW_TARGET_MS = 300;

// As README's "Policy" section shows it; the shut budget is raised because this file restores
// the port and storms again a few times a second, which no operator does.
const POLICY = `version: 1
breaker:
  maxShuts: 1000
  windowMs: 1000
ports:
  - match: "mgmt*"
    role: mgmt
  - match: "up?.100"
    role: uplink
  - match: "up*"
    role: uplink
  - match: "vm*"
    role: vm
`;

let lab: Lab;
let agent: AgentHandle | null = null;

beforeAll(async () => {
  const dir = newStateDir('more-shapes');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  ({ lab, agent } = await kvmLabWithAgent(PREFIX, { policy, stateDir: dir }));
});

afterAll(() => stopAgentAndLab(agent, PREFIX));

const evTNs = (t: Record<string, unknown>) => (t.evidence as { tNs: number }).tNs;

/** One storm of `frame`; then every tripped port restored and every host port up for the next one. */
async function storm(tag: string, frame: InjectOptions, o: Parameters<typeof frameStorm>[4] = {}): Promise<{ r: FrameStorm; trips: Array<Record<string, unknown>>; verdictMs: number }> {
  const a = agent!;
  const seen = readJournalStrict(a.stateDir).length;
  const cancel = stormGuard(lab, 5000 + (o.beforeMs ?? 0));
  let r: FrameStorm;
  try {
    r = await frameStorm(lab, a, frame, OBSERVE_MS, o);
  } finally {
    cancel();
  }
  await sleep(100); // the trip line follows its verified link-down
  const events = readJournalStrict(a.stateDir).slice(seen);
  const trips = eventsOf(events, 'trip');
  for (const t of trips) {
    const restored = waitForNew(a, (l) => l.msg === 'restore' && l.port === t.port, 5000);
    await a.ask('restore', { port: t.port, reason: 'sbsh11: next storm' });
    await restored;
  }
  await resetPorts(lab);
  const verdictMs = trips.length > 0 ? (evTNs(trips[0]!) - r.tInjectNs) / 1e6 : NaN;
  console.log(
    `[more-shapes ${tag}] down=${r.downAtEnd.join(',') || 'none'} openedByHand=${r.openedByHand} framesLeaked=${r.stats.framesLeaked} ` +
      `msToQuiet=${r.stats.msToQuiet?.toFixed(1)} verdictMs=${verdictMs.toFixed(1)} trips=${trips.map((t) => `${String(t.port)}(${String(t.reason)})`).join(';')} ` +
      `other=${JSON.stringify(events.filter((e) => e.event !== 'trip' && e.event !== 'restore').map((e) => [e.event, e.port, e.reason]))}`,
  );
  return { r, trips, verdictMs };
}

/**
 * The breaker cuts the loop member that joined its bridge last (RECENT_JOIN_MS, 60 s: an enslave,
 * a new port, a carrier-up, so also a port brought back up). Most storms here end with up1
 * restored, which keeps up1 the newest joiner; a case that brings up2 (or both) up last calls
 * this so that the storms after it still expect up1.
 */
async function up1JoinedLast(up1 = 'up1'): Promise<void> {
  await linkDown(lab, up1);
  await resetPorts(lab);
  await sleep(200); // the link monitor's rescan stamps the join
}

/** The assertions every loop here shares: up1 alone, as a loop, and quiet by the agent's doing. */
function expectUp1Cut(r: FrameStorm, trips: Array<Record<string, unknown>>, up1 = 'up1'): void {
  expect(r.stats.firstFrameNs).not.toBeNull(); // the frame did circle and reach the observer
  expect(trips.map((t) => t.port)).toEqual([up1]);
  expect(String(trips[0]!.reason)).toMatch(/loop on br0/);
  expect(r.downAtEnd).toEqual([up1]);
  expect(r.openedByHand).toBe(false);
  expect(r.stats.quietAtNs).not.toBeNull();
  expect((r.stats.quietAtNs! - r.tInjectNs) / 1e6).toBeLessThan(OBSERVE_MS);
}

describe('loops of frames the first lab never sent', () => {
  it('an IPv6 multicast (Neighbor Advertisement to ff02::1): shuts up1, as a loop', async () => {
    const { r, trips } = await storm('ipv6-na', { kind: 'ipv6mc' });
    expectUp1Cut(r, trips);
  });

  it('an 802.1Q-tagged broadcast (VLAN 100) through trunking bridges: shuts up1, as a loop', async () => {
    const { r, trips } = await storm('vlan100-tagged', { kind: 'broadcast', vlan: 100 });
    expectUp1Cut(r, trips);
  });
});

describe('a loop of large frames over a slow link', () => {
  for (const mbit of [2, 10]) {
    it(`1500-byte broadcasts over ${mbit} Mbit/s uplinks (${Math.round((mbit * 1e6) / 8 / 1514)} frames/s per port): shuts up1 within ${SLOW_TARGET_MS} ms, as a loop`, async () => {
      await shapeUplinks(lab, ['up1', 'up2'], mbit);
      try {
        const { r, trips, verdictMs } = await storm(`slow-${mbit}mbit-1500B`, { kind: 'broadcast', size: 1500 });
        expectUp1Cut(r, trips);
        expect(verdictMs).toBeLessThan(SLOW_TARGET_MS);
      } finally {
        await unshapeUplinks(lab, ['up1', 'up2']);
      }
    });
  }

  it(`9000-byte (jumbo) broadcasts over 10 Mbit/s uplinks (~138 frames/s per port): shuts up1 within ${SLOW_TARGET_MS} ms, as a loop`, async () => {
    await setLabMtu(lab, 9000);
    try {
      await shapeUplinks(lab, ['up1', 'up2'], 10, 16); // the bucket must hold a 9 kB frame
      const { r, trips, verdictMs } = await storm('slow-10mbit-9000B', { kind: 'broadcast', size: 9000 });
      expectUp1Cut(r, trips);
      expect(verdictMs).toBeLessThan(SLOW_TARGET_MS);
    } finally {
      await unshapeUplinks(lab, ['up1', 'up2']);
      await setLabMtu(lab, 1500);
    }
  });
});

describe('legitimate broadcast at a slow loop\'s rates', () => {
  it('1500-byte broadcasts both ways through up1 at 800 frames/s each (rx ≈ tx, all broadcast, loop open): nothing trips', async () => {
    const a = agent!;
    await linkDown(lab, 'up2'); // no loop: a closed one would circle every broadcast
    const seen = readJournalStrict(a.stateDir).length;
    try {
      const each = { kind: 'broadcast', size: 1500, pps: 800, duration: 1.5 } as const;
      const [x, y] = await Promise.all([inject(lab, 'vm1', 'eth0', each), inject(lab, 'prod', 'eth0', each)]);
      await sleep(200);
      console.log(`[more-shapes benign-slow-rates] sent ${x.sent} vm1->, ${y.sent} prod-> broadcast`);
      expect(x.sent).toBeGreaterThan(1000);
      expect(y.sent).toBeGreaterThan(1000);
      const acted = readJournalStrict(a.stateDir).slice(seen).filter((e) => e.event !== 'start');
      expect(acted).toEqual([]);
    } finally {
      await resetPorts(lab);
      // up2 coming back up closed the loop again: the breaker would cut up2 first now.
      await up1JoinedLast();
    }
  });
});

describe('a loop that starts under heavy legitimate unicast', () => {
  it('20k frames/s each way through the uplinks trips nothing; the loop started under it shuts up1', async () => {
    const [vm1, prod] = [await macOf(lab.ns.vm1, 'eth0'), await macOf(lab.ns.prod, 'eth0')];
    // prod -> vm1 enters by up1, vm1 -> prod leaves by up2; both MACs pinned, so no frame of the
    // stream is ever flooded (in a closed loop a flooded frame would circle).
    const pins: Array<[string, string, string]> = [
      [lab.ns.sw, vm1, 'sw1'],
      [lab.ns.host, vm1, 'vm1'],
      [lab.ns.sw, prod, 'swp'],
      [lab.ns.host, prod, 'up2'],
    ];
    for (const [n, mac, port] of pins) await pinMac(n, mac, port);
    const a = agent!;
    try {
      const stream = { kind: 'unicast', pps: 20_000, duration: 2 } as const;
      let toVm: Promise<InjectResult> | null = null;
      let toProd: Promise<InjectResult> | null = null;
      try {
        // The loop's frame comes from a MAC no bridge pinned (vm1's own is pinned on br0). The
        // stream runs alone first (its senders busy-wait a core each): nothing may trip.
        const before = async () => {
          const seen = readJournalStrict(a.stateDir).length;
          toVm = inject(lab, 'prod', 'eth0', { ...stream, dstMac: vm1 });
          toProd = inject(lab, 'vm1', 'eth0', { ...stream, dstMac: prod });
          await sleep(700);
          expect(eventsOf(readJournalStrict(a.stateDir).slice(seen), 'trip')).toEqual([]);
        };
        const { r, trips } = await storm('under-unicast', { kind: 'broadcast', srcMac: '02:77:00:00:0b:0b' }, { at: 'mgmt', before, beforeMs: 700 });
        expectUp1Cut(r, trips);
      } finally {
        const [x, y] = await Promise.all([toVm ?? Promise.resolve({ sent: 0 }), toProd ?? Promise.resolve({ sent: 0 })]);
        console.log(`[more-shapes under-unicast] stream sent ${x.sent} prod->vm1, ${y.sent} vm1->prod`);
        // The stream ran through the storm, at its rate, or this case measured nothing of its point.
        expect(x.sent).toBeGreaterThan(20_000);
        expect(y.sent).toBeGreaterThan(20_000);
      }
    } finally {
      for (const [n, mac, port] of pins) await unpinMac(n, mac, port);
    }
  });
});

describe('three uplinks over a slow link', () => {
  it('1500-byte broadcasts over three 10 Mbit/s uplinks: two of them shut (one is not enough), the loop goes quiet', async () => {
    lab = await addUplink(lab, 'up3', 'sw3');
    await shapeUplinks(lab, lab.loopPorts, 10);
    try {
      // The agent's port rescan (1 s) has found up3 in br0 (a fixed 1.5 s assumed it).
      expect(await listedIn(agent!, { up3: 'br0' }), "up3 in br0 in the agent's listing").toBe(true);
      const { r, trips } = await storm('slow-3up-10mbit-1500B', { kind: 'broadcast', size: 1500 });
      expect(r.stats.firstFrameNs).not.toBeNull();
      expect(r.downAtEnd).toHaveLength(2);
      for (const p of r.downAtEnd) expect(lab.loopPorts).toContain(p);
      expect([...trips.map((t) => String(t.port))].sort()).toEqual(r.downAtEnd);
      expect(r.openedByHand).toBe(false);
      expect(r.stats.quietAtNs).not.toBeNull();
      expect((r.stats.quietAtNs! - r.tInjectNs) / 1e6).toBeLessThan(OBSERVE_MS);
    } finally {
      await unshapeUplinks(lab, lab.loopPorts);
      lab = await removeUplink(lab, 'up3');
      await up1JoinedLast(); // two members were restored, up1 not necessarily last
    }
  });
});

describe('kernel STP on the host bridge', () => {
  it('STP on, the switch dropping BPDUs: a broadcast loop shuts up1 by its admin state (the kernel refuses the bridge state), as a loop', async () => {
    await hostStp(lab, true);
    try {
      await waitStp(lab, lab.loopPorts, 'forwarding');
      await up1JoinedLast();
      await waitStp(lab, lab.loopPorts, 'forwarding');
      const { r, trips } = await storm('stp-bpdu-filtered', { kind: 'broadcast' }, { before: () => waitStp(lab, lab.loopPorts, 'forwarding') });
      expectUp1Cut(r, trips);
      const action = trips[0]!.action as { via?: string; fallback?: string };
      expect(action.fallback).toMatch(/bridge state refused: EBUSY/);
      expect(action.via).toBe('sysfs-flags');
    } finally {
      await hostStpOff(lab);
    }
  });

  it('STP on with BPDUs passing: STP blocks an uplink; broadcast both ways at 5k frames/s for 1 s trips nothing', async () => {
    await hostStp(lab, false);
    try {
      // The host hears its own hellos back through the switch: one uplink goes blocking.
      await waitStp(lab, lab.loopPorts, (s) => [...s].sort().join(',') === 'blocking,forwarding');
      const seen = readJournalStrict(agent!.stateDir).length;
      const t = agent!.logs.length;
      await Promise.all([
        inject(lab, 'vm1', 'eth0', { kind: 'broadcast', pps: 5000, duration: 1 }),
        inject(lab, 'prod', 'eth0', { kind: 'broadcast', pps: 5000, duration: 1 }),
      ]);
      await sleep(300);
      expect(eventsOf(readJournalStrict(agent!.stateDir).slice(seen), 'trip')).toEqual([]);
      expect(agent!.logs.slice(t).filter((l) => l.msg === 'trip' || l.msg === 'would-trip')).toEqual([]);
    } finally {
      await hostStpOff(lab);
    }
  });
});

describe('uplinks named as VLAN subinterfaces', () => {
  it('up1.100 / up2.100 (a glob rule names them), a VLAN-100 tagged loop: shuts up1.100, as a loop', async () => {
    lab = await renameHostPorts(lab, new Map([['up1', 'up1.100'], ['up2', 'up2.100']]));
    // The agent's port rescan (1 s) has found the renamed ports (a fixed 1.5 s assumed it).
    expect(await listedIn(agent!, { 'up1.100': 'br0', 'up2.100': 'br0' }), "the renamed uplinks in the agent's listing").toBe(true);
    await up1JoinedLast('up1.100'); // a rename takes each port down and up: up2.100 came up last
    const { r, trips } = await storm('up1.100-vlan100', { kind: 'broadcast', vlan: 100 });
    expectUp1Cut(r, trips, 'up1.100');
  });

  // `bridge monitor fdb` caches ifindex -> name from its start and keeps printing the OLD name
  // (up1) for a port renamed afterwards: without a fresh monitor the agent saw the MAC flap on
  // ports that no longer exist and the slow path had no flap (nothing shut); a full-rate loop is
  // caught by rate (the case above).
  it('the same renamed uplinks under 10 Mbit/s, 1500-byte broadcasts: shuts up1.100, as a loop', async () => {
    // The agent restarted its fdb monitor for the renames, saying each once.
    const said = agent!.logs.filter((l) => l.component === 'fdb' && String(l.msg).startsWith('ports renamed'));
    expect(said.flatMap((l) => (l.renamed as Array<{ from: string; to: string }>).map((x) => `${x.from}->${x.to}`)).sort()).toEqual(['up1->up1.100', 'up2->up2.100']);
    await shapeUplinks(lab, lab.loopPorts, 10);
    try {
      const { r, trips } = await storm('up1.100-slow-10mbit-1500B', { kind: 'broadcast', size: 1500 });
      expectUp1Cut(r, trips, 'up1.100');
    } finally {
      await unshapeUplinks(lab, lab.loopPorts);
    }
  });
});
