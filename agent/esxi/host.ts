// One ESXi host in the daemon: its SSH session, its inventory, its watched ports and their rates.
// The daemon sees ports and rates like local ones; what differs is timing (a block of counters
// every sampleMs, each interval measured on arrival) and that nothing here is judged when stale.
import type { ActionRequest, ActionResult, EsxiActionRecord, EsxiHostPolicy, Policy, PortPolicy, PortRates, TickSource } from '../types.js';
import type { EsxInventory } from './inventory.js';
import { readInventory } from './read-inventory.js';
import { macOfVnicPort, streamItems, watchedPorts } from './ports.js';
import { hostRates, type HostRates } from './host-rates.js';
import { startSession, type RemoteExec, type Session, type SessionFuse, type SessionState, type SessionStatus } from './session.js';
import { hostIntake } from './host-intake.js';
import { fuseWaits } from './fuse-waits.js';
import { loadProgram, type FuseProgram } from './fuse/program.js';
import type { FuseCut } from './fuse/lines.js';
import type { FuseState } from './fuse/client.js';
import { fuseCutResult, fuseEndedMidCut, fuseHold, fusePlanFor, type FuseSeen } from './host-fuse.js';
import { esxiHostThresholds } from '../policy/match.js';

/**
 * How long an automatic link-down of a vNIC the armed fuse would cut waits for the fuse to start
 * cutting it before cutting over SSH: the fuse judges the same counters, and says it is cutting
 * right after the samples the agent judged (on the same stream).
 */
const FUSE_WAIT_MS = 1000;
/** ...and once it started: its cut call's timeout (the plan's cutTimeoutMs) and a second for the report. */
const FUSE_CUTTING_WAIT_MS = 6000;
/** Where the fuse keeps its owner and event files on the host (ESXi's /tmp is a ramdisk). */
const FUSE_STATE_DIR = '/tmp';
/** The host's own interpreter, found on the host's PATH (/bin/python on ESXi 7 and 8). */
const FUSE_PYTHON = 'python';

/** Re-read the host's inventory this often (VMs come and go, vNICs reconnect). */
const INVENTORY_REFRESH_MS = 30_000;

export interface EsxHostStatus {
  host: string;
  address: string;
  session: SessionStatus;
  /** Judged right now: streaming and not stale. */
  live: boolean;
  ports: Array<{ port: string; kind: string; id: string; vm?: string; portgroup?: string; watched?: 'portgroup' | 'bridging-vm' | 'guest-peer'; broadcast: string; lastError: string | null }>;
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
  /**
   * The fuse reported a cut it made (`result`: journal it as a trip, then ack), or something that
   * is not a cut (`result` null: refused, dry-run, failed; journal it, then ack).
   */
  onFuseReport?(r: { host: string; cut: FuseCut; replayed: boolean; result: ActionResult | null; ack(): void; taken: boolean; undone: boolean }): void;
  /** The fuse armed (with its hash), could not arm (the shell loop streams) or ended. */
  onFuseState?(host: string, state: FuseState, why: string, program: FuseProgram | null): void;
  /** Carries out link-down / link-up on the host (injected: esxi/ does not depend on actions/). */
  act: EsxAction;
  ssh?: string;
}

