// Loop shapes the first lab was never tuned on (issue 11), against the real agent in one kvm lab
// (policies/lab-bench.yaml: default thresholds, a large shut budget so each storm starts with
// budget left):
//  - a loop circling one unknown-unicast frame (to a MAC nobody owns): no broadcast or multicast
//    counter moves, only the totals and the FDB (the frame's source MAC flaps between up1/up2);
//  - a loop over uplinks shaped to 2 Mbit/s (tc tbf on both ends): it circles at ~4k frames/s
//    per port, under every flood threshold, and it is still a loop.
// Each must shut one loop member (up1, first by the shut order) as a loop while the storm runs.
//  - three unbonded uplinks into one switch (up3 added last, for the last case): frames double
//    each pass and one shut is not enough; two of them (up1 and up2 by name) must be shut at the
//    first verdict and the loop go quiet by the agent's doing, before the storm is opened by hand.
// And (before up3 is added) one VM flooding broadcast at full speed (the C sender, scripts/lab/flood.c: hundreds of
// kframes/s, as a VM's virtio NIC floods; the loop open): vm1 alone is shut, as a flood, within
// the frames its flood budget allows at the rate it ran.
// Every storm is bounded: stormWithAgent opens the loop by hand after observeMs, a guard downs the
// loop members after 2.5 s, and the lab is torn down in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentHandle } from '../../scripts/lab/agent.js';
import { resetPorts, stormWithAgent, type StormRun } from '../../scripts/lab/scenario.js';
import { addUplink, shapeUplinks, unshapeUplinks } from '../../scripts/lab/shapes.js';
import { linkDown, type Lab } from '../../scripts/lab/topology.js';
import { flood } from '../../scripts/lab/traffic.js';
import { startObserver } from '../../scripts/lab/observer.js';
import { stormStats, type CounterSeries } from '../../scripts/lab/analyze.js';
import { downHostPorts } from '../../scripts/lab/scenario.js';
import { FLOOD_BURST_FRAMES } from '../../agent/detect/signature.js';
import { eventsOf, newStateDir, readJournalStrict, REPO, kvmLabWithAgent, sleep, stopAgentAndLab, stormGuard, waitForNew } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-sh-';
const POLICY = `${REPO}policies/lab-bench.yaml`;
const OBSERVE_MS = 500;

let lab: Lab;
let agent: AgentHandle | null = null;

beforeAll(async () => {
  ({ lab, agent } = await kvmLabWithAgent(PREFIX, { policy: POLICY, stateDir: newStateDir('shapes') }));
});

afterAll(() => stopAgentAndLab(agent, PREFIX));

/** One storm; then every tripped port restored and every host port up for the next one. */
async function storm(kind: 'broadcast' | 'unicast'): Promise<{ r: StormRun; trips: Array<Record<string, unknown>> }> {
  const a = agent!;
  const seen = readJournalStrict(a.stateDir).length;
  const cancel = stormGuard(lab, 5000);
  let r: StormRun;
  const t0 = Date.now();
  try {
    r = await stormWithAgent(lab, a, OBSERVE_MS, kind);
  } finally {
    cancel();
  }
  if (process.env.SBT_SHAPES_DEBUG) console.log(`storm took ${Date.now() - t0} ms`);
  await sleep(100); // the trip line follows its verified link-down
  const events = readJournalStrict(a.stateDir).slice(seen);
  const trips = eventsOf(events, 'trip');
  if (process.env.SBT_SHAPES_DEBUG) console.log(JSON.stringify(events.map((e) => [e.event, e.port, e.reason, (e.evidence as { clues?: string[] } | undefined)?.clues])));
  for (const t of trips) {
    const restored = waitForNew(a, (l) => l.msg === 'restore' && l.port === t.port, 5000);
    await a.ask('restore', { port: t.port, reason: 'sbt shapes: next storm' });
    await restored;
  }
  await resetPorts(lab);
  const ev = (t: Record<string, unknown>) => (t.evidence as { tNs: number; clues: string[] } | undefined);
  console.log(
    `[agent-shapes ${kind}] down=${r.downPorts.join(',') || 'none'} framesLeaked=${r.stats.framesLeaked} msToQuiet=${r.stats.msToQuiet?.toFixed(1)} ` +
      `verdictMs=${trips.map((t) => ((ev(t)!.tNs - r.tInjectNs) / 1e6).toFixed(1)).join(',')} trips=${trips.map((t) => `${String(t.port)}(${String(t.reason)})`).join(';')}`,
  );
  return { r, trips };
}

