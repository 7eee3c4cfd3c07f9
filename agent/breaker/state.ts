// The breaker: verdicts, action results and operator commands in; link commands and journal
// events out. Pure (no clock, timers, I/O or logging): monotonic time is input.tNs, the wall
// time stamped on events is input.wallMs.
//
// `breakerStep` MUTATES the state it is given and returns that same object, like the detector:
// it is called on the sampling path while a storm is on. Deterministic all the same.
//
// Safety rules, in the order they win:
//  1. A protected port is never the subject of an automatic link-down, whatever the verdict; an
//     operator trip of one is refused too (unprotect it in the policy first).
//  2. At most policy.breaker.maxShuts automatic link-downs within any windowMs (sliding). A
//     command counts when issued, whether or not it then succeeds: the budget bounds what the
//     agent may do to a host, and a half-applied action is still an action.
//  3. A loop is broken by shutting ONE member (lowest shutRank, then name), waiting settleMs
//     after it took effect, and only then, if the loop verdict persists, the next one.
//  4. A flood from a single port is never a reason to shut an uplink, unless the operator put
//     'uplink' in breaker.floodShutRoles.
//  5. An operator hold keeps a port down whatever happens, protected or not (a human decided);
//     it ends by `release` or by expiry into 'tripped', so a held port never comes back up
//     without a separate restore.
//  6. Automatic recovery (PortPolicy.recovery, mode auto) only follows the breaker's own trips:
//     after cooldownMs * backoff^N in 'tripped' (N failed probes so far) the link comes up for
//     probeMs ('probing'); any verdict that names the port meanwhile is the same storm, so the port
//     is shut at once, outside the budget and without settle; maxTries failed probes leave it to a
//     human. Operator trips, holds, releases and journal restarts never recover by themselves.
//  7. Reachability (policy.reachability): every automatic link-down that lands is named in
//     BreakerStep.verify; the daemon checks the management gateway and reports a failed check as
//     input.unreachable. That link-down cut the management path: it is undone at once (link-up,
//     journal 'undo'), the port is spared from automatic shuts for windowMs (and stays in the
//     loop's `tried`), and the next member of the same loop verdict is shut instead. The next
//     link-down is issued BEFORE the undo's link-up, so the loop is not closed again meanwhile.
import type { ActionRequest, ActionResult, Evidence, JournalEvent, PortPolicy, Policy, Recovery, Verdict } from '../types.js';
import { MAX_PORT_RULES, MAX_TIMER_MS } from '../policy/defaults.js';
import { unnamedFloodReason, unnamedOnlyReason, unnamedShutNote } from './observed.js';

export type BreakerPortState = 'forwarding' | 'tripping' | 'tripped' | 'restoring' | 'held' | 'probing';

/** Who the journal names for what automatic recovery does. */
export const AUTO_RECOVERY = 'auto-recovery';

export interface OperatorCommand {
  kind: 'restore' | 'trip' | 'hold' | 'release';
  port: string;
  reason: string;
  by: string;
  /** hold only: wall-clock ms (epoch) when the hold expires into 'tripped'; absent = until released. */
  untilMs?: number;
  /** Extra fields journaled with the operator's event (e.g. who asked, as the kernel reports it). */
  extra?: Record<string, unknown>;
}

export interface BreakerInput {
  /** Monotonic now, ns (same clock as the detector's ticks). */
  tNs: number;
  /** Wall clock now, ms since the epoch: only for the `ts` of events. */
  wallMs: number;
  verdicts: readonly Verdict[];
  results: readonly ActionResult[];
  operator: readonly OperatorCommand[];
  /**
   * Automatic link-downs (from an earlier step's `verify`) after which the management gateway
   * did not answer: undo them and try the next loop member. Absent = none.
   */
  unreachable?: ReadonlyArray<{ port: string; target: string }>;
}

export interface BreakerStep {
  state: BreakerState;
  /**
   * Ports whose automatic link-down (loop or flood, not a recovery re-trip) landed in this step:
   * the daemon proves the host is still reachable after each. Shared frozen empty array when none.
   */
  verify: string[];
  /** Shared frozen empty array when there is nothing to do: do not mutate. */
  commands: ActionRequest[];
  /** Shared frozen empty array when there is nothing to journal: do not mutate. */
  events: JournalEvent[];
}

export interface PortStatus {
  port: string;
  state: BreakerPortState;
  /** ISO time of the last state change (for ports restored from the journal: the trip's ts). */
  since: string;
  reason: string;
  evidence?: Evidence;
  /** Who asked, for operator actions. */
  by?: string;
  /** Held ports with an expiry: wall-clock ms (epoch) when the hold ends. */
  untilMs?: number;
  /** Ports under automatic recovery: probes started so far in this story (the current one while probing). */
  recoveryTries?: number;
}

/** A tripped port's recovery schedule (mode auto). */
interface Recovering {
  /** Probes started so far; while probing, the number of the current probe. */
  tries: number;
  /** 'tripped': monotonic ns when the next probe is due. */
  dueNs: number;
  /** 'probing': ns when the probe counts as quiet; null while its link-up is in flight. */
  probeUntilNs: number | null;
  probeMs: number;
}

interface PortEntry {
  state: BreakerPortState;
  since: string;
  reason: string;
  evidence: Evidence | undefined;
  /** The link-down in flight was the breaker's own decision (budgeted), not an operator's. */
  auto: boolean;
  /** Bridge whose loop this port was shut for, or null. */
  loop: string | null;
  /** Remaining candidates of the verdict that chose this port: tried next if its link-down fails. */
  next: string[];
  by: string | undefined;
  /** 'held' only: expiry in wall-clock ms, or null for a hold until released. */
  untilMs: number | null;
  /** Journal fields of the operator request behind the current state (who, per the kernel). */
  extra?: Record<string, unknown> | undefined;
  /** Automatic recovery in progress (tripped with a probe scheduled, probing, or re-tripping), else null. */
  rec: Recovering | null;
  /** 'restoring' because its link-down cut reachability: the link-up is an undo, not a restore. */
  undo?: boolean;
  /** Not chosen for an automatic shut before this tNs (its last one cut reachability). */
  spareUntilNs?: number;
  /**
   * Re-tripped while its probe's link-up was still in flight: that link-up's result, when it
   * comes, is stale (the link-down issued after it is what counts) and is ignored.
   */
  staleUp?: boolean;
  /** 'tripping' for a loop, and its stage 'stopped' taken in: forwarding stopped, admin-down to come. */
  stopped?: boolean;
}

interface BridgeEntry {
  /** Automatic link-down issued for this bridge's loop and not answered yet. */
  inFlight: string | null;
  /** The second port of a two-port cut (twoCutsWhy), issued with inFlight and not stopped yet (its stop or result not in). */
  along: string | null;
  /** Loop verdicts are ignored until then (the last shut needs time to show in the counters)... */
  settleUntilNs: number;
  /** ...unless the loop is seen going on entirely after this tNs, when the last shut landed (see persistsAfter). */
  shutDoneNs: number;
  /** The last stop's settle (stage 'stopped'): stopped ports' admin-downs wait until then (loopSettling). */
  quietUntilNs: number;
  /** Last port shut (or would-tripped, in dry run) for this bridge's loop, and when. */
  lastPort: string | null;
  lastNs: number;
  lastDry: boolean;
  /** Ports already chosen in this storm (shut, would-trip or failed), by tNs: not chosen again within windowMs. */
  tried: Map<string, number>;
  /** Members of the loop verdict behind the last shut: their residual traffic is not a flood while it settles. */
  members: string[];
  /** A loop verdict here waits for another bridge's shut until then (see waitsForOtherShut); members as above. */
  waitUntilNs: number;
  /** The last loop verdict's guest (an ESXi VM forwarding between its own vNICs), said in the shut's reason. */
  guest: { vm: string; ports: string[] } | null;
}

export interface BreakerState {
  ports: Map<string, PortEntry>;
  bridges: Map<string, BridgeEntry>;
  /** tNs of automatic link-downs issued, oldest first; pruned to the sliding window. */
  autoShuts: number[];
  /** Conditions reported by notice(), by key: journaled when they start, once per window while they last, and when they end. */
  notices: Map<string, NoticeEntry>;
}

/** A reported condition (a loop nobody may cut, a protected port's flood, a dry-run would-trip...). */
interface NoticeEntry {
  kind: JournalEvent['event'];
  port: string;
  sinceNs: number;
  /** Last journaled (at most once per windowMs). */
  emittedNs: number;
  /** Last seen by a step, journaled or not. */
  seenNs: number;
  lines: number;
}

/** A condition not seen for this long has ended: one line says so. */
const NOTICE_END_NS = 2e9;

// Typed as mutable for the daemon's convenience; frozen so that a caller who pushes finds out.
const NO_COMMANDS = Object.freeze([]) as unknown as ActionRequest[];
const NO_EVENTS = Object.freeze([]) as unknown as JournalEvent[];
const NO_PORTS = Object.freeze([]) as unknown as string[];
const NO_BRIDGE = '(no bridge)';

export function initialBreakerState(): BreakerState {
  return { ports: new Map(), bridges: new Map(), autoShuts: [], notices: new Map() };
}

