import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ActionRequest, ActionResult, FdbMove, JournalEvent, PortPolicy, PortRates, Policy, TickFrame } from '../types.js';
import { executeLinkAction, type ActionOptions } from '../actions/link.js';
import { initialBreakerState } from '../breaker/state.js';
import { macFromLine, WARM_BRIDGE, WARM_PORTS, warmPorts } from '../detect/warmup.js';
import { blankRates } from '../sample/rates.js';
import { createExecutor, type Executor } from './executor.js';
import { portKinds, type DownStages, type PortKind } from './port-kinds.js';
import { createTick, type PipelineTick } from './tick.js';
import type { WatchedPorts } from './ports.js';

// Pay the rest of a trip's first-run costs at start (issue 11 item 4). The detector and the
// breaker warm up on their own (detect/warmup.ts, breaker/warmup.ts); what a fresh agent's first
// storm still ran for the first time was everything around them: the tick's breaker call and
// trip intent, the executor, the port kind, the link action and its results coming back. Lab
// probes of cold kvm storms (session 13): verdict tick to the bridge-state change 2.5-3 ms, of
// which breaker call, intent and dispatch ~2 ms, against ~1.2 ms in the agent's third storm.
//
// Here the real tick, executor and link action run a few synthetic loops on the warm-up's ports.
// Nothing leaves the process: the link action works on a sysfs tree in a temp directory (flags,
// ifindex, brport/state files) through a setter that writes that tree (no netlink), with no
// retries (so never `ip`), link-ups are answered without running anything, and journal lines
// go to /dev/null.

/** Synthetic loops run through the pipeline (each with a fresh tick and breaker). */
export const WARM_TRIPS = 6;
/** Ticks per loop: the storm until its member is stopped, then quiet for the settle. */
const TICKS_PER_TRIP = 60;

export interface TripWarmUp {
  /** Link-downs that reached the state change (each one a warm trip). */
  stops: number;
  /** Link-downs that ended with their admin-down (the async tail ran too). */
  downs: number;
  journaled: number;
}

/** Run WARM_TRIPS synthetic loops through the real tick, executor and link action; see the file comment. */
export async function warmUpTrips(policy: Policy, portPolicy: PortPolicy): Promise<TripWarmUp> {
  const root = mkdtempSync(join(tmpdir(), 'stormbreaker-warm-'));
  const devNull = openSync('/dev/null', 'w');
  const out: TripWarmUp = { stops: 0, downs: 0, journaled: 0 };
  let pending: Promise<unknown>[] = [];
  try {
    const ifindex = new Map(WARM_PORTS.map((p, i) => [p, 1000 + i]));
    for (const [p, i] of ifindex) fakePort(root, p, i);
    const journal = (e: JournalEvent): void => {
      writeSync(devNull, `${JSON.stringify(e)}\n`);
      out.journaled++;
    };
    for (let n = 0; n < WARM_TRIPS; n++) {
      let stopped = false;
      const kind = warmKind(root, ifindex, (p) => {
        pending.push(p);
        p.then((r) => r.ok && out.downs++, () => {});
      }, () => {
        stopped = true;
        out.stops++;
      });
      const run = oneLoop(policy, portPolicy, kind, journal, () => stopped);
      for (let i = 0; i < TICKS_PER_TRIP; i++) {
        run.step();
        // The link action's tail (the admin-down on libuv's pool) and the results it brings.
        await new Promise((r) => setImmediate(r));
      }
      run.end();
      await Promise.allSettled(pending);
      pending = [];
      // The final results (after the admin-down) through the breaker: its trip events.
      for (let i = 0; i < 3; i++) run.step();
      for (const [p] of ifindex) fakePort(root, p, ifindex.get(p)!);
    }
  } finally {
    await Promise.allSettled(pending);
    closeSync(devNull);
    rmSync(root, { recursive: true, force: true });
  }
  return out;
}

/** A bridge port as sysfs shows it: admin-up, forwarding. */
function fakePort(root: string, name: string, ifindex: number): void {
  mkdirSync(join(root, name, 'brport'), { recursive: true });
  writeFileSync(join(root, name, 'flags'), '0x1003\n');
  writeFileSync(join(root, name, 'ifindex'), `${ifindex}\n`);
  writeFileSync(join(root, name, 'brport', 'state'), '3\n');
}