describe('loops under every flood threshold', () => {
  it('shuts up1 of a loop circling an unknown-unicast frame, as a loop', async () => {
    const { r, trips } = await storm('unicast');
    expect(r.stats.firstFrameNs).not.toBeNull(); // the frame did circle and reach prod
    expect(r.downPorts).toEqual(['up1']);
    expect(trips.map((t) => t.port)).toEqual(['up1']);
    expect(String(trips[0]!.reason)).toMatch(/loop on br0/);
  });

  it('shuts up1 of a loop over 2 Mbit/s uplinks (a few thousand frames/s), as a loop', async () => {
    await shapeUplinks(lab, ['up1', 'up2'], 2);
    try {
      const { r, trips } = await storm('broadcast');
      expect(r.stats.firstFrameNs).not.toBeNull();
      expect(r.downPorts).toEqual(['up1']);
      expect(trips.map((t) => t.port)).toEqual(['up1']);
      expect(String(trips[0]!.reason)).toMatch(/loop on br0/);
      // The point of the shape: the storm ran under floodPps (20000). The median sample, not the
      // max: the token bucket's 4 kB burst lets ~60 frames through in one 1 ms sample.
      const w = (trips[0]!.evidence as { window: Array<{ port: string; floodPps: number }> }).window.filter((x) => x.port === 'up1');
      const sorted = w.map((x) => x.floodPps).sort((a, b) => a - b);
      expect(sorted[sorted.length >> 1]).toBeLessThan(20_000);
    } finally {
      await unshapeUplinks(lab, ['up1', 'up2']);
    }
  });
});

describe('one VM flooding broadcast at full speed', () => {
  it('shuts vm1 alone, as a flood, within its budget at the rate the flood ran', async () => {
    const a = agent!;
    const FLOOD_PPS = 20_000; // policies/lab-bench.yaml keeps the default floodPps
    await linkDown(lab, 'up2'); // no loop: only the flood runs
    const seen = readJournalStrict(a.stateDir).length;
    const obs = await startObserver(lab.ns.prod, ['eth0'], 4000);
    let sent: Awaited<ReturnType<typeof flood>>;
    let prod: CounterSeries;
    try {
      // Bounded by the sender itself (1.5 s, then alarm), and by run()'s timeout.
      sent = await flood(lab, 'vm1', 'eth0', { duration: 1.5 });
    } finally {
      prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
    }
    await sleep(100);
    const down = await downHostPorts(lab);
    const trips = eventsOf(readJournalStrict(a.stateDir).slice(seen), 'trip');
    for (const t of trips) {
      const restored = waitForNew(a, (l) => l.msg === 'restore' && l.port === t.port, 5000);
      await a.ask('restore', { port: t.port, reason: 'sbt shapes: next storm' });
      await restored;
    }
    await resetPorts(lab);
    const st = stormStats(prod, sent.tFirstNs);
    const ranMs = st.quietAtNs !== null && st.firstFrameNs !== null ? (st.quietAtNs - st.firstFrameNs) / 1e6 : NaN;
    const pps = (st.framesLeaked ?? NaN) / (ranMs / 1000);
    // Storm-control's burst: at rate r over floodPps the budget is spent in B/(r - floodPps) s, so
    // about r*B/(r - floodPps) frames pass before the verdict; 50 ms of the flood more for the
    // sampler, the decision and the link-down on a busy host. The hold (floodHoldMs, 300 ms) that
    // cut floods before the budget lets ~5x that through.
    const bound = (pps * FLOOD_BURST_FRAMES) / (pps - FLOOD_PPS) + pps * 0.05;
    const verdictMs = trips.map((t) => (((t.evidence as { tNs: number }).tNs - sent.tFirstNs) / 1e6).toFixed(1));
    console.log(`[agent-shapes vm-flood] sent=${sent.sent} in ${((sent.tLastNs - sent.tFirstNs) / 1e6).toFixed(0)} ms; at prod ${st.framesLeaked} frames over ${ranMs.toFixed(1)} ms (${Math.round(pps)} pps), bound ${Math.round(bound)}; verdictMs=${verdictMs.join(',')} down=${down.join(',')}`);
    expect(down).toEqual(['up2', 'vm1']); // up2 by the test, vm1 by the agent
    expect(trips.map((t) => t.port)).toEqual(['vm1']);
    expect(String(trips[0]!.reason)).toMatch(/flood from vm1/);
    // Quiet at prod long before the sender's 1.5 s were over (after the cut it sends into a dead link).
    expect(st.quietAtNs).not.toBeNull();
    expect(st.quietAtNs!).toBeLessThan(sent.tFirstNs + 1000e6);
    // A full-speed flood: far over the threshold, or this test measured nothing of its point.
    expect(pps).toBeGreaterThan(3 * FLOOD_PPS);
    expect(st.framesLeaked!).toBeLessThan(bound);
  });
});

