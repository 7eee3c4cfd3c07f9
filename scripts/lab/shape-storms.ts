// Storm shapes for the reaction benchmark (issue 11): every shape the agent must break, built on
// the two base labs, and one storm of a shape against either the agent or the near-limit poller.
// The storm is bounded on every path: after observeMs the loop is opened (or the flood stopped)
// by hand whatever the breaker did.
import { ns, run } from './exec.js';
import { armInject, flood, inject, type FrameKind } from './traffic.js';
import { startObserver, type ObserverKind } from './observer.js';
import { ringDropsBetween, SETTLE_FRAMES, stormStats, type CounterSeries } from './analyze.js';
import { labDistEntry } from './assets.js';
import { startJsonProc } from './jsonproc.js';
import { addUplink, setEnslaved, setSwitchEnd, shapeUplinks } from './shapes.js';
import { setLabMtu } from './more-shapes.js';
import { startTapGuest, toMacvtapLab } from './macvtap-shapes.js';
import { hostStp, waitStp } from './stp-shapes.js';
import { toOverlayLab, VX } from './overlay-shapes.js';
import { addGuestPorts } from './many-ports.js';
import { downHostPorts, loopStillClosed, openLoop, resetPorts } from './scenario.js';
import { linkDown, type Lab, type Shape } from './topology.js';
import type { AgentHandle } from './agent.js';
import type { NearLimitResult } from './near-limit.js';

export const SHAPES = ['kvm', 'esx', 'kvm-unicast', 'kvm-multicast', 'kvm-slow', 'kvm-slow-1500', 'kvm-jumbo', 'kvm-3up', 'vm-flood', 'kvm-hotplug', 'kvm-carrier', 'kvm-nolearn', 'kvm-hairpin', 'kvm-macvtap', 'kvm-stp', 'kvm-vxlan', 'kvm-many'] as const;
export type ShapeName = (typeof SHAPES)[number];

export interface ShapeSpec {
  base: Shape;
  /** The frame that starts the storm (one frame; a flood sends at full speed for FLOOD_S). */
  kind: FrameKind;
  /** That frame's length without FCS (send.py's --size; 60 when absent). */
  size?: number;
  flood: boolean;
  /** A flood's sender: the C one at full speed (hundreds of kframes/s), or send.py (~55-220k, with the machine's load). */
  sender: 'c' | 'python';
  /** Ports the near-limit poller cuts (no decisions: the ones the agent should cut). */
  cut: string[];
  /** Turn the base lab into this shape (once, after build). */
  prepare(lab: Lab): Promise<Lab>;
  /** Between storms: every port back as the shape needs it. */
  reset(lab: Lab): Promise<void>;
  /**
   * The change that closes the loop, made at each storm right before its frame (the hotplug
   * shape: enslave the second uplink); absent when the loop is closed from the start.
   */
  plug?(lab: Lab): Promise<void>;
  /** The 1 s storm-control baseline (20k frames/s level, 60-byte frames) applies: the base loops only. */
  baseline: boolean;
}

const FLOOD_S = 1.5;
/**
 * The near-limit poller's own time limit. It is stopped when the observation ends; this only
 * bounds it if the bench dies. It was observeMs + 1000 from its start, and the observer's start
 * and the sender's (a node and a python start in namespaces, 0.3-0.6 s each with a core busy)
 * come between its start and the frame: on a busy machine it could end before the storm began.
 */
export const POLLER_MS = 20_000;

const plain = (base: Shape, kind: FrameKind, cut: string[]): ShapeSpec => ({ base, kind, flood: false, sender: 'python', cut, prepare: async (l) => l, reset: resetPorts, baseline: false });