/** The local kind's link-down on the temp tree; link-ups answered without running anything. */
function warmKind(root: string, ifindex: ReadonlyMap<string, number>, track: (p: Promise<ActionResult>) => void, onStop: () => void): PortKind {
  const byIndex = new Map([...ifindex].map(([p, i]) => [i, p]));
  const base: ActionOptions = {
    timeoutMs: 1000,
    retries: 0, // attempt 1 only: the sysfs route; a retry would run `ip`
    sysRoot: root,
    setBridgeState: (i, state) => {
      const p = byIndex.get(i);
      if (p === undefined) return 19; // ENODEV, as the kernel
      writeFileSync(join(root, p, 'brport', 'state'), `${state}\n`);
      return 0;
    },
  };
  return {
    id: 'warm-up',
    checkName: (p) => ifindex.has(p),
    down(req: ActionRequest, _previous, stages?: DownStages) {
      const p = executeLinkAction(req, {
        ...base,
        ifindexHint: ifindex.get(req.port),
        ...(stages ? { onStopped: (r: ActionResult) => (onStop(), stages.onStopped(r)), adminDownGate: stages.adminDownGate } : {}),
      });
      track(p);
      return p;
    },
    up: async (req) => ({ kind: req.kind, port: req.port, ok: true, via: 'warm-up', durationMs: 0, attempts: 1, verified: true }),
    verify: () => true,
    reassertReason: () => 'warm-up',
  };
}

/** One tick and executor over a synthetic two-port loop with a flapping MAC, until a member is stopped. */
function oneLoop(policy: Policy, portPolicy: PortPolicy, kind: PortKind, journal: (e: JournalEvent) => void, stopped: () => boolean): { step(): void; end(): void } {
  const ports = warmPorts(portPolicy);
  const rates: PortRates[] = WARM_PORTS.map((p) => blankRates(p, WARM_BRIDGE, NaN));
  const learning = new Set(WARM_PORTS);
  const learningBridges = new Set([WARM_BRIDGE]);
  const move: FdbMove = { tNs: 0, bridge: WARM_BRIDGE, mac: macFromLine(), port: WARM_PORTS[0]! };
  const moves: FdbMove[] = [move];
  const none: FdbMove[] = [];
  let t = 1e12;
  let i = 0;
  let ended = false;
  const watched: WatchedPorts = {
    all: () => ports,
    judged: () => ports,
    rates: () => rates,
    collect(f: TickFrame) {
      const loop = !stopped();
      const jitter = 1 + ((i * 7919) % 13) / 997;
      const pps = loop ? 5 * portPolicy.thresholds.floodPps * jitter : 0.5 * jitter;
      for (let k = 0; k < rates.length; k++) {
        const r = rates[k]!;
        const member = k < 2;
        r.valid = true;
        r.dtMs = jitter;
        r.rxPps = member ? pps : 0;
        r.txPps = member ? pps * 1.02 : 2 * pps;
        r.floodPps = member ? pps : 0;
        r.bcastPps = r.floodPps;
        r.rxBps = r.rxPps * 64.5;
      }
      move.tNs = f.tNs;
      move.port = WARM_PORTS[i % 2]!;
      f.fdbMoves = loop ? moves : none;
      f.fdbPorts = learning;
      f.fdbBridges = learningBridges;
      f.warm = loop;
    },
    consume() {},
    add() {},
    remove() {},
    sources: () => [],
    merge() {},
  };
  // Wired as in the daemon: the tick's commands go to the executor, its results to the tick's inbox.
  let executor: Executor | null = null;
  const tick: PipelineTick = createTick({
    watched,
    policy: () => policy,
    wallMs: Date.now,
    breaker: initialBreakerState(),
    now: () => t,
    out: { execute: (c, tNs) => executor!.execute(c, tNs), record: journal, intent: journal, verify: () => {}, recoveryDue: () => {} },
  });
  executor = createExecutor({
    kinds: portKinds([kind]),
    clock: { now: () => t },
    results: tick.inbox.results,
    wake: () => {},
    previous: () => undefined,
    breaker: tick.breaker,
    record: journal,
    policy: () => policy,
    stopped: () => ended,
  });
  return {
    step() {
      t += 1e6 * (1 + ((i * 7919) % 13) / 997);
      i++;
      tick.run(t);
    },
    end() {
      ended = true; // open any admin-down gate still waiting
    },
  };
}