describe('three unbonded uplinks into one switch', () => {
  it('shuts two of the three uplinks at the first verdict (they are every way back into br0), and the loop goes quiet', async () => {
    lab = await addUplink(lab, 'up3', 'sw3');
    const seen = readJournalStrict(agent!.stateDir).length;
    const { r, trips } = await storm('broadcast');
    const j = readJournalStrict(agent!.stateDir).slice(seen);
    const tNs = (e: Record<string, unknown> | undefined) => (e?.evidence as { tNs?: number } | undefined)?.tNs ?? NaN;
    const stopMs = (e: Record<string, unknown> | undefined) => (((e?.action as { stoppedNs?: number } | undefined)?.stoppedNs ?? NaN) - r.tInjectNs) / 1e6;
    console.log(`[agent-shapes 3up] verdicts at ${trips.map((t) => ((tNs(t) - r.tInjectNs) / 1e6).toFixed(2)).join(', ')} ms, stops at ${trips.map((t) => stopMs(t).toFixed(2)).join(', ')} ms, quiet at ${r.stats.msToQuiet?.toFixed(2)} ms: ${trips.map((t) => String(t.reason)).join(' | ')}`);
    expect(r.stats.firstFrameNs).not.toBeNull();
    // Two of the three uplinks, the two the loop needs, and nothing else. Which two depends on
    // which members the first verdict's sample named in shut order (usually up1 and up2 by name;
    // up3, plugged in just now, goes first when it is one of them): all three are equal in shut order.
    const ups = ['up1', 'up2', 'up3'];
    expect(r.downPorts).toHaveLength(2);
    for (const p of r.downPorts) expect(ups).toContain(p);
    const order = trips.map((t) => t.port);
    expect([...order].sort()).toEqual([...r.downPorts].sort());
    // Both from the first verdict: only up1..up3 take frames into br0 (vm1 sent one frame), so
    // one cut would leave two circling (breaker twoCutsWhy). No escalation, no second verdict.
    // (Old main: the first shut, then an escalation 2.3-4.3 ms after its stop, on a later verdict.)
    expect(eventsOf(j, 'escalate')).toEqual([]);
    expect(tNs(trips[1])).toBe(tNs(trips[0]));
    const kept = ups.find((p) => !r.downPorts.includes(p))!;
    const two = `${ups.join(',')} are every way back into br0 \\(no other port takes in what circles\\): a loop through three ports of one bridge needs two cuts, one leaves the other two circling; ${kept} stays up`;
    // The first shut is the first among its verdict's members: up3, plugged in just now, when it
    // is one of them (a recent joiner goes first, breaker/state.ts RECENT_JOIN_MS), else the first
    // by name. up3 is enslaved and brought up: the reason names whichever of the two the agent
    // saw last (the enslave, or the carrier-up after it, seen by a listing or read at the verdict:
    // the busy clean-clone run of c2c1ae1 gave the carrier).
    const joinedUp3 = `up3( joined br0 \\d+ ms before this verdict|'s carrier came up (in the )?\\d+ ms before this verdict( \\(read during this storm\\))?, already in br0)`;
    expect(String(trips[0]!.reason)).toMatch(new RegExp(`^loop on br0: shut ${order[0]} \\((${joinedUp3}: [^;]+; )?first of ${order[0]},up\\d,up\\d by shut order[^;]*; ${two}: ${order[1]} is shut with it\\)$`));
    if (order[0] !== 'up3') expect(String(trips[0]!.reason)).not.toMatch(/joined|carrier came up/);
    expect(String(trips[1]!.reason)).toMatch(new RegExp(`; ${two}: shut with ${order[0]}\\)$`));
    // Quiet at prod by the agent's doing: with two of three down, nothing is opened by hand,
    // and the quiet came inside the observation (a storm still running has no quiet point).
    expect(r.stats.quietAtNs).not.toBeNull();
    expect((r.stats.quietAtNs! - r.tInjectNs) / 1e6).toBeLessThan(OBSERVE_MS);
  });
});