/**
 * Ports that the journal says were tripped before a restart: they are 'tripped' again (and so
 * never candidates) until an operator restores them. `since` is the trip's ISO ts (or epoch ms).
 * Mutates and returns `state`.
 */
export function restoreTripped(
  state: BreakerState,
  ports: ReadonlyArray<{ port: string; evidence?: Evidence; since: string | number }>,
): BreakerState {
  for (const p of ports) {
    state.ports.set(p.port, {
      state: 'tripped',
      since: typeof p.since === 'number' ? iso(p.since) : p.since,
      reason: 'tripped before restart (journal)',
      evidence: p.evidence,
      auto: false,
      loop: null,
      next: [],
      by: undefined,
      untilMs: null,
      // After a restart a tripped port is manual: the journal does not say how many probes it had.
      rec: null,
    });
  }
  return state;
}

/**
 * Ports the journal says were held before a restart: held again, with the same expiry (an
 * expiry already past turns into 'tripped' on the first step). Mutates and returns `state`.
 */
export function restoreHeld(
  state: BreakerState,
  ports: ReadonlyArray<{ port: string; since: string; reason: string; by?: string; untilMs: number | null }>,
): BreakerState {
  for (const p of ports) {
    state.ports.set(p.port, {
      state: 'held',
      since: p.since,
      reason: `held before restart (journal): ${p.reason}`,
      evidence: undefined,
      auto: false,
      loop: null,
      next: [],
      by: p.by,
      untilMs: p.untilMs,
      rec: null,
    });
  }
  return state;
}

/** Is a hold due to expire at wallMs? The daemon steps the breaker when it is. No allocation. */
export function holdExpiryDue(state: BreakerState, wallMs: number): boolean {
  for (const e of state.ports.values()) if (e.state === 'held' && e.untilMs !== null && e.untilMs <= wallMs) return true;
  return false;
}

/** Every port the breaker has an opinion about, by name. Ports not listed are forwarding. */
export function portStates(state: BreakerState): PortStatus[] {
  const out: PortStatus[] = [];
  for (const [port, e] of state.ports) {
    const s: PortStatus = { port, state: e.state, since: e.since, reason: e.reason };
    if (e.evidence !== undefined) s.evidence = e.evidence;
    if (e.by !== undefined) s.by = e.by;
    if (e.state === 'held' && e.untilMs !== null) s.untilMs = e.untilMs;
    if (e.rec !== null) s.recoveryTries = e.rec.tries;
    out.push(s);
  }
  return out.sort((a, b) => (a.port < b.port ? -1 : a.port > b.port ? 1 : 0));
}

/**
 * Does the breaker need to be stepped even without verdicts? True while an action is in flight or
 * a loop shut is settling (escalation is decided on the first verdict after settle). No allocation.
 */
export function breakerBusy(state: BreakerState, tNs: number): boolean {
  for (const e of state.ports.values()) if (e.state === 'tripping' || e.state === 'restoring' || e.state === 'probing') return true;
  for (const b of state.bridges.values()) if (cutInFlight(b) || tNs < b.settleUntilNs) return true;
  return false;
}

/**
 * Is a loop shut in flight or settling? The executor holds a stopped bridge port's admin-down
 * until it is not: that admin-down holds rtnl for tens of ms under a storm (dev_close), and the
 * next member's stop needs rtnl too. No allocation.
 */
export function loopSettling(state: BreakerState, tNs: number): boolean {
  for (const b of state.bridges.values()) if (cutInFlight(b) || tNs < b.quietUntilNs) return true;
  return false;
}

/** A link-down of this bridge's loop issued and not yet stopped or answered (both of a two-port cut). */
function cutInFlight(b: BridgeEntry): boolean {
  return b.inFlight !== null || b.along !== null;
}

interface Ctx {
  st: BreakerState;
  tNs: number;
  wallMs: number;
  ports: ReadonlyMap<string, PortPolicy>;
  policy: Policy;
  windowNs: number;
  ts: string | null;
  commands: ActionRequest[];
  events: JournalEvent[];
  verify: string[];
}

/**
 * One step: results first (they settle what is in flight), then operator commands (a human's
 * intent beats the automaton's), then verdicts. Mutates and returns `state`.
 */
export function breakerStep(
  state: BreakerState,
  input: BreakerInput,
  ports: ReadonlyMap<string, PortPolicy>,
  policy: Policy,
): BreakerStep {
  const ctx: Ctx = {
    st: state,
    tNs: input.tNs,
    wallMs: input.wallMs,
    ports,
    policy,
    windowNs: policy.breaker.windowMs * 1e6,
    ts: null,
    commands: NO_COMMANDS,
    events: NO_EVENTS,
    verify: NO_PORTS,
  };
  expireHolds(ctx);
  for (const r of input.results) onResult(ctx, r);
  // After results (the link-down being undone has landed), before operator commands and verdicts.
  if (input.unreachable) for (const u of input.unreachable) onUnreachable(ctx, u.port, u.target);
  for (const o of input.operator) onOperator(ctx, o);
  const probing = input.verdicts.length > 0 && anyProbing(state);
  for (const v of input.verdicts) {
    // A verdict that names a probing port is the storm its probe was looking for: it is handled
    // by shutting that port again, not by choosing a loop member afresh.
    if (probing && probeHit(ctx, v)) continue;
    if (v.kind === 'loop') onLoop(ctx, v);
    else if (v.kind === 'flood') onFlood(ctx, v);
    else onEgress(ctx, v);
  }
  stepRecovery(ctx);
  if (state.notices.size > 0) endNotices(ctx);
  return { state, commands: ctx.commands, events: ctx.events, verify: ctx.verify };
}

// --- results -------------------------------------------------------------------------------------

function onResult(ctx: Ctx, r: ActionResult): void {
  const e = entry(ctx, r.port);
  if (r.stage === 'stopped') {
    onStopped(ctx, e, r);
    return;
  }
  if (r.kind === 'link-up' && e.staleUp) {
    e.staleUp = false;
    return;
  }
  if (e.state === 'held') {
    onHeldResult(ctx, e, r);
    return;
  }
  if (e.state === 'probing' && e.rec !== null && r.kind === 'link-up' && e.rec.probeUntilNs === null) {
    onProbeUp(ctx, e, e.rec, r);
    return;
  }
  // A result the breaker did not ask for (or a duplicate): an ok result is still the truth about
  // the link; a failed one changes nothing.
  const expected = r.kind === 'link-down' ? e.state === 'tripping' : e.state === 'restoring';
  if (!expected && !r.ok) {
    event(ctx, 'action-failed', r.port, `${r.kind} of ${r.port} failed (not requested by the breaker): ${r.error ?? 'unknown error'}`, { action: r });
    return;
  }
  if (!expected) {
    e.reason = r.origin?.reason ?? `${r.kind} of ${r.port} reported (not requested by the breaker)`;
    e.by = r.origin?.by;
    if (r.origin?.evidence) e.evidence = r.origin.evidence;
    e.extra = undefined;
    e.auto = false;
    e.loop = null;
    e.next = [];
    e.rec = null;
    if (r.kind === 'link-up') e.evidence = undefined;
  }
  if (r.kind === 'link-down') {
    if (r.ok) {
      setState(ctx, e, 'tripped');
      const rec = expected && e.auto ? scheduleRecovery(ctx, e, r.port) : ((e.rec = null), undefined);
      event(ctx, 'trip', r.port, e.reason, { evidence: e.evidence, action: r, ...(e.by ? { by: e.by } : {}), ...e.extra, ...(rec ? { recovery: rec } : {}) });
      if (rec?.exhausted) exhausted(ctx, r.port, e, rec.maxTries);
      // The breaker's own decision (not an operator's, not a recovery re-trip): prove reachability.
      if (expected && e.auto && e.by === undefined) {
        if (ctx.verify === NO_PORTS) ctx.verify = [];
        ctx.verify.push(r.port);
      }
      if (e.loop !== null) loopShutLanded(ctx, e, r);
      e.stopped = false;
      e.next = [];
      return;
    }
    // A stop whose admin-down failed: its settle (held open by onStopped) ends.
    if (e.stopped && e.loop !== null && bridge(ctx, e.loop).settleUntilNs === Infinity) bridge(ctx, e.loop).settleUntilNs = ctx.tNs;
    e.stopped = false;
    const failedAuto = e.auto;
    const loop = e.loop;
    const next = e.next;
    setState(ctx, e, 'forwarding');
    e.rec = null;
    e.next = [];
    e.loop = null;
    event(ctx, 'action-failed', r.port, `link-down of ${r.port} failed: ${r.error ?? 'unknown error'}`, {
      evidence: e.evidence,
      action: r,
    });
    if (!failedAuto || loop === null) return;
    // The loop is still there: try the next member of the same verdict right away.
    const b = bridge(ctx, loop);
    if (b.inFlight === r.port) b.inFlight = null;
    if (b.along === r.port) b.along = null;
    // After a stop, the loop may have moved on to another member already: the verdicts decide then.
    if (cutInFlight(b)) return;
    const cands = candidates(ctx, b, next);
    if (cands.length === 0) {
      notice(ctx, `none:${loop}`, 'flood-observed', loop, `loop on ${loop} but every member is protected or already tripped`, {
        evidence: e.evidence,
      });
      return;
    }
    shutForLoop(ctx, loop, b, e.evidence, cands, { port: r.port, why: `link-down of ${r.port} failed` });
    return;
  }
  // link-up
  if (e.undo) {
    e.undo = false;
    if (r.ok) {
      // Already journaled as 'undo' when decided; the port stays in `tried` and spared.
      setState(ctx, e, 'forwarding');
      e.evidence = undefined;
    } else {
      setState(ctx, e, 'tripped');
      event(ctx, 'action-failed', r.port, `undo of ${r.port} failed: link-up: ${r.error ?? 'unknown error'}; the management path may still be cut`, { action: r });
    }
    return;
  }
  if (r.ok) {
    setState(ctx, e, 'forwarding');
    event(ctx, 'restore', r.port, e.reason, { action: r, ...(e.by ? { by: e.by } : {}), ...e.extra });
    e.extra = undefined;
    e.evidence = undefined;
    // A restored port starts a fresh story: if the loop is still there it may be chosen again.
    for (const b of ctx.st.bridges.values()) {
      b.tried.delete(r.port);
      if (b.lastPort === r.port) b.lastPort = null;
    }
  } else {
    setState(ctx, e, 'tripped');
    event(ctx, 'action-failed', r.port, `link-up of ${r.port} failed: ${r.error ?? 'unknown error'}`, { action: r });
  }
}