export function shapeSpec(name: ShapeName, floodSender: 'c' | 'python' = 'c'): ShapeSpec {
  switch (name) {
    case 'kvm':
      return { ...plain('kvm', 'broadcast', ['up1']), baseline: true };
    case 'esx':
      return { ...plain('esx', 'broadcast', ['vmA1']), baseline: true };
    case 'kvm-unicast':
      return plain('kvm', 'unicast', ['up1']);
    case 'kvm-multicast':
      return plain('kvm', 'multicast', ['up1']);
    case 'kvm-slow':
      // Both ends of both uplinks through a 2 Mbit/s token bucket: ~4k frames/s per port.
      return { ...plain('kvm', 'broadcast', ['up1']), prepare: async (l) => (await shapeUplinks(l, ['up1', 'up2'], 2), l) };
    case 'kvm-slow-1500':
      // A 1500-byte broadcast over the same 2 Mbit/s buckets: ~165 frames/s per port (as
      // agent-more-shapes' slow-link loop).
      return { ...shapeSpec('kvm-slow'), size: 1500 };
    case 'kvm-jumbo':
      // A 9000-byte broadcast over 10 Mbit/s, every link at MTU 9000 and buckets of 16 kB (a
      // bucket smaller than the frame drops it): ~138 frames/s per port (as agent-more-shapes).
      return {
        ...plain('kvm', 'broadcast', ['up1']),
        size: 9000,
        prepare: async (l) => (await setLabMtu(l, 9000), await shapeUplinks(l, ['up1', 'up2'], 10, 16), l),
      };
    case 'kvm-3up':
      // Three unbonded uplinks into one switch: one cut is not enough.
      return { ...plain('kvm', 'broadcast', ['up1', 'up2']), prepare: (l) => addUplink(l, 'up3', 'sw3') };
    case 'vm-flood':
      // vm1 floods broadcast at full speed; the loop is open (up2 down) so only the flood runs.
      return {
        base: 'kvm',
        kind: 'broadcast',
        flood: true,
        sender: floodSender,
        cut: ['vm1'],
        prepare: async (l) => (await linkDown(l, 'up2'), { ...l, loopPorts: ['up1'] }),
        reset: async (l) => (await resetPorts(l), await linkDown(l, 'up2')),
        baseline: false,
      };
    case 'kvm-hotplug':
      // Issue 11: "a second uplink plugged into the bridge after the agent started". The agent
      // starts with up1 alone in br0 (up2 up, its switch end up, no master); each storm enslaves
      // up2 (ip link set up2 master br0), which closes the loop, and one broadcast leaves vm1 right
      // after the enslave returns (an armed sender: a pipe wake-up, no process start). t0 is that
      // frame, as for every shape; msPlugToInject says how long after the enslave it left. After
      // each storm up2 is freed again, so warm, idle and cold storms all meet one uplink.
      // The near-limit poller is given both uplinks, up2 included though it is not in the bridge
      // when the poller starts: it is a reference for what the machine allows, not a breaker that
      // has to find the new port.
      return {
        ...plain('kvm', 'broadcast', ['up1', 'up2']),
        prepare: async (l) => (await setEnslaved(l, 'up2', false), l),
        reset: async (l) => (await resetPorts(l), await setEnslaved(l, 'up2', false)),
        plug: (l) => setEnslaved(l, 'up2', true),
      };
    case 'kvm-nolearn':
      // MAC learning off on both uplinks (bridge link set dev upN learning off), one unknown
      // unicast frame: the bridge's FDB moves nothing, no flood counter moves; judged by the
      // tripwire's unknown-unicast watch (the frame's source MAC moving between the uplinks),
      // else on the ports' totals (sustained, SLOW_LOOP_MS), as in agent-port-modes.
      return {
        ...plain('kvm', 'unicast', ['up1']),
        prepare: async (l) => {
          for (const p of ['up1', 'up2']) await run(ns(l.ns.host, ['bridge', 'link', 'set', 'dev', p, 'learning', 'off']));
          return l;
        },
      };
    case 'kvm-hairpin':
      // A loop of one port (as agent-port-modes' hairpin case): hairpin on up1 and on the switch
      // port beyond it (sw1), up2 down and out of the shape's ports. One broadcast leaves by up1,
      // comes back in by it and is sent out by it again. The lab's loop is up1 alone
      // (loopMinMembers 1), so the bench opens it by hand when up1 stays up.
      return {
        ...plain('kvm', 'broadcast', ['up1']),
        prepare: async (l) => {
          await linkDown(l, 'up2');
          await run(ns(l.ns.host, ['bridge', 'link', 'set', 'dev', 'up1', 'hairpin', 'on']));
          await run(ns(l.ns.sw, ['bridge', 'link', 'set', 'dev', 'sw1', 'hairpin', 'on']));
          return { ...l, loopPorts: ['up1'], loopMinMembers: 1, hostPorts: l.hostPorts.filter((p) => p !== 'up2') };
        },
      };
    case 'kvm-macvtap':
      // A host with no bridge (libvirt direct interfaces, scripts/lab/macvtap-shapes.ts): a guest
      // bridging its NICs macvtap0@up1 and macvtap1@up2 (tapvm.py on the macvtaps' char devices,
      // for the bench's life, at most 600 s; teardown ends it). vm1's NIC is a bridge-mode macvlan
      // on up1, so its broadcast circles one way (agent-macvtap's second case). Needs a policy
      // naming macvtap* (lab-bench.yaml does: role vm). The poller cuts macvtap1, the side whose
      // rx_packets move (macvtap0 only sends in this ring).
      return {
        ...plain('kvm', 'broadcast', ['macvtap1']),
        prepare: async (l) => {
          const m = await toMacvtapLab(l, 'bridge');
          await startTapGuest(m, 'bridge', 600);
          return m;
        },
      };
    case 'kvm-vxlan':
      // The classic overlay loop (scripts/lab/overlay-shapes.ts, agent-overlay's first case): host
      // A (the agent's) bridges up1 and vxlan-5, host B (no agent) bridges its uplink up2 and its
      // vxlan-5, both uplinks into one switch; a broadcast from vm1 circles through the switch and
      // the tunnel (UDP over the underlay NIC ul0, no bridge port). Needs a policy naming vxlan-*
      // (lab-bench.yaml does: role uplink); the agent cuts the tunnel port, and so does the
      // poller. Storm-control polices A's bridge ports, not the underlay.
      return { ...plain('kvm', 'broadcast', [VX]), prepare: (l) => toOverlayLab(l), baseline: true };
    case 'kvm-stp':
      // Kernel STP on br0 (stp_state 1), the switch dropping BPDUs (scripts/lab/stp-shapes.ts):
      // both uplinks forward and a broadcast storms. The kernel refuses the bridge state from
      // user space under its STP, so the agent stops the port by its admin state, as the poller
      // does. A port brought back up forwards only after STP's listening and learning (~4 s).
      return {
        ...plain('kvm', 'broadcast', ['up1']),
        prepare: async (l) => (await hostStp(l, true), await waitStp(l, ['up1', 'up2'], 'forwarding'), l),
        reset: async (l) => (await resetPorts(l), await waitStp(l, ['up1', 'up2'], 'forwarding')),
      };
    case 'kvm-many':
      // A full hypervisor (scripts/lab/many-ports.ts): br0 with 126 guest NICs beside up1/up2,
      // 128 ports to sample each tick; every storm frame is flooded out of all of them. The poller
      // reads the two uplinks only. lab-bench.yaml names vnet* as vm.
      return { ...plain('kvm', 'broadcast', ['up1']), prepare: (l) => addGuestPorts(l, 126) };
    case 'kvm-carrier':
      // A cable plugged into a NIC already in the bridge (the commonest way to close a loop by
      // hand, and on ESXi a vmnic in the vSwitch that gets link). The agent starts with up2 in br0
      // but without carrier (its switch end down); each storm brings the switch end up, the
      // bridge forwards on up2 at once, which closes the loop, and one broadcast leaves vm1 right
      // after. After each storm the switch end goes down again. The poller is given both uplinks.
      return {
        ...plain('kvm', 'broadcast', ['up1', 'up2']),
        prepare: async (l) => (await setSwitchEnd(l, 'up2', false), l),
        reset: async (l) => (await resetPorts(l), await setSwitchEnd(l, 'up2', false)),
        plug: (l) => setSwitchEnd(l, 'up2', true),
      };
  }
}

