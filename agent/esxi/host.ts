// One ESXi host in the daemon: its SSH session, its inventory, its watched ports and their rates.
// The daemon sees ports and rates like local ones; what differs is timing (a block of counters
// every sampleMs, each interval measured on arrival) and that nothing here is judged when stale.
import type { ActionRequest, ActionResult, Counters, EsxiActionRecord, EsxiHostPolicy, Policy, PortPolicy, PortRates, TickSource } from '../types.js';
import { emptyCounters } from '../types.js';
import { computeRates } from '../sample/rates.js';
import type { EsxInventory } from './inventory.js';
import { readInventory } from './read-inventory.js';
import { judgeBroadcast, sectionCounters, streamItems, toCounters, watchedPorts, type BroadcastJudgement, type EsxPort } from './ports.js';
import { startSession, type RemoteExec, type Session, type SessionState, type SessionStatus } from './session.js';
import type { Block } from './stream.js';

/** Re-read the host's inventory this often (VMs come and go, vNICs reconnect). */
const INVENTORY_REFRESH_MS = 30_000;

interface Track {
  port: EsxPort;
  prev: Counters;
  cur: Counters;
  prevNs: number;
  rates: PortRates;
  bcast: BroadcastJudgement | undefined;
  lastError: string | null;
  /** tx broadcast + multicast of the previous and this block (NaN: not counted or not trusted). */
  txFloodPrev: number;
  txFloodCur: number;
}

export interface EsxHostStatus {
  host: string;
  address: string;
  session: SessionStatus;
  /** Judged right now: streaming and not stale. */
  live: boolean;
  ports: Array<{ port: string; kind: string; id: string; vm?: string; portgroup?: string; watched?: 'portgroup' | 'bridging-vm'; broadcast: string; lastError: string | null }>;
  missing: string[];
  inventoryProblems: string[];
  inventoryAgeMs: number | null;
  samplesPerSec: number;
}

/** What an action on this host is given; the action itself is injected (actions/esxi.ts). */
export interface EsxActionContext {
  host: EsxiHostPolicy;
  inventory: EsxInventory | null;
  exec: RemoteExec;
  retries: number;
  /** What the last trip of this port did (from the journal), for link-up. */
  previous?: EsxiActionRecord;
}
export type EsxAction = (req: ActionRequest, ctx: EsxActionContext) => Promise<ActionResult>;

/**
 * One ESXi host as a TickSource: its ports join the same detector and breaker as local ones.
 * collect() has nothing to do: blocks arrive on their own (onRates asks for a tick).
 */
export interface EsxHost extends TickSource {
  readonly name: string;
  /** Every port of this host the policy watches (also disconnected vNICs: they can be restored). */
  ports(): ReadonlyMap<string, PortPolicy>;
  /** Counters are arriving now. When false, none of its ports may be judged (stale data is never acted on). */
  live(): boolean;
  /**
   * Live, the last rates younger than staleMs, and none of them from before the last action
   * landed: only then may its ports be judged (old numbers are never acted on).
   */
  fresh(nowNs: number): boolean;
  /** One PortRates per watched port; `valid` only right after a block (see consume). */
  rates(): readonly PortRates[];
  /** After the detector has seen a block's rates: they must not count again on later ticks. */
  consume(): void;
  /** The last valid rates of each port (for status; never for judging). */
  shownRates(): ReadonlyMap<string, { rxPps: number; txPps: number; floodPps: number }>;
  act(req: ActionRequest, previous?: EsxiActionRecord): Promise<ActionResult>;
  /** The last inventory read (null before the first). */
  inventory(): EsxInventory | null;
  status(): EsxHostStatus;
  drop(why: string): void;
  stop(): Promise<void>;
}

export interface EsxHostHooks {
  /** Ports or liveness changed: rebuild the port map. */
  onPortsChanged(): void;
  /** A block was turned into rates: run a tick now. */
  onRates(): void;
  /** A fresh inventory was read (at connect, every 30 s, after actions). */
  onInventory?(inv: EsxInventory): void;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** Carries out link-down / link-up on the host (injected: esxi/ does not depend on actions/). */
  act: EsxAction;
  ssh?: string;
}