/**
 * Stage 'stopped' of a loop shut: the port forwards no more (bridge state disabled), its admin-down
 * is still to come. Settle and the early judgement run from the stop, so the next member may be
 * shut before the admin-down (three uplinks: it waited tens of ms in dev_close). The port stays
 * 'tripping' until the final result: 'tripped' means verified admin-down, as before.
 */
function onStopped(ctx: Ctx, e: PortEntry, r: ActionResult): void {
  if (r.kind !== 'link-down' || e.state !== 'tripping' || e.loop === null) return;
  const b = bridge(ctx, e.loop);
  if (b.inFlight === r.port) b.inFlight = null;
  else if (b.along === r.port) b.along = null;
  else return;
  e.stopped = true;
  // Only the evidence (persistsAfter: whole samples after the stop) escalates before the final
  // result; settle's plain timeout runs from the final result, as before the stages: under load
  // a verdict 30 ms after the stop could still straddle it (agent-loops, one core busy, shut up2
  // of a two-member loop). The stopped port's admin-down waits for quietUntilNs only.
  b.settleUntilNs = Infinity;
  b.quietUntilNs = ctx.tNs + settleMsOf(ctx, r.port) * 1e6;
  // The later stop of a two-port cut: the loop goes on only if it does without both.
  b.shutDoneNs = Math.max(b.shutDoneNs, stopTimeNs(ctx, r));
}

/** When the port stopped forwarding: the action's own stop time, never later than now. */
function stopTimeNs(ctx: Ctx, r: ActionResult): number {
  return r.stoppedNs !== undefined && r.stoppedNs < ctx.tNs ? r.stoppedNs : ctx.tNs;
}

/** A loop shut's final result (ok): settle runs from now. */
function loopShutLanded(ctx: Ctx, e: PortEntry, r: ActionResult): void {
  const b = bridge(ctx, e.loop!);
  if (e.stopped) {
    // After a stop (onStopped), as before the stages; unless the loop has moved on to another
    // member meanwhile (the early judgement escalated).
    if (b.lastPort === r.port && b.settleUntilNs === Infinity) b.settleUntilNs = ctx.tNs + settleMsOf(ctx, r.port) * 1e6;
    return;
  }
  if (b.inFlight === r.port) b.inFlight = null;
  if (b.along === r.port) b.along = null;
  b.settleUntilNs = ctx.tNs + settleMsOf(ctx, r.port) * 1e6;
  // A bridge port stops forwarding when its state is set, before the admin-down returns:
  // samples after that already show whether the loop goes on (persistsAfter). The later of a
  // two-port cut's stops counts.
  b.shutDoneNs = Math.max(b.shutDoneNs, stopTimeNs(ctx, r));
}

// --- reachability --------------------------------------------------------------------------------

/** The automatic link-down of `port` cut the management path to `target`: undo it, shut the next member. */
function onUnreachable(ctx: Ctx, port: string, target: string): void {
  const e = ctx.st.ports.get(port);
  // Only a port still down by the breaker's own decision is undone: an operator may have held,
  // restored or re-tripped it since the check started, and a human's decision stands.
  if (e === undefined || e.state !== 'tripped' || !e.auto || e.by !== undefined) return;
  const reason = `link-down of ${port} cut reachability of ${target}`;
  const loop = e.loop;
  const evidence = e.evidence;
  e.spareUntilNs = ctx.tNs + ctx.windowNs;
  e.rec = null;
  e.auto = false;
  e.loop = null;
  e.next = [];
  e.reason = reason;
  e.undo = true;
  setState(ctx, e, 'restoring');
  event(ctx, 'undo', port, reason, { target, ...(loop !== null ? { bridge: loop } : {}), evidence });
  if (loop !== null) {
    const b = bridge(ctx, loop);
    b.tried.set(port, ctx.tNs);
    if (b.inFlight === port) b.inFlight = null;
    if (b.along === port) b.along = null;
    const cands = !cutInFlight(b) ? candidates(ctx, b, b.members) : [];
    if (cands.length > 0) {
      // Down first, then up: the loop is never closed again while it may still carry frames.
      shutForLoop(ctx, loop, b, evidence, cands, { port, why: reason });
    } else if (!cutInFlight(b)) {
      notice(ctx, `unreach:${loop}`, 'flood-observed', loop, `loop on ${loop}: no other member may be shut after ${reason}; reachability comes first, so the loop may storm again`, { evidence });
    }
  }
  command(ctx, 'link-up', port, `undo: ${reason}`);
}

// --- operator ------------------------------------------------------------------------------------

function onOperator(ctx: Ctx, o: OperatorCommand): void {
  const e = ctx.st.ports.get(o.port);
  const cur: BreakerPortState = e?.state ?? 'forwarding';
  const why = `(by ${o.by}: ${o.reason})`;
  if (o.kind === 'hold') return onHold(ctx, o, cur);
  if (o.kind === 'release') return onRelease(ctx, o, cur, why);
  if (o.kind === 'restore') {
    if (cur === 'probing') return restoreProbing(ctx, o, entry(ctx, o.port), why);
    if (cur !== 'tripped') {
      const hint = cur === 'held' ? ' (release the hold first)' : '';
      event(ctx, 'action-failed', o.port, `restore of ${o.port} refused: port is ${cur}${hint} ${why}`, { by: o.by, ...o.extra });
      return;
    }
    const en = entry(ctx, o.port);
    const reason = `operator restore by ${o.by}: ${o.reason}`;
    command(ctx, 'link-up', o.port, reason);
    setState(ctx, en, 'restoring');
    en.rec = null;
    en.reason = reason;
    en.by = o.by;
    en.extra = o.extra;
    return;
  }
  const pp = ctx.ports.get(o.port);
  if (pp === undefined || pp.observed) {
    event(ctx, 'action-failed', o.port, `trip of ${o.port} refused: ${pp ? 'observed only, not named by the policy' : 'not a watched port'} ${why}`, { by: o.by });
    return;
  }
  if (pp.protected) {
    event(ctx, 'action-failed', o.port, `trip of ${o.port} refused: protected ${why}`, { by: o.by });
    return;
  }
  // A probing port is up (the link-up landed): a human may shut it like a forwarding one, which
  // ends its recovery. While the probe's link-up is still in flight, a link-down could lose the race.
  const probeUp = cur === 'probing' && e?.rec?.probeUntilNs != null;
  if (cur !== 'forwarding' && !probeUp) {
    const hint = cur === 'probing' ? ' (recovery probe starting; try again, or hold it)' : '';
    event(ctx, 'action-failed', o.port, `trip of ${o.port} refused: port is ${cur}${hint} ${why}`, { by: o.by });
    return;
  }
  // An explicit human request: not budgeted and carried out even in dry run.
  const reason = `operator trip by ${o.by}: ${o.reason}`;
  command(ctx, 'link-down', o.port, reason);
  const en = entry(ctx, o.port);
  setState(ctx, en, 'tripping');
  en.reason = reason;
  en.by = o.by;
  en.auto = false;
  en.loop = null;
  en.next = [];
  en.evidence = undefined;
  en.extra = o.extra;
  en.rec = null;
}