export interface ShapeRun {
  tInjectNs: number;
  /** Injection to quiet at prod, when the breaker stopped the storm; NaN when the bench did (or it never went quiet). */
  msFromInject: number;
  /** Injection to quiet at prod whoever stopped the storm (the bench's by-hand opening included); NaN if never quiet. */
  msQuietObserved: number;
  /** The observer's poll before msQuietObserved: prod's last frame came between the two (its lag). With the kernel observer, the last frame's predecessor (~0 lag). */
  msQuietAfter: number;
  /** What timed prod. */
  observer: ObserverKind;
  /** Kernel observer: frames its ring lost between the injection and 20 ms after the quiet (or the end): the times then miss them. */
  ringDrops?: number;
  /** The breaker downed a port and left no loop closed by the end of the observation. */
  stoppedByBreaker: boolean;
  framesLeaked: number;
  /** Injection to the agent's first verdict (evidence tNs), NaN for the poller. */
  msToVerdict: number;
  down: string[];
  trips: Array<Record<string, unknown>>;
  /** The first 20 ms gap at prod, when the storm went on after it (more than SETTLE_FRAMES frames): a lull, not the end. */
  msFirstLull?: number;
  /** Hotplug shape: the enslave that closed the loop returned this long before the frame left (ms). */
  msPlugToInject?: number;
  /** The near-limit poller's run, ms from the injection (its start is negative), when it gave a result. */
  pollerWindow?: { startMs: number; endMs: number };
  /** The near-limit poller's cuts, ms from the injection (undefined for the agent, or when the poller gave no result). */
  pollerCuts?: Array<{ port: string; ms: number; doneMs: number; ok: boolean; error?: string }>;
  /** ms from the injection to when the breaker's first stop call began: the agent's link-down action (stoppedNs - forwardingStoppedMs), the poller's flags write (its cut's tNs). */
  msStopStart?: number;
}