export function startEsxHost(policy: Policy, host: EsxiHostPolicy, retries: number, hooks: EsxHostHooks): EsxHost {
  const log = hooks.log;
  const rates = hostRates(host, log);
  let missing: string[] = [];
  let inventory: EsxInventory | null = null;
  let problems: string[] = [];
  let live = false;
  let refreshTimer: NodeJS.Timeout | null = null;
  const intake = hostIntake(rates, hooks.onRates);

  async function refresh(exec: Session['exec']): Promise<boolean> {
    // VMs already watched stay read: one cut down to a single connected vNIC must stay restorable.
    const alsoVms = [...new Set(rates.ports().map((p) => p.vm).filter((v): v is string => v !== undefined))];
    const r = await readInventory(exec, { host: host.name, onlyPortgroups: host.portgroups, bridgeSuspects: host.watchBridgingVms, alsoVms });
    inventory = r.inventory;
    problems = r.problems;
    if (problems.length) log.warn({ component: 'esxi', host: host.name, problems }, 'parts of the host inventory could not be read');
    hooks.onInventory?.(r.inventory);
    const w = watchedPorts(policy, host, r.inventory);
    if (w.missing.join() !== missing.join()) log.warn({ component: 'esxi', host: host.name, missing: w.missing }, 'the policy names things this host does not have: not watched');
    missing = w.missing;
    if (rates.same(w.ports)) return false;
    rates.set(w.ports);
    hooks.onPortsChanged();
    return true;
  }

  function onState(s: SessionState, why: string): void {
    const was = live;
    live = s === 'streaming';
    const level = s === 'refused' ? 'error' : s === 'stale' || s === 'backoff' ? 'warn' : 'info';
    log[level]({ component: 'esxi', host: host.name, state: s, why }, `ESXi host ${host.name}: ${s}`);
    if (!live) rates.forgetBaselines(); // never diff across a gap
    if (was !== live) hooks.onPortsChanged();
  }

  const onFuseCut = (cut: FuseCut, replayed: boolean): void =>
    handleFuseCut({ policy, host, rates, intake, waits, inventory, session, refreshStream, report: hooks.onFuseReport }, cut, replayed);

  const fuse = sessionFuse(host, log);
  const waits = fuseWaits();
  const session = startSession(
    { ...host, fuse: fuse.fuse, ...(hooks.ssh ? { ssh: hooks.ssh } : {}) },
    {
      fusePlan: (items) => waits.made(fusePlanFor(policy, host, inventory, rates.ports(), items)),
      items: () => streamItems(host, rates.ports()),
      onFuseSample: intake.fuseSample,
      onFuseCut,
      onFuseState(s, why) {
        waits.held(s === 'armed');
        // A fuse that ended while it said it was cutting will not report that cut: judge again
        // now, from purely post-exit samples, instead of waiting out FUSE_CUTTING_WAIT_MS.
        const now = Number(process.hrtime.bigint());
        if ((s === 'exited' || s === 'not-armed') && intake.holding(now)) intake.abandoned(session.sentTick(), now);
        hooks.onFuseState?.(host.name, s, why, fuse.program);
      },
      onFuseRearmed: waits.held,
      async prepare(exec) {
        await refresh(exec);
        if (refreshTimer) clearInterval(refreshTimer);
        refreshTimer = setInterval(() => refreshStream('the watched ports changed'), INVENTORY_REFRESH_MS);
        return streamItems(host, rates.ports());
      },
      onBlock: intake.block,
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
    ports: rates.policies,
    live: () => live,
    fresh: (nowNs) => live && intake.fresh(nowNs, host.staleMs),
    rates: rates.rates,
    shownRates: () => rates.shown,
    consume: intake.consume,
    async act(req, previous) {
      const byFuse = req.kind === 'link-down' ? await waits.cutOf(req.port, FUSE_WAIT_MS, FUSE_CUTTING_WAIT_MS) : null;
      if (byFuse) return byFuse; // onFuseCut has already done what follows a cut
      const r = await hooks.act(req, { host, inventory, exec: session.exec, retries, ...(previous ? { previous } : {}) });
      intake.acted(session.sentTick(), Number(process.hrtime.bigint()));
      // What the host now has (a disconnected vNIC leaves its port) decides what is streamed, but
      // only once the breaker has judged the action: restarting the stream leaves a gap in the
      // counters, and the settle that decides on escalation needs fresh blocks, not a gap.
      setTimeout(() => refreshStream(`after ${req.kind} of ${req.port}`), 3 * host.sampleMs + 1000).unref();
      return r;
    },
    status: () => hostStatus(host, session, live, rates, { missing, problems, inventory }),
    drop: (why) => session.drop(why),
    stop: stopHost,
  };

  /** Read the inventory again; stream anew when the watched ports changed. */
  function refreshStream(why: string): void {
    refresh(session.exec)
      .then((changed) => changed && session.restream(why))
      .catch((e: Error) => log.warn({ component: 'esxi', host: host.name, err: e.message }, 'inventory refresh failed'));
  }

  async function stopHost(): Promise<void> {
    if (refreshTimer) clearInterval(refreshTimer);
    await session.stop();
  }
}

interface FuseCutContext {
  policy: Policy;
  host: EsxiHostPolicy;
  rates: HostRates;
  intake: ReturnType<typeof hostIntake>;
  waits: ReturnType<typeof fuseWaits>;
  inventory: EsxInventory | null;
  session: Session;
  refreshStream(why: string): void;
  report: EsxHostHooks['onFuseReport'];
}

/** What follows a line of the fuse about a cut: hold judging while it lands, then journal it through the hooks. */
function handleFuseCut(c: FuseCutContext, cut: FuseCut, replayed: boolean): void {
  if (cut.outcome === 'cutting' && !replayed) {
    // Until its result, samples straddle the cut: none is judged (host-intake's hold).
    c.intake.hold(Number(process.hrtime.bigint()) + FUSE_CUTTING_WAIT_MS * 1e6);
    c.waits.cutting(cut.port, Date.now());
    return;
  }
  if (!replayed) c.intake.release(); // a failed cut: the next samples are judged (the loop may go on)
  // A replayed `cutting`: an earlier fuse ended while its call ran, and nobody reported the call's
  // end (fuse v6 records the intent). The call may have landed (a child outlives its parent): a
  // trip where the host's inventory, read at this connection, shows the vNIC disconnected; else a
  // `fuse` event (nothing to trip; a call that lands even later leaves a disconnected vNIC the
  // journal does not name: README).
  const made = cutMade(c, cut, replayed);
  // A cut replayed from while the agent was away, whose vNIC the host shows connected again (the
  // inventory is read at connect, before the fuse starts): history, not a trip. Feeding it to the
  // breaker would have cut the port again after an operator's restore (seen in bench-esxi).
  const undone = made !== null && replayed && vnicListed(c.inventory, c.host.name, cut.port, true);
  const result = undone ? null : made;
  if (result) {
    // As after the agent's own action: judge only purely post-cut counters, and read what the
    // host has now (the vNIC left its port) so the fuse is re-armed without it.
    c.intake.acted(c.session.sentTick(), Number(process.hrtime.bigint()));
    setTimeout(() => c.refreshStream(`after the fuse cut ${cut.port}`), 500).unref();
  }
  // A cut the agent's own link-down is waiting for is its result (act() returns it): not a second one.
  const taken = result !== null && c.waits.took(result);
  c.report?.({ host: c.host.name, cut, replayed, result, ack: () => c.session.fuseAck([cut.id]), taken, undone });
}

/** The trip a fuse's cut line makes: a replayed `cutting` only where the host shows its vNIC disconnected. */
function cutMade(c: FuseCutContext, cut: FuseCut, replayed: boolean): ActionResult | null {
  const seen = fuseSeen(c.policy, c.host, c.rates, cut);
  if (cut.outcome !== 'cutting') return fuseCutResult(c.host.name, cut, replayed, c.inventory, seen);
  return vnicListed(c.inventory, c.host.name, cut.port, false) ? fuseEndedMidCut(c.host.name, cut, c.inventory, seen) : null;
}

/** Does the inventory list this vNIC port (`<host>/vnic-<mac>`) as `connected` (true) or disconnected (false)? Not listed: false. */
function vnicListed(inv: EsxInventory | null, host: string, port: string, connected: boolean): boolean {
  const mac = macOfVnicPort(port.slice(host.length + 1));
  return mac !== null && (inv?.vms.some((vm) => vm.nics.some((n) => n.mac === mac && n.connected === connected)) ?? false);
}

/** The agent's side of a fuse's cut: its last rates of the hot ports, and when. */
function fuseSeen(policy: Policy, host: EsxiHostPolicy, rates: HostRates, cut: FuseCut): FuseSeen {
  const names = new Map(rates.ports().filter((p) => p.kind === 'port').map((p) => [p.id, p.name]));
  const hotNames = cut.hot.map((id) => names.get(id) ?? `port ${id}`);
  const t = esxiHostThresholds(policy, host);
  const nowNs = Number(process.hrtime.bigint());
  const ms = cut.ms ?? 0;
  // The last rates the agent had, taken as of now: ms after the decision (tNs).
  const window = hotNames.flatMap((n) => {
    const r = rates.shown.get(n);
    return r ? [{ port: n, tMs: ms, rxPps: r.rxPps, txPps: r.txPps, floodPps: r.floodPps }] : [];
  });
  return { tNs: nowNs - ms * 1e6, policyHash: policy.hash, pps: t.floodPps, hold: fuseHold(t), window, hotNames };
}

/** The fuse this host's session runs, or none (policy off, or this agent's program is not one it knows). */
function sessionFuse(host: EsxiHostPolicy, log: EsxHostHooks['log']): { fuse: SessionFuse | undefined; program: FuseProgram | null } {
  if (host.fuse === 'off') return { fuse: undefined, program: null };
  try {
    const program = loadProgram();
    return { fuse: { program, python: FUSE_PYTHON, stateDir: FUSE_STATE_DIR }, program };
  } catch (e) {
    log.error({ component: 'esxi', host: host.name, err: (e as Error).message }, 'the fuse program cannot be armed: the shell loop streams');
    return { fuse: undefined, program: null };
  }
}

function hostStatus(
  host: EsxiHostPolicy,
  session: Session,
  live: boolean,
  rates: HostRates,
  o: { missing: string[]; problems: string[]; inventory: EsxInventory | null },
): EsxHostStatus {
  const now = performance.now();
  return {
    host: host.name,
    address: host.address,
    session: session.status(),
    live,
    ports: rates.portStatus().map(({ port: p, broadcast, lastError }) => ({
      port: p.name,
      kind: p.kind,
      id: p.id,
      ...(p.vm ? { vm: p.vm, portgroup: p.portgroup!, watched: p.watched! } : {}),
      broadcast,
      lastError,
    })),
    missing: o.missing,
    inventoryProblems: o.problems,
    inventoryAgeMs: o.inventory ? Math.round(now - o.inventory.readAtMs) : null,
    samplesPerSec: Math.round(rates.samplesPerSec(Number(process.hrtime.bigint()) / 1e6) * 10) / 10,
  };
}