function onHold(ctx: Ctx, o: OperatorCommand, cur: BreakerPortState): void {
  const pp = ctx.ports.get(o.port);
  const until = o.untilMs !== undefined && Number.isFinite(o.untilMs) ? o.untilMs : null;
  if ((pp === undefined || pp.observed) && cur === 'forwarding') {
    event(ctx, 'action-failed', o.port, `hold of ${o.port} refused: ${pp ? 'observed only, not named by the policy' : 'not a watched port'} (by ${o.by}: ${o.reason})`, { by: o.by, ...o.extra });
    return;
  }
  // Protected ports can be held: protection stops the automaton, not a human who decided.
  const prot = pp?.protected ? ' (protected port: held by operator decision)' : '';
  const forText = until === null ? 'until released' : `until ${iso(until)}`;
  const reason = `operator hold by ${o.by}: ${o.reason}${prot}, ${forText}`;
  const en = entry(ctx, o.port);
  // Down now if it may be up; a link-up in flight is answered by a link-down when it lands.
  if (cur === 'forwarding' || cur === 'probing') command(ctx, 'link-down', o.port, reason);
  // A hold cancels automatic recovery (and an undo in flight): a human decided the port stays down.
  en.rec = null;
  en.undo = false;
  setState(ctx, en, 'held');
  en.reason = reason;
  en.by = o.by;
  en.auto = false;
  en.loop = null;
  en.next = [];
  en.untilMs = until;
  en.extra = o.extra;
  event(ctx, 'hold', o.port, reason, { by: o.by, ...(until !== null ? { until: iso(until), untilMs: until } : {}), previous: cur, ...o.extra });
}

function onRelease(ctx: Ctx, o: OperatorCommand, cur: BreakerPortState, why: string): void {
  if (cur !== 'held') {
    event(ctx, 'action-failed', o.port, `release of ${o.port} refused: port is ${cur}, not held ${why}`, { by: o.by, ...o.extra });
    return;
  }
  const en = entry(ctx, o.port);
  setState(ctx, en, 'tripped');
  en.untilMs = null;
  en.reason = `hold released by ${o.by}: ${o.reason}; still down until an operator restores it`;
  en.by = o.by;
  event(ctx, 'release', o.port, en.reason, { by: o.by, ...o.extra });
}

/** Holds whose time is up become 'tripped' (still down until restore). */
function expireHolds(ctx: Ctx): void {
  for (const [port, e] of ctx.st.ports) {
    if (e.state !== 'held' || e.untilMs === null || e.untilMs > ctx.wallMs) continue;
    const was = iso(e.untilMs);
    setState(ctx, e, 'tripped');
    e.untilMs = null;
    e.reason = `hold expired at ${was}; still down until an operator restores it`;
    event(ctx, 'hold-expired', port, e.reason, { by: e.by });
  }
}

/** A link result for a held port: the hold stands whatever the result says. */
function onHeldResult(ctx: Ctx, e: PortEntry, r: ActionResult): void {
  if (r.kind === 'link-down') {
    if (!r.ok) event(ctx, 'action-failed', r.port, `link-down of held ${r.port} failed: ${r.error ?? 'unknown error'} (reasserted)`, { action: r });
    else event(ctx, 'hold', r.port, `${r.port} is down (held)`, { action: r, by: e.by, applied: true });
    return;
  }
  // A link-up that was in flight when the hold came, or one nobody asked for: down again.
  if (r.ok) {
    command(ctx, 'link-down', r.port, `${r.port} came up while held: down again`);
  }
}

// --- verdicts ------------------------------------------------------------------------------------

function onLoop(ctx: Ctx, v: Extract<Verdict, { kind: 'loop' }>): void {
  const key = v.bridge ?? NO_BRIDGE;
  const b = bridge(ctx, key);
  // One shut at a time per loop, and its effect is judged only after settle, or as soon as the
  // evidence shows the loop going on without the shut port (three uplinks into one switch: one
  // shut is not enough, and every ms of settle is a ms of storm).
  if (cutInFlight(b)) return;
  // Inside settle, only the members seen circling after the stop say the loop goes on, and only
  // they are cut next (circlingAfter): two of them are the loop going on. Three or more may be a
  // loop and a member that only drains: with two loops on one bridge (up1/up2 through the
  // switch, a VM bridging vm7/vm8), cutting vm7 ends the VM's loop, and vm8 drains for 0.6-4 ms
  // looking like up1 and up2 over the span (rx ≈ tx), and was cut next, needlessly (lab,
  // agent-operator-shapes). So with three or more the early judgement waits: a drain's rx ends,
  // its share of the span falls under 1/PERSIST_RX_TX within a few samples, and the members left
  // are the loop (or settle's end judges the whole verdict). Of two, one whose frames came back
  // goes first (circlesAfter's CAME_BACK).
  const after = ctx.tNs < b.settleUntilNs ? circlingAfter(ctx, v, b.shutDoneNs) : null;
  if (after !== null && after.alive.length !== PERSIST_MEMBERS) return;
  const alive = after === null ? null : after.back.length > 0 ? after.back : after.alive;
  if (waitsForOtherShut(ctx, key, v)) {
    b.members = [...v.members];
    b.waitUntilNs = ctx.tNs + ctx.policy.breaker.settleMs * 1e6;
    return;
  }
  for (const [p, t] of b.tried) if (ctx.tNs - t >= ctx.windowNs) b.tried.delete(p);
  const cands = candidates(ctx, b, alive ?? v.members);
  if (cands.length === 0) {
    // Inside settle the loop goes on through members none of which may be cut now (protected,
    // tried, spared, or none seen coming back yet): a later sample or settle's end decides.
    if (alive !== null) return;
    const why = unnamedOnlyReason(key, v.members, ctx.ports) ?? `loop on ${key} but every member is protected or already tripped`;
    notice(ctx, `none:${key}`, 'flood-observed', key, why, {
      members: v.members,
      evidence: v.evidence,
    });
    return;
  }
  b.members = [...v.members];
  b.guest = v.guest ?? null;
  // Inside settle only when persistsAfter said so: the journal says which evidence decided.
  const early = ctx.tNs < b.settleUntilNs && b.lastPort !== null;
  const two = early ? null : twoCutsWhy(ctx, key, b, v, cands);
  if (two !== null) {
    shutForLoop(ctx, key, b, v.evidence, cands, null, { why: two, other: cands[1]!, with: false });
    shutForLoop(ctx, key, b, v.evidence, cands.slice(1), null, { why: two, other: cands[0]!, with: true });
    return;
  }
  shutForLoop(ctx, key, b, v.evidence, cands, early ? { port: b.lastPort!, why: `loop on ${key} still circling on ${(alive ?? v.members).join(',')} in the samples measured after ${b.lastDry ? 'would-trip of' : 'shutting'} ${b.lastPort} (${Math.round((ctx.tNs - b.shutDoneNs) / 1e6)} ms after it landed)` } : null);
}

/**
 * Does this loop verdict need two cuts at once, and why (null: one, then the evidence decides)?
 * Three members that are every way the circling frames come back into their bridge (the
 * detector's onlyWaysIn: each other port read just now takes in none of them): whatever lies
 * beyond, each member is on a cycle through the bridge, so they all lead into one segment (a
 * member alone in its segment would have no way back), and one cut leaves the other two a loop.
 * Three unbonded uplinks into one switch were cut one, then the second once the samples after
 * the first stop showed the loop going on (at least 2 ms, then rx ≈ tx over them): 2.3-4.0 ms
 * from the first stop to that verdict and 0.3-1.3 ms more to the second stop, quiet at 4.7-7.7 ms
 * where the near-limit poller, cutting both at once, was quiet at ~3 (bench-reaction kvm-3up,
 * session 20, 8 storms; cutting both at the first verdict: 1.5-4.8 ms). Only on a fresh story (no shut of this loop within windowMs, every
 * member forwarding), on a local bridge (an ESXi vSwitch never forwards between uplinks), with
 * two members that may be shut and budget for both. With four or more members the count does not
 * say which to keep: two loops through one bridge (two uplinks into each of two switches, a
 * guest bridging two vNICs beside two uplinks) need one cut each, and cutting all but one would
 * cut a whole switch off; those go one at a time, as before. Not covered (either would cut one
 * member too many): a switch port that reflects frames back to a port not in hairpin mode, and a
 * storm from elsewhere entering by one member while the host's own loop runs through the other two.
 */
function twoCutsWhy(ctx: Ctx, key: string, b: BridgeEntry, v: Extract<Verdict, { kind: 'loop' }>, cands: readonly string[]): string | null {
  if (v.onlyWaysIn !== true || v.members.length !== 3 || cands.length < 2 || key === NO_BRIDGE || hostOfBridge(key) !== '') return null;
  if (b.lastPort !== null && ctx.tNs - b.lastNs < ctx.windowNs) return null;
  for (const m of v.members) if ((ctx.st.ports.get(m)?.state ?? 'forwarding') !== 'forwarding') return null;
  // Budget for both, or neither goes as a pair (one alone is the old story: settle, then evidence).
  const dry = (p: string): boolean => ctx.ports.get(p)!.dryRun || ctx.policy.dryRun;
  const need = (dry(cands[0]!) ? 0 : 1) + (dry(cands[1]!) ? 0 : 1);
  if (need > 0 && !budgetLeft(ctx)) return null;
  if (ctx.st.autoShuts.length + need > ctx.policy.breaker.maxShuts) return null;
  const keep = v.members.find((m) => m !== cands[0] && m !== cands[1])!;
  return `${v.members.join(',')} are every way back into ${key} (no other port takes in what circles): a loop through three ports of one bridge needs two cuts, one leaves the other two circling; ${keep} stays up`;
}