export type Breaker = { kind: 'agent'; agent: AgentHandle } | { kind: 'near-limit' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Pure: did the breaker stop the storm? It downed a host port that was up before the storm, and
 * no two loop members are left up (a flood's lab has one loop port: any new down stops it). A
 * storm the bench had to end (loop opened by hand, flood run out) has no time of the breaker's.
 */
export function stoppedByBreaker(lab: Pick<Lab, 'loopPorts' | 'loopMinMembers'>, downBefore: readonly string[], downAfter: readonly string[]): boolean {
  return downAfter.some((p) => !downBefore.includes(p)) && !loopStillClosed(lab, downAfter);
}

/** One storm of `spec` in `lab`, broken by `b` (or by hand after observeMs). */
export async function shapeStorm(lab: Lab, spec: ShapeSpec, b: Breaker, observeMs: number, opts: { observer?: ObserverKind } = {}): Promise<ShapeRun> {
  const downBefore = await downHostPorts(lab);
  const seen = b.kind === 'agent' ? b.agent.logs.length : 0;
  const poller =
    b.kind === 'near-limit'
      ? await startJsonProc<{ startNs: number }, NearLimitResult>(
          ns(lab.ns.host, [process.execPath, labDistEntry('near-limit-run.js'), '--ports', spec.cut.join(','), '--duration-ms', String(POLLER_MS)]),
          'near-limit',
          POLLER_MS + 5000,
        )
      : null;
  const observer = opts.observer ?? 'poll';
  const obs = await startObserver(lab.ns.prod, ['eth0'], observeMs + (spec.flood ? FLOOD_S * 1000 : 0) + 2000, { kind: observer });
  let prod: CounterSeries;
  let tInjectNs = 0;
  let tPlugNs = 0;
  let stopped = false;
  let near: NearLimitResult | undefined;
  try {
    if (spec.flood) {
      const kind = spec.kind === 'arp' || spec.kind === 'ipv6mc' ? 'broadcast' : spec.kind;
      // Both senders report their first frame's time only at their end.
      const sent = spec.sender === 'c' ? await flood(lab, 'vm1', 'eth0', { duration: FLOOD_S, kind }) : await inject(lab, 'vm1', 'eth0', { duration: FLOOD_S, kind });
      tInjectNs = sent.tFirstNs;
    } else if (spec.plug) {
      const armed = await armInject(lab, 'vm1', 'eth0', { count: 1, kind: spec.kind, ...(spec.size ? { size: spec.size } : {}) });
      try {
        await spec.plug(lab);
        tPlugNs = Number(process.hrtime.bigint());
        tInjectNs = (await armed.fire()).tFirstNs;
      } finally {
        armed.disarm();
      }
      await sleep(observeMs);
    } else {
      tInjectNs = (await inject(lab, 'vm1', 'eth0', { count: 1, kind: spec.kind, ...(spec.size ? { size: spec.size } : {}) })).tFirstNs;
      await sleep(observeMs);
    }
  } finally {
    const downs = await downHostPorts(lab).catch(() => [] as string[]);
    stopped = stoppedByBreaker(lab, downBefore, downs);
    if (loopStillClosed(lab, downs)) await openLoop(lab);
    near = poller ? await poller.stop().catch(() => undefined) : undefined;
    prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  // Quiet is the first 20 ms gap the storm did not resume after; the first gap alone is kept
  // when it differs (msFirstLull), to show how often a lull came before the end.
  const st = stormStats(prod, tInjectNs, 20, SETTLE_FRAMES);
  const lull = stormStats(prod, tInjectNs);
  const trips = b.kind === 'agent' ? b.agent.logs.slice(seen).filter((l) => l.msg === 'trip' || l.msg === 'escalate') : [];
  // The earliest verdict among the trips: a loop's trips are logged when their admin-downs end,
  // and a later member's may end first (the admin-downs wait for the loop to settle).
  const tripNs = trips.filter((x) => x.msg === 'trip').map((x) => (x as { evidence?: { tNs?: number } }).evidence?.tNs ?? NaN).filter((t) => t > 0);
  const first = tripNs.length > 0 ? { evidence: { tNs: Math.min(...tripNs) } } : undefined;
  const msQuietObserved = st.quietAtNs === null ? NaN : (st.quietAtNs - tInjectNs) / 1e6;
  const drops = observer === 'kernel' ? ringDropsBetween(prod, tInjectNs, st.quietAtNs === null ? Infinity : st.quietAtNs + 20e6) : 0;
  return {
    tInjectNs,
    msFromInject: stopped ? msQuietObserved : NaN,
    msQuietObserved,
    msQuietAfter: st.quietAfterNs === null ? NaN : (st.quietAfterNs - tInjectNs) / 1e6,
    observer,
    ...(drops > 0 ? { ringDrops: drops } : {}),
    stoppedByBreaker: stopped,
    framesLeaked: st.framesLeaked ?? NaN,
    msToVerdict: first?.evidence?.tNs ? (first.evidence.tNs - tInjectNs) / 1e6 : NaN,
    down: await downHostPorts(lab),
    trips,
    ...(lull.quietAtNs !== null && lull.quietAtNs !== st.quietAtNs ? { msFirstLull: (lull.quietAtNs - tInjectNs) / 1e6 } : {}),
    ...(tPlugNs > 0 ? { msPlugToInject: (tInjectNs - tPlugNs) / 1e6 } : {}),
    ...(near ? { pollerWindow: { startMs: (near.startNs - tInjectNs) / 1e6, endMs: (near.endNs - tInjectNs) / 1e6 } } : {}),
    ...(near ? { pollerCuts: near.cut.map((c) => ({ port: c.port, ms: (c.tNs - tInjectNs) / 1e6, doneMs: (c.tDoneNs - tInjectNs) / 1e6, ok: c.ok, ...(c.error ? { error: c.error } : {}) })) } : {}),
    ...firstStop(trips, near, tInjectNs),
  };
}

/** After an agent storm: restore what it tripped through the operator path, then reset the shape. */
export async function restoreAfter(lab: Lab, spec: ShapeSpec, r: ShapeRun, agent: AgentHandle | null): Promise<void> {
  if (agent) {
    for (const t of r.trips.filter((x) => x.msg === 'trip')) {
      const port = String(t.port);
      await agent.ask('restore', { port, reason: 'bench: next storm' }).catch(() => undefined);
      await agent.waitFor((l) => l.msg === 'restore' && l.port === port, 5000).catch(() => undefined);
    }
    agent.logs.length = 0;
  }
  await spec.reset(lab);
}

/** Pure: why the near-limit poller did not stop a storm, from its result (for the bench's log). */
export function pollerMiss(r: Pick<ShapeRun, 'pollerWindow' | 'pollerCuts'>): string {
  if (!r.pollerWindow || !r.pollerCuts) return 'the poller gave no result';
  if (r.pollerWindow.endMs < 0) return `the poller ended ${(-r.pollerWindow.endMs).toFixed(2)} ms before the frame`;
  if (r.pollerWindow.startMs > 0) return `the poller started ${r.pollerWindow.startMs.toFixed(2)} ms after the frame`;
  const failed = r.pollerCuts.filter((c) => !c.ok);
  if (failed.length > 0) return `the poller's cut failed: ${failed.map((c) => `${c.port} at ${c.ms.toFixed(2)} ms (${c.error ?? '?'})`).join(', ')}`;
  if (r.pollerCuts.length === 0) return `the poller cut nothing in ${r.pollerWindow.endMs.toFixed(0)} ms after the frame`;
  return `the poller cut ${r.pollerCuts.map((c) => `${c.port} at ${c.ms.toFixed(2)} ms`).join(', ')}, the loop stayed closed`;
}

/** When the breaker's first stop call began, ms from the injection: the earliest trip action's start, or the poller's first good cut. */
function firstStop(trips: Array<Record<string, unknown>>, near: NearLimitResult | undefined, t0: number): { msStopStart?: number } {
  const ns = [
    ...trips.filter((t) => t.msg === 'trip').map((t) => {
      const a = t.action as { stoppedNs?: number; forwardingStoppedMs?: number } | undefined;
      return a?.stoppedNs && a.forwardingStoppedMs !== undefined ? a.stoppedNs - a.forwardingStoppedMs * 1e6 : NaN;
    }),
    ...(near?.cut ?? []).filter((c) => c.ok).map((c) => c.tNs),
  ].filter((x) => x > 0);
  return ns.length > 0 ? { msStopStart: (Math.min(...ns) - t0) / 1e6 } : {};
}