export function startEsxHost(policy: Policy, host: EsxiHostPolicy, retries: number, hooks: EsxHostHooks): EsxHost {
  let tracks: Track[] = [];
  let byItem = new Map<string, Track>();
  let portMap = new Map<string, PortPolicy>();
  let rateList: PortRates[] = [];
  let missing: string[] = [];
  let inventory: EsxInventory | null = null;
  let problems: string[] = [];
  let live = false;
  let refreshTimer: NodeJS.Timeout | null = null;
  // Arrival times (ms) of the last blocks: samples per second over the last few seconds.
  const arrivals: number[] = [];
  const shown = new Map<string, { rxPps: number; txPps: number; floodPps: number }>();
  let ratesAtNs = 0;
  /** Rates of a block not yet seen by the detector: consume() has work only then (it runs every tick). */
  let unconsumed = false;
  // After an action: blocks asked for before it landed straddle it; they are dropped, and the
  // first block after only sets a new baseline, so what is judged next is purely post-action.
  let ignoreThroughTick = 0;
  let rebase = false;
  // ...and until that purely post-action rate exists, the host's ports are not judged at all: the
  // breaker's settle must not find the pre-action hot state and escalate on it.
  let awaitingPost = false;
  const log = hooks.log;

  function setPorts(ports: EsxPort[]): void {
    const old = new Map(tracks.map((t) => [t.port.name, t]));
    tracks = ports.map((p) => {
      const o = old.get(p.name);
      // Same port, same counter source: keep its counters (a new vSwitch port ID starts over).
      if (o && o.port.id === p.id) return { ...o, port: p };
      return { port: p, prev: emptyCounters(), cur: emptyCounters(), prevNs: 0, rates: blankRates(p), bcast: undefined, lastError: null, txFloodPrev: NaN, txFloodCur: NaN };
    });
    byItem = new Map(tracks.map((t) => [`${t.port.kind}:${t.port.id}`, t]));
    portMap = new Map(tracks.map((t) => [t.port.name, t.port.policy]));
    rateList = tracks.map((t) => t.rates);
    hooks.onPortsChanged();
  }

  async function refresh(exec: Session['exec']): Promise<boolean> {
    // VMs already watched stay read: one cut down to a single connected vNIC must stay restorable.
    const alsoVms = [...new Set(tracks.map((t) => t.port.vm).filter((v): v is string => v !== undefined))];
    const r = await readInventory(exec, { host: host.name, onlyPortgroups: host.portgroups, bridgeSuspects: host.watchBridgingVms, alsoVms });
    inventory = r.inventory;
    problems = r.problems;
    if (problems.length) log.warn({ component: 'esxi', host: host.name, problems }, 'parts of the host inventory could not be read');
    hooks.onInventory?.(r.inventory);
    const w = watchedPorts(policy, host, r.inventory);
    if (w.missing.join() !== missing.join()) log.warn({ component: 'esxi', host: host.name, missing: w.missing }, 'the policy names things this host does not have: not watched');
    missing = w.missing;
    const changed = w.ports.length !== tracks.length || w.ports.some((p, i) => p.name !== tracks[i]!.port.name || p.id !== tracks[i]!.port.id);
    if (changed) setPorts(w.ports);
    return changed;
  }

  function onBlock(b: Block, tNs: number): void {
    arrivals.push(tNs / 1e6);
    if (arrivals.length > 50) arrivals.shift();
    if (b.tick <= ignoreThroughTick) return;
    if (rebase) {
      rebase = false;
      for (const t of tracks) t.prevNs = 0;
    } else if (awaitingPost) {
      awaitingPost = false;
    }
    for (const s of b.sections) {
      const t = byItem.get(`${s.kind}:${s.id}`);
      if (!t) continue;
      const raw = sectionCounters(s, host.counters);
      t.txFloodCur = NaN;
      if (!raw.ok) {
        t.cur.ok = false;
        if (t.lastError !== raw.error) log.warn({ component: 'esxi', host: host.name, port: t.port.name, err: raw.error }, 'counter read failed');
        t.lastError = raw.error;
      } else {
        const j = judgeBroadcast(t.bcast, raw.value);
        if (t.bcast?.reason !== j.reason && (!j.usable || !t.bcast?.usable)) log.info({ component: 'esxi', host: host.name, port: t.port.name, broadcast: j.reason }, 'broadcast counter judged');
        t.bcast = j;
        toCounters(raw.value, j, t.cur);
        // A driver that counts no rx broadcast counts no tx broadcast either (KB 341594's vmnic2).
        if (j.usable) t.txFloodCur = raw.value.txBroadcast + (Number.isFinite(raw.value.txMulticast) ? raw.value.txMulticast : 0);
        t.lastError = null;
      }
      const dtNs = t.prevNs === 0 ? NaN : tNs - t.prevNs;
      computeRates(t.prev, t.cur, dtNs, t.port.name, t.port.bridge, t.rates);
      const dTxFlood = t.txFloodCur - t.txFloodPrev;
      t.rates.txFloodPps = t.rates.valid && dTxFlood >= 0 ? (dTxFlood * 1e9) / dtNs : NaN;
      t.txFloodPrev = t.txFloodCur;
      if (t.rates.valid) shown.set(t.port.name, { rxPps: t.rates.rxPps, txPps: t.rates.txPps, floodPps: t.rates.floodPps });
      const swap = t.prev;
      t.prev = t.cur;
      t.cur = swap;
      t.prevNs = tNs;
    }
    ratesAtNs = tNs;
    unconsumed = true;
    hooks.onRates();
  }

  function onState(s: SessionState, why: string): void {
    const was = live;
    live = s === 'streaming';
    const level = s === 'refused' ? 'error' : s === 'stale' || s === 'backoff' ? 'warn' : 'info';
    log[level]({ component: 'esxi', host: host.name, state: s, why }, `ESXi host ${host.name}: ${s}`);
    if (!live) for (const t of tracks) t.prevNs = 0; // never diff across a gap
    if (was !== live) hooks.onPortsChanged();
  }

  const session = startSession(
    { ...host, ...(hooks.ssh ? { ssh: hooks.ssh } : {}) },
    {
      async prepare(exec) {
        await refresh(exec);
        if (refreshTimer) clearInterval(refreshTimer);
        refreshTimer = setInterval(() => {
          refresh(session.exec)
            .then((changed) => changed && session.restream('the watched ports changed'))
            .catch((e: Error) => log.warn({ component: 'esxi', host: host.name, err: e.message }, 'inventory refresh failed'));
        }, INVENTORY_REFRESH_MS);
        return streamItems(host, tracks.map((t) => t.port));
      },
      onBlock,
      onState,
      warn: (o, m) => log.warn({ component: 'esxi', ...o }, m),
    },
  );

  return {
    id: `esxi:${host.name}`,
    name: host.name,
    collect: () => {},
    close: () => stopHost(),
    inventory: () => inventory,
    ports: () => portMap,
    live: () => live,
    fresh: (nowNs) => live && !awaitingPost && ratesAtNs > 0 && nowNs - ratesAtNs <= host.staleMs * 1e6,
    rates: () => rateList,
    shownRates: () => shown,
    consume(): void {
      if (!unconsumed) return;
      unconsumed = false;
      for (const r of rateList) r.valid = false;
    },
    async act(req, previous) {
      const r = await hooks.act(req, { host, inventory, exec: session.exec, retries, ...(previous ? { previous } : {}) });
      ignoreThroughTick = session.sentTick();
      rebase = true;
      awaitingPost = true;
      // What the host now has (a disconnected vNIC leaves its port) decides what is streamed, but
      // only once the breaker has judged the action: restarting the stream leaves a gap in the
      // counters, and the settle that decides on escalation needs fresh blocks, not a gap.
      setTimeout(() => {
        refresh(session.exec)
          .then((changed) => changed && session.restream(`after ${req.kind} of ${req.port}`))
          .catch((e: Error) => log.warn({ component: 'esxi', host: host.name, err: e.message }, 'inventory refresh failed'));
      }, 3 * host.sampleMs + 1000).unref();
      return r;
    },
    status(): EsxHostStatus {
      const now = performance.now();
      const nowMs = Number(process.hrtime.bigint()) / 1e6;
      const recent = arrivals.filter((t) => nowMs - t <= 5000);
      const perSec = recent.length >= 2 ? ((recent.length - 1) * 1000) / (recent.at(-1)! - recent[0]!) : 0;
      return {
        host: host.name,
        address: host.address,
        session: session.status(),
        live,
        ports: tracks.map((t) => ({
          port: t.port.name,
          kind: t.port.kind,
          id: t.port.id,
          ...(t.port.vm ? { vm: t.port.vm, portgroup: t.port.portgroup!, watched: t.port.watched! } : {}),
          broadcast: t.bcast ? t.bcast.reason : 'no sample yet',
          lastError: t.lastError,
        })),
        missing,
        inventoryProblems: problems,
        inventoryAgeMs: inventory ? Math.round(now - inventory.readAtMs) : null,
        samplesPerSec: Math.round(perSec * 10) / 10,
      };
    },
    drop: (why) => session.drop(why),
    stop: stopHost,
  };

  async function stopHost(): Promise<void> {
    if (refreshTimer) clearInterval(refreshTimer);
    await session.stop();
  }
}

function blankRates(p: EsxPort): PortRates {
  return { port: p.name, bridge: p.bridge, dtMs: 0, rxPps: 0, txPps: 0, rxBps: 0, floodPps: 0, bcastPps: 0, valid: false };
}