/**
 * A loop through two bridges of one host (a VM bridging its vNIC on br0 with its vNIC on br1, or
 * a veth joining them) is a loop verdict on each bridge, in the same tick, and one shut ends
 * both: the lab shut both of the VM's vNICs, cutting the VM off where one would do. So a loop
 * verdict waits while another bridge of the same host (ESXi: the same host's vSwitches) has a
 * shut in flight (for at most its settle) or settling, unless this loop's own members show it
 * going on wholly after that shut landed (persistsAfter): an unrelated loop pays a sample or two.
 */
function waitsForOtherShut(ctx: Ctx, key: string, v: Extract<Verdict, { kind: 'loop' }>): boolean {
  const host = hostOfBridge(key);
  for (const [k, o] of ctx.st.bridges) {
    if (k === key || o.lastPort === null || hostOfBridge(k) !== host) continue;
    if (cutInFlight(o)) {
      // The same guest's loop seen from its other vSwitch: one cut ends it, however long the cut
      // call takes (vim-cmd over SSH: 100s of ms, longer than settle; the stand-in with a core
      // busy cut the guest's second vNIC too, 1 of 3 runs). Its result decides (a failure: next).
      if (sameGuest(o, v)) return true;
      if (ctx.tNs - o.lastNs < settleMsOf(ctx, (o.inFlight ?? o.along)!) * 1e6) return true;
    } else if (ctx.tNs < o.settleUntilNs && !persistsAfter(ctx, v, o.shutDoneNs)) return true;
  }
  return false;
}

/** Does the verdict's loop cross the guest whose loop the other bridge's last cut was for? */
function sameGuest(o: BridgeEntry, v: Extract<Verdict, { kind: 'loop' }>): boolean {
  return o.guest !== null && v.guest !== undefined && o.guest.vm === v.guest.vm;
}

/** '' for a local bridge, `<host>` for an ESXi vSwitch key `<host>/<vswitch>`. */
function hostOfBridge(key: string): string {
  const i = key.indexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

/** Members seen circling after a shut that show the loop going on (a loop needs two). */
const PERSIST_MEMBERS = 2;
/** Samples of a member, each measured wholly after the shut landed, that the early judgement needs at least. */
const PERSIST_SAMPLES = 2;
/** ... the newest of them read at least this long after the stop. */
const PERSIST_MIN_NS = 2e6;
/** rx and tx of a member that still circles frames agree within this factor (as the detector's). */
const PERSIST_RX_TX = 4;

/**
 * Does the verdict show the loop going on entirely after `doneNs`, when the shut stopped the port
 * (stoppedNs; or the tick that took in its result)? Two or more members still forwarding, each
 * moving frames both ways with rx ≈ tx over its samples measured wholly after doneNs (a sample's
 * interval must start at doneNs or later: the one that ends after it but starts before straddles
 * the shut): at least PERSIST_SAMPLES of them, the newest with traffic and read at least
 * PERSIST_MIN_NS after doneNs. Frames in flight when the shut landed are gone within a sample; a
 * loop that is broken leaves its other members with nothing to re-send. (Which of them is cut
 * next: see circlesAfter's CAME_BACK.)
 *
 * rx ≈ tx is judged on the frames of the whole span, not sample by sample: at 1 ms samples a
 * member's counts come in bursts (a three-uplink storm showed samples of rx 0 between samples of
 * twice the rate, lab trace 2026-12-05), so a per-sample test waited for two calm samples in a
 * row, often until settleMs (escalation 14-22 ms after the first shut landed).
 *
 * PERSIST_MIN_NS runs from the stop, when what was in flight starts to drain, not from the first
 * sample after it (0.3-1.1 ms later in the lab): from that sample, two whole intervals of ~1 ms
 * could fall just short of it (1.98 ms, kvm-3up bench, session 13) and cost a third one.
 *
 * Each sample's interval is its own (dtMs), not the gap to the previous entry in the window: a
 * sample the detector skipped (too short, or a read that failed) or one the sampler took without
 * judging it still moved the counters' base, so the next one's interval starts there. Read from
 * the previous entry, an interval that lies wholly after the stop looked like it straddled it.
 */
function persistsAfter(ctx: Ctx, v: Extract<Verdict, { kind: 'loop' }>, doneNs: number): boolean {
  return circlingAfter(ctx, v, doneNs).alive.length >= PERSIST_MEMBERS;
}

/**
 * The verdict's members still forwarding that circle frames wholly after doneNs (alive, see
 * persistsAfter), and those of them whose frames also came back (back, see circlesAfter).
 */
function circlingAfter(ctx: Ctx, v: Extract<Verdict, { kind: 'loop' }>, doneNs: number): { alive: string[]; back: string[] } {
  const out = { alive: [] as string[], back: [] as string[] };
  for (const m of v.members) {
    if ((ctx.st.ports.get(m)?.state ?? 'forwarding') !== 'forwarding') continue;
    const c = circlesAfter(v.evidence, m, doneNs);
    if (c !== NOT_CIRCLING) out.alive.push(m);
    if (c === CAME_BACK) out.back.push(m);
  }
  return out;
}

const NOT_CIRCLING = 0;
const CIRCLING = 1;
const CAME_BACK = 2;

/**
 * One member's part of persistsAfter: its frames over the intervals wholly after doneNs, newest
 * back. CAME_BACK when, over the intervals after the first one in which it sent frames, it also
 * received at least 1/PERSIST_RX_TX of what it sent there: a member of a loop going on receives
 * again what it sent; one that only drains receives what was in flight at the stop, and what it
 * sends after the stop never comes back, however long the drain lasts (vm8 of the two loops
 * above: rx 91k pps for ~0.6 ms after the stop with the machine idle, ~22k pps for 4 ms with one
 * core busy, then nothing, while it sent the uplinks' storm flooded to it). That needs a round
 * trip seen after the stop, up to a sample later than CIRCLING (kvm-3up bench: stop to
 * escalation verdict p50 2.6-2.8 ms on CIRCLING, 3.5-3.7 ms waiting for CAME_BACK), so onLoop
 * does not wait for it: of two members circling, one that came back is cut first. It is no proof
 * either: a drain that overlaps the member's own sending passes it (lab, once in 4 runs).
 */
function circlesAfter(ev: Evidence, m: string, doneNs: number): number {
  const w = ev.window;
  let n = 0;
  let newestNs = NaN;
  let newestMoves = false;
  // Frames in and out over the intervals newer than the current one (rxNewer, txNewer), and over
  // those newer than the oldest interval with frames out so far (rxBack, txBack: what came back).
  let rxNewer = 0;
  let txNewer = 0;
  let rxBack = 0;
  let txBack = 0;
  for (let i = w.length - 1; i >= 0; i--) {
    const x = w[i]!;
    if (x.port !== m) continue;
    // Evidence times are ms relative to evidence.tNs: compare within a microsecond's rounding.
    const t = ev.tNs + x.tMs * 1e6;
    if (Number.isNaN(newestNs)) {
      newestNs = t;
      newestMoves = x.rxPps + x.txPps > 0;
    }
    const startNs = x.dtMs !== undefined && x.dtMs > 0 ? t - x.dtMs * 1e6 : olderSampleNs(ev, m, i);
    if (!(startNs >= doneNs - 1e3)) break; // this interval straddles the shut (or its start is unknown)
    const dt = t - startNs;
    if (x.txPps > 0) {
      rxBack = rxNewer;
      txBack = txNewer;
    }
    rxNewer += x.rxPps * dt;
    txNewer += x.txPps * dt;
    n++;
  }
  if (n < PERSIST_SAMPLES || !newestMoves || newestNs - doneNs < PERSIST_MIN_NS) return NOT_CIRCLING;
  const rx = rxNewer;
  const tx = txNewer;
  if (!(rx > 0 && tx > 0 && rx <= PERSIST_RX_TX * tx && tx <= PERSIST_RX_TX * rx)) return NOT_CIRCLING;
  return rxBack > 0 && PERSIST_RX_TX * rxBack >= txBack ? CAME_BACK : CIRCLING;
}

/** A window entry without dtMs (written before it was kept): its interval starts at the port's previous entry; NaN: none. */
function olderSampleNs(ev: Evidence, m: string, i: number): number {
  for (let j = i - 1; j >= 0; j--) if (ev.window[j]!.port === m) return ev.tNs + ev.window[j]!.tMs * 1e6;
  return NaN;
}

/**
 * A loop member that joined its bridge this recently (PortPolicy.joinedNs: enslaved, plugged in
 * already enslaved, or its carrier came up while in the bridge, while the agent ran) is cut
 * before the other members of its shutOrder role. A loop that starts right after a port joined
 * was closed by that join, and cutting the joiner puts the bridge back as it was before (issue
 * 11), where cutting by name cut the uplink that had carried production all along. 60 s: with a forwarding far end the loop closes within a
 * millisecond of the enslave, but a switch port running classic STP forwards only 2 x 15 s
 * (forward delay) after its link came up, and autonegotiation or LACP add seconds; a minute
 * covers that, and a member that forwarded for a minute before the storm is no longer the change.
 */
export const RECENT_JOIN_MS = 60_000;

/**
 * Within one shutOrder role, after a recent joiner, an overlay's tunnel port (a VXLAN device in
 * the bridge, PortPolicy.overlay) is cut before a physical port. A loop through a tunnel and a
 * physical uplink of one bridge (two hosts each bridging the segment's VXLAN port with an uplink
 * into the same switch: the classic overlay mistake) means the tunnel carries the bridge to a
 * segment it already reaches by its own wire. Either cut leaves every host reachable (a loop is a
 * cycle), but cutting the uplink sends this host's traffic for the LAN round through the tunnel
 * and a remote host's uplink, and depends on that host; cutting the tunnel leaves the host on its
 * own wire, as it would be without the mistake, and the underlay (no bridge port) untouched.
 * This host cannot see the far side, so the journal says what it knows: which port is the tunnel
 * and over which underlay it runs.
 */
const OVERLAY_FIRST = 'tunnels first';

/** Members that may be shut now, in shut order (recent joiners first within a role, see RECENT_JOIN_MS; then tunnels, OVERLAY_FIRST). */
function candidates(ctx: Ctx, b: BridgeEntry, members: readonly string[]): string[] {
  const out: string[] = [];
  for (const m of members) {
    const pp = ctx.ports.get(m);
    if (pp === undefined || pp.protected || !Number.isFinite(pp.shutRank)) continue;
    const pe = ctx.st.ports.get(m);
    if ((pe?.state ?? 'forwarding') !== 'forwarding') continue;
    if (pe?.spareUntilNs !== undefined && ctx.tNs < pe.spareUntilNs) continue;
    if (b.tried.has(m)) continue;
    out.push(m);
  }
  return out.sort((x, y) => {
    const px = ctx.ports.get(x)!;
    const py = ctx.ports.get(y)!;
    // shutOrder's role first, always: a recent join never moves a port ahead of another role.
    const role = roleTier(px.shutRank) - roleTier(py.shutRank);
    if (role !== 0) return role;
    // Within a role, the newest recent joiner first (the last join is the one that closed the loop).
    const ax = joinedAgo(ctx, px);
    const ay = joinedAgo(ctx, py);
    if (ax !== ay) return ax < ay ? -1 : 1;
    // Then a tunnel port before a physical one (see OVERLAY_FIRST).
    const ox = px.overlay === undefined ? 1 : 0;
    const oy = py.overlay === undefined ? 1 : 0;
    if (ox !== oy) return ox - oy;
    const d = px.shutRank - py.shutRank;
    return d !== 0 ? d : x < y ? -1 : x > y ? 1 : 0;
  });
}

/** The shutOrder position in a rank (roleIndex * MAX_PORT_RULES + ruleIndex, policy/match.ts). */
function roleTier(rank: number): number {
  return Math.floor(rank / MAX_PORT_RULES);
}

/** '412 ms' or '41.2 s', for people reading the journal. */
function agoText(ns: number): string {
  return ns < 10e9 ? `${Math.round(ns / 1e6)} ms` : `${(ns / 1e9).toFixed(1)} s`;
}

/**
 * The join as it happened: a port enslaved (or that appeared enslaved) "joined" its bridge; one
 * that was in the bridge all along and whose carrier came up (a cable plugged in) did not join
 * anything, and an operator looking for an enslave in the host's history would find none.
 */
function joinText(ctx: Ctx, target: string, key: string, pp: PortPolicy, ago: number): string {
  if (pp.joinedBy !== 'carrier') return `${target} joined ${key} ${agoText(ago)} before this verdict`;
  // Read during the storm (as its ports turned hot, or at the verdict; the listing was late): only
  // the window since the listing is known.
  const within = windowNs(ctx, pp);
  if (within !== null) return `${target}'s carrier came up in the ${agoText(within)} before this verdict (read during this storm), already in ${key}`;
  return `${target}'s carrier came up ${agoText(ago)} before this verdict, already in ${key}`;
}

/** A carrier-up read during the storm happened within this many ns before the verdict (PortPolicy.joinedAfterNs); null: not such a join. */
function windowNs(ctx: Ctx, pp: PortPolicy): number | null {
  return pp.joinedAfterNs === undefined ? null : Math.max(0, ctx.tNs - pp.joinedAfterNs);
}

/** The journal's joinedWithinMs for a carrier-up found at a verdict. */
function withinMs(ctx: Ctx, pp: PortPolicy): { joinedWithinMs: number } | null {
  const w = windowNs(ctx, pp);
  return w === null ? null : { joinedWithinMs: Math.round(w / 1e5) / 10 };
}

/** ns since the port joined its bridge, when that is within RECENT_JOIN_MS; Infinity otherwise. */
function joinedAgo(ctx: Ctx, pp: PortPolicy): number {
  const j = pp.joinedNs;
  if (j === undefined) return Infinity;
  // Stamped inside this very tick (a port listed again after the tick's tNs was taken): now.
  const ago = Math.max(0, ctx.tNs - j);
  return ago < RECENT_JOIN_MS * 1e6 ? ago : Infinity;
}

/**
 * `instead`: the member this shut replaces right away (its link-down failed or was undone), or
 * (early) the one whose shut did not end the loop, and why. `two`: this shut is one of the two a
 * three-member loop needs at once (twoCutsWhy): why, and the other port (`with`: the first one,
 * shut in this same step; this one then goes along with it, b.along, no escalation).
 */
function shutForLoop(
  ctx: Ctx,
  key: string,
  b: BridgeEntry,
  evidence: Evidence | undefined,
  cands: string[],
  instead: { port: string; why: string } | null,
  two: { why: string; other: string; with: boolean } | null = null,
): boolean {
  const target = cands[0]!;
  const pp = ctx.ports.get(target)!;
  const dry = pp.dryRun || ctx.policy.dryRun;
  const ago = joinedAgo(ctx, pp);
  const joined = Number.isFinite(ago) ? { joinedMsBefore: Math.round(ago / 1e5) / 10, joinedBy: pp.joinedBy ?? 'bridge', ...withinMs(ctx, pp) } : null;
  const order = joined
    ? `${joinText(ctx, target, key, pp, ago)}: cutting it undoes the change that closed the loop; first of ${cands.join(',')} by shut order, recent joiners first`
    : overlayOrder(ctx, target, pp, cands) ?? `first of ${cands.join(',')} by shut order`;
  const both = two === null ? '' : two.with ? `; ${two.why}: shut with ${two.other}` : `; ${two.why}: ${two.other} is shut with it`;
  const reason = `loop on ${key}${guestText(b, target)}: shut ${target} (${order}${both})${unnamedShutNote(b.members, ctx.ports, target)}`;
  if (!dry && !budgetLeft(ctx)) {
    notice(ctx, `budget:${key}`, 'flood-observed', target, `shut budget exhausted: ${budgetText(ctx)}; loop on ${key} continues, would shut ${target}`, {
      evidence,
    });
    return false;
  }
  const prev = two?.with ? null : instead?.port ?? (b.lastPort !== null && ctx.tNs - b.lastNs < ctx.windowNs ? b.lastPort : null);
  if (prev !== null) {
    const why =
      instead !== null
        ? instead.why
        : `loop on ${key} persisted ${settleMsOf(ctx, prev)} ms after ${b.lastDry ? 'would-trip of' : 'shutting'} ${prev}`;
    event(ctx, 'escalate', target, `${why}; escalating to ${target}`, { previous: prev, bridge: key, evidence });
  }
  b.lastPort = target;
  b.lastNs = ctx.tNs;
  b.lastDry = dry;
  b.tried.set(target, ctx.tNs);
  if (dry) {
    // Shadow mode: say what would happen and behave as if it had (settle, then escalate).
    notice(ctx, `would-trip:${target}`, 'would-trip', target, reason, { evidence, bridge: key, dryRun: true, ...joined });
    b.settleUntilNs = ctx.tNs + settleMsOf(ctx, target) * 1e6;
    // The would-trip "lands" now: only samples after it may show the loop going on without it.
    b.shutDoneNs = ctx.tNs;
    return true;
  }
  ctx.st.autoShuts.push(ctx.tNs);
  const e = autoLinkDown(ctx, target, reason, evidence, key, cands.slice(1), undefined);
  if (joined) e.extra = joined; // journaled with the trip
  if (two?.with) b.along = target;
  else b.inFlight = target;
  return true;
}

/** ' through VM x (...)' when the loop crosses an ESXi guest forwarding between its vNICs; '' otherwise. */
function guestText(b: BridgeEntry, target: string): string {
  const g = b.guest;
  if (g === null) return '';
  const which = g.ports.includes(target) ? `; ${target} is its vNIC` : '';
  return ` through VM ${g.vm} (the guest forwards between its vNICs ${g.ports.join(',')}${which})`;
}

/**
 * Why a tunnel port was chosen over a physical one of its role (OVERLAY_FIRST), or null when that
 * rule did not decide: the target is no tunnel, or every candidate of its role is one.
 */
function overlayOrder(ctx: Ctx, target: string, pp: PortPolicy, cands: readonly string[]): string | null {
  const o = pp.overlay;
  if (o === undefined) return null;
  const tier = roleTier(pp.shutRank);
  const physical = cands.filter((c) => {
    const cp = ctx.ports.get(c);
    return cp !== undefined && cp.overlay === undefined && roleTier(cp.shutRank) === tier;
  });
  if (physical.length === 0) return null;
  const under = o.underlay !== null ? `its underlay ${o.underlay} is no bridge port and stays up` : 'its underlay is no bridge port and stays up';
  return (
    `${target} is a VXLAN tunnel port (${under}): a loop through it and ${physical.join(',')} means the tunnel joins ${
      physical.length === 1 ? 'a segment that port' : 'a segment those ports'
    } already reach${physical.length === 1 ? 'es' : ''}, so the tunnel goes and the host keeps its own wire; first of ${cands.join(',')} by shut order, ${OVERLAY_FIRST}`
  );
}

/** The breaker's own link-down: issue it and take the port into 'tripping' with why and what next. */
function autoLinkDown(ctx: Ctx, port: string, reason: string, evidence: Evidence | undefined, loop: string | null, next: string[], by: string | undefined): PortEntry {
  command(ctx, 'link-down', port, reason);
  const e = entry(ctx, port);
  setState(ctx, e, 'tripping');
  e.reason = reason;
  e.evidence = evidence;
  e.auto = true;
  e.loop = loop;
  e.next = next;
  e.by = by;
  e.extra = undefined;
  e.stopped = false;
  return e;
}

function onFlood(ctx: Ctx, v: Extract<Verdict, { kind: 'flood' }>): void {
  const p = v.port;
  const pp = ctx.ports.get(p);
  if (pp === undefined) return;
  if ((ctx.st.ports.get(p)?.state ?? 'forwarding') !== 'forwarding') return;
  // Frames still in flight when a loop member goes down make the other member look like a
  // single-source flood for a sample or two (rx hot, tx already falling): judge it after settle.
  // So for a guest's other vNIC when the loop crosses that guest (on ESXi its vNICs sit on two
  // vSwitches: cutting one, the other drained the guest's bridge as a 35-43k/s "flood from" it
  // and was cut too, stand-in lab with a core busy, 2 of 3 runs).
  for (const b of ctx.st.bridges.values()) {
    if ((cutInFlight(b) || ctx.tNs < b.settleUntilNs || ctx.tNs < b.waitUntilNs) && (b.members.includes(p) || b.guest?.ports.includes(p) === true)) return;
  }
  const spare = ctx.st.ports.get(p)?.spareUntilNs;
  if (spare !== undefined && ctx.tNs < spare) {
    notice(ctx, `spare:${p}`, 'flood-observed', p, `flood on ${p}: not shut again, its last link-down cut reachability`, { evidence: v.evidence });
    return;
  }
  if (pp.observed) {
    notice(ctx, `flood:${p}`, 'flood-observed', p, unnamedFloodReason(p), { evidence: v.evidence });
    return;
  }
  const tunnels = tunnelsOver(ctx.ports, p);
  if (tunnels !== null) {
    notice(ctx, `flood:${p}`, 'flood-observed', p, `flood on ${p}, the underlay of ${tunnels} (VXLAN): its frames are the tunnels' own, encapsulated, for every segment they carry; never shut for a flood (the tunnel ports are judged on their own)`, { evidence: v.evidence });
    return;
  }
  if (pp.protected || !ctx.policy.breaker.floodShutRoles.includes(pp.role)) {
    const why = pp.protected ? 'port is protected' : `role ${pp.role} is not in breaker.floodShutRoles`;
    notice(ctx, `flood:${p}`, 'flood-observed', p, `flood on ${p} (role ${pp.role}): not shut, ${why}`, { evidence: v.evidence });
    return;
  }
  const reason = `flood from ${p} (role ${pp.role}, not a loop): shut ${p}`;
  if (pp.dryRun || ctx.policy.dryRun) {
    notice(ctx, `would-trip:${p}`, 'would-trip', p, reason, { evidence: v.evidence, dryRun: true });
    return;
  }
  if (!budgetLeft(ctx)) {
    notice(ctx, `budget:${p}`, 'flood-observed', p, `shut budget exhausted: ${budgetText(ctx)}; flood from ${p} continues`, {
      evidence: v.evidence,
    });
    return;
  }
  ctx.st.autoShuts.push(ctx.tNs);
  autoLinkDown(ctx, p, reason, v.evidence, null, [], undefined);
}

/**
 * The watched tunnel ports whose underlay device is `port` (PortPolicy.overlay), comma-joined, or
 * null. With a multicast underlay a VXLAN device sends each flooded frame to its group, so the
 * underlay NIC receives every VNI's broadcast and multicast as IP multicast: a heavy stream from
 * a VM on another host made it "a flood from ul0", and a NIC ranked `other` was cut, every
 * tunnel of the host with it (lab, agent-overlay, session 18). Read on a flood verdict only.
 */
function tunnelsOver(ports: ReadonlyMap<string, PortPolicy>, port: string): string | null {
  let out: string | null = null;
  for (const pp of ports.values()) {
    if (pp.overlay?.underlay === port) out = out === null ? pp.name : `${out},${pp.name}`;
  }
  return out;
}

/**
 * A flood leaving by an uplink with no watched source: told, never acted on. The uplink is the
 * victim's way out, not the cause, and it may be the host's last one.
 */
function onEgress(ctx: Ctx, v: Extract<Verdict, { kind: 'egress' }>): void {
  const p = v.port;
  if (!ctx.ports.has(p) || (ctx.st.ports.get(p)?.state ?? 'forwarding') !== 'forwarding') return;
  notice(ctx, `egress:${p}`, 'flood-observed', p, `flood leaving by ${p}, and no watched port shows its source: not shut (an uplink's own transmit is reported, never acted on); find the source on this host, e.g. watch its VM ports`, {
    evidence: v.evidence,
  });
}

// --- automatic recovery ---------------------------------------------------------------------------

function anyProbing(state: BreakerState): boolean {
  for (const e of state.ports.values()) if (e.state === 'probing') return true;
  return false;
}

/** Delay before probe number tries + 1: cooldownMs * backoff^tries, capped like every policy time. */
function cooldownMs(rc: Recovery, tries: number): number {
  return Math.min(rc.cooldownMs * rc.backoff ** tries, MAX_TIMER_MS);
}

/**
 * The port just went down by the breaker's own decision: schedule its next probe, or say that
 * the tries are used up. Returns the journal's `recovery` field, or undefined when manual.
 */
function scheduleRecovery(
  ctx: Ctx,
  e: PortEntry,
  port: string,
): { mode: 'auto'; failedProbes: number; maxTries: number; nextProbeInMs?: number; exhausted?: true } | undefined {
  const rc = ctx.ports.get(port)?.recovery;
  if (rc === undefined || rc.mode !== 'auto') {
    e.rec = null;
    return undefined;
  }
  const tries = e.rec?.tries ?? 0;
  if (tries >= rc.maxTries) {
    e.rec = null;
    return { mode: 'auto', failedProbes: tries, maxTries: rc.maxTries, exhausted: true };
  }
  const inMs = cooldownMs(rc, tries);
  e.rec = { tries, dueNs: ctx.tNs + inMs * 1e6, probeUntilNs: null, probeMs: rc.probeMs };
  return { mode: 'auto', failedProbes: tries, maxTries: rc.maxTries, nextProbeInMs: inMs };
}

function exhausted(ctx: Ctx, port: string, e: PortEntry, maxTries: number): void {
  e.reason = `${e.reason}; automatic recovery gave up after ${maxTries} failed probe(s): down until an operator restores it`;
  event(ctx, 'recovery-exhausted', port, `storm still present after ${maxTries} recovery probe(s); ${port} stays down until an operator restores it`, {
    by: AUTO_RECOVERY,
    maxTries,
  });
}

/** Probes that are due start; probes that stayed quiet for probeMs end in 'forwarding'. */
function stepRecovery(ctx: Ctx): void {
  for (const [port, e] of ctx.st.ports) {
    const rec = e.rec;
    if (rec === null) continue;
    if (e.state === 'tripped' && rec.dueNs <= ctx.tNs) {
      const rc = ctx.ports.get(port)?.recovery;
      // A reload made the port manual (or stopped watching it): recovery ends, the port stays down.
      if (rc === undefined || rc.mode !== 'auto') {
        e.rec = null;
        continue;
      }
      rec.tries++;
      rec.probeUntilNs = null;
      rec.probeMs = rc.probeMs;
      const reason = `recovery probe ${rec.tries} of ${rc.maxTries}: ${port} up for ${rc.probeMs} ms to see whether the storm is gone`;
      command(ctx, 'link-up', port, reason);
      e.staleUp = false;
      setState(ctx, e, 'probing');
      e.reason = reason;
      e.by = AUTO_RECOVERY;
      e.extra = undefined;
      event(ctx, 'probe', port, reason, { by: AUTO_RECOVERY, try: rec.tries, maxTries: rc.maxTries, probeMs: rc.probeMs });
    } else if (e.state === 'probing' && rec.probeUntilNs !== null && rec.probeUntilNs <= ctx.tNs) {
      const reason = `no storm for ${rec.probeMs} ms after recovery probe ${rec.tries}: ${port} forwards again`;
      setState(ctx, e, 'forwarding');
      e.reason = reason;
      e.rec = null;
      e.evidence = undefined;
      e.auto = false;
      event(ctx, 'restore', port, reason, { by: AUTO_RECOVERY, try: rec.tries });
      freshStory(ctx, port);
    }
  }
}

/** The probe's link-up came back: watch from now on, or count a failed probe. */
function onProbeUp(ctx: Ctx, e: PortEntry, rec: Recovering, r: ActionResult): void {
  if (r.ok) {
    rec.probeUntilNs = ctx.tNs + rec.probeMs * 1e6;
    return;
  }
  setState(ctx, e, 'tripped');
  event(ctx, 'action-failed', r.port, `link-up of ${r.port} for recovery probe ${rec.tries} failed: ${r.error ?? 'unknown error'}`, { action: r });
  const out = scheduleRecovery(ctx, e, r.port);
  if (out?.exhausted) exhausted(ctx, r.port, e, out.maxTries);
}

/** Does v name a probing port whose link is up? Then shut it again at once; true if so. */
function probeHit(ctx: Ctx, v: Verdict): boolean {
  if (v.kind === 'egress') return false;
  if (v.kind === 'flood') return retripIfProbing(ctx, v.port, v, null);
  let hit = false;
  for (const m of v.members) if (retripIfProbing(ctx, m, v, v.bridge ?? NO_BRIDGE)) hit = true;
  return hit;
}

/** A port from a slower source (ESXi over SSH) needs longer to show that its shut worked. */
function settleMsOf(ctx: Ctx, port: string): number {
  return Math.max(ctx.policy.breaker.settleMs, ctx.ports.get(port)?.settleMs ?? 0);
}

function retripIfProbing(ctx: Ctx, port: string, v: Verdict, key: string | null): boolean {
  const e = ctx.st.ports.get(port);
  if (e === undefined || e.state !== 'probing' || e.rec === null) return false;
  // A verdict naming the port means it carries the storm, so its link is up, even when the probe's
  // link-up result has not come back yet (the kernel applied it; the child's exit is still on its
  // way, slow on a busy machine): shut it again now, and ignore that result when it comes.
  // Otherwise the loop was escalated to another member, and both probes later restored both.
  const upInFlight = e.rec.probeUntilNs === null;
  // The same storm: no settle, no budget (the budget bounds new decisions, this undoes a test).
  const reason = `storm still present after recovery probe ${e.rec.tries}`;
  autoLinkDown(ctx, port, reason, v.evidence, key, [], AUTO_RECOVERY);
  if (upInFlight) e.staleUp = true;
  if (key !== null && v.kind === 'loop') {
    // Hold the loop's other members while this link-down lands and settles, as after any shut.
    const b = bridge(ctx, key);
    b.inFlight = port;
    b.members = [...v.members];
    b.lastPort = port;
    b.lastNs = ctx.tNs;
    b.lastDry = false;
    b.tried.set(port, ctx.tNs);
  }
  return true;
}

/** An operator restore of a probing port: confirm it now if it is up, else when its link-up lands. */
function restoreProbing(ctx: Ctx, o: OperatorCommand, e: PortEntry, why: string): void {
  const reason = `operator restore by ${o.by} during recovery probe ${e.rec?.tries ?? '?'}: ${o.reason}`;
  const up = e.rec?.probeUntilNs != null;
  e.rec = null;
  e.reason = reason;
  e.by = o.by;
  e.extra = o.extra;
  if (!up) {
    setState(ctx, e, 'restoring'); // the probe's link-up in flight completes this restore
    return;
  }
  setState(ctx, e, 'forwarding');
  e.evidence = undefined;
  event(ctx, 'restore', o.port, reason, { by: o.by, ...o.extra, note: `link already up ${why}` });
  e.extra = undefined;
  freshStory(ctx, o.port);
}

/** A port back to forwarding starts a fresh story: if the loop is still there it may be chosen again. */
function freshStory(ctx: Ctx, port: string): void {
  for (const b of ctx.st.bridges.values()) {
    b.tried.delete(port);
    if (b.lastPort === port) b.lastPort = null;
  }
}

/** Monotonic ns when the next recovery probe is due, or Infinity. No allocation. */
export function nextRecoveryNs(state: BreakerState): number {
  let t = Infinity;
  for (const e of state.ports.values()) if (e.state === 'tripped' && e.rec !== null && e.rec.dueNs < t) t = e.rec.dueNs;
  return t;
}

/** Monotonic ns when a reported condition ends unless seen again (the breaker must step then to say so), or Infinity. */
export function nextNoticeEndNs(state: BreakerState): number {
  let t = Infinity;
  for (const c of state.notices.values()) if (c.seenNs + NOTICE_END_NS < t) t = c.seenNs + NOTICE_END_NS;
  return t;
}

/** Is any port probing? The daemon samples at activeMs meanwhile. No allocation. */
export function recoveryProbing(state: BreakerState): boolean {
  return anyProbing(state);
}

// --- helpers -------------------------------------------------------------------------------------

function budgetLeft(ctx: Ctx): boolean {
  const shuts = ctx.st.autoShuts;
  // Window (t - W, t]: a shut exactly W ago no longer counts.
  while (shuts.length > 0 && shuts[0]! <= ctx.tNs - ctx.windowNs) shuts.shift();
  return shuts.length < ctx.policy.breaker.maxShuts;
}

function budgetText(ctx: Ctx): string {
  return `${ctx.st.autoShuts.length} automatic link-downs within ${ctx.policy.breaker.windowMs} ms (max ${ctx.policy.breaker.maxShuts})`;
}

function entry(ctx: Ctx, port: string): PortEntry {
  let e = ctx.st.ports.get(port);
  if (e === undefined) {
    e = { state: 'forwarding', since: now(ctx), reason: '', evidence: undefined, auto: false, loop: null, next: [], by: undefined, untilMs: null, rec: null };
    ctx.st.ports.set(port, e);
  }
  return e;
}

function bridge(ctx: Ctx, key: string): BridgeEntry {
  let b = ctx.st.bridges.get(key);
  if (b === undefined) {
    b = { inFlight: null, along: null, settleUntilNs: -Infinity, shutDoneNs: -Infinity, quietUntilNs: -Infinity, lastPort: null, lastNs: -Infinity, lastDry: false, tried: new Map(), members: [], waitUntilNs: -Infinity, guest: null };
    ctx.st.bridges.set(key, b);
  }
  return b;
}

function setState(ctx: Ctx, e: PortEntry, s: BreakerPortState): void {
  if (e.state !== s) e.since = now(ctx);
  e.state = s;
}

function command(ctx: Ctx, kind: ActionRequest['kind'], port: string, reason: string): void {
  if (ctx.commands === NO_COMMANDS) ctx.commands = [];
  ctx.commands.push({ kind, port, reason });
}

function event(ctx: Ctx, kind: JournalEvent['event'], port: string, reason: string, extra?: Record<string, unknown>): void {
  if (ctx.events === NO_EVENTS) ctx.events = [];
  const e: JournalEvent = { ts: now(ctx), event: kind, port, reason, policyHash: ctx.policy.hash };
  if (extra) for (const k of Object.keys(extra)) if (extra[k] !== undefined) e[k] = extra[k];
  ctx.events.push(e);
}

/** An event that would otherwise repeat every tick of a storm: at most once per windowMs per key. */
function notice(ctx: Ctx, key: string, kind: JournalEvent['event'], port: string, reason: string, extra?: Record<string, unknown>): void {
  const n = ctx.st.notices;
  const last = n.get(key);
  if (last !== undefined) {
    last.seenNs = ctx.tNs;
    if (ctx.tNs - last.emittedNs < ctx.windowNs) return;
    last.emittedNs = ctx.tNs;
    last.lines++;
  } else {
    n.set(key, { kind, port, sinceNs: ctx.tNs, emittedNs: ctx.tNs, seenNs: ctx.tNs, lines: 1 });
  }
  event(ctx, kind, port, reason, extra);
}

/** Conditions no step has seen for NOTICE_END_NS: one `ended` line each, then forgotten. */
function endNotices(ctx: Ctx): void {
  for (const [key, c] of ctx.st.notices) {
    if (ctx.tNs - c.seenNs < NOTICE_END_NS) continue;
    ctx.st.notices.delete(key);
    const lasted = ((c.seenNs - c.sinceNs) / 1e9).toFixed(1);
    event(ctx, 'ended', c.port, `${c.kind} on ${c.port} ended: not seen for ${NOTICE_END_NS / 1e9} s; it lasted ${lasted} s and was journaled ${c.lines} time${c.lines === 1 ? '' : 's'}`, {
      of: c.kind,
      lastedMs: Math.round((c.seenNs - c.sinceNs) / 1e6),
      lines: c.lines,
    });
  }
}

function now(ctx: Ctx): string {
  return (ctx.ts ??= iso(ctx.wallMs));
}

function iso(ms: number): string {
  // A bad wall clock must not throw in the middle of a storm (Date#toISOString throws on NaN).
  return new Date(Number.isFinite(ms) ? ms : 0).toISOString();
}
