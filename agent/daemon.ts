import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Logger } from './log.js';
import type {
  EsxiHostPolicy,
  ActionRequest,
  ActionResult,
  CounterSource,
  Counters,
  JournalEvent,
  Policy,
  PortInfo,
  PortPolicy,
  PortRates,
  Tick,
  Verdict,
} from './types.js';
import { emptyCounters } from './types.js';
import { createSysfsSource } from './sources/sysfs.js';
import { createPacketSource, loadPacketAddon } from './sources/packet.js';
import { createFdbSource, type FdbSource } from './sources/fdb.js';
import { createTripwire, type Tripwire } from './sources/tripwire.js';
import { listInterfaceNames, listInterfaces, isAdminUp } from './host/interfaces.js';
import { computeRates } from './sample/rates.js';
import { initialDetectorState, step as detectStep } from './detect/signature.js';
import { breakerBusy, breakerStep, holdExpiryDue, initialBreakerState, nextRecoveryNs, portStates, recoveryProbing, restoreHeld, restoreTripped, type OperatorCommand } from './breaker/state.js';
import { executeLinkAction } from './actions/link.js';
import { createPinger, type Pinger } from './actions/reachability.js';
import { heldPorts, openJournal, readJournal, readJournalTail, trippedPorts, type Journal } from './journal/journal.js';
import { loadPolicyFile } from './policy/load.js';
import { formatPolicyError } from './policy/errors.js';
import { resolvePorts } from './policy/match.js';
import { startControlServer, ControlError, type RequestContext } from './control/server.js';
import { requester, requesterText, type Requester } from './control/peer.js';
import { resolveGroup } from './control/group.js';
import { parseDuration } from './control/duration.js';
import { isValidIfName } from './host/names.js';
import { createNotifier as createSdNotifier } from './notify/sdnotify.js';
import { createHistogram, observe, snapshotFromStatus, startMetricsServer, type MetricsServer } from './notify/metrics.js';
import { createWebhookNotifier, type EventNotifier, type WebhookOptions } from './notify/webhook.js';
import { startEsxHost, type EsxHost } from './esxi/host.js';
import { esxHostOf } from './esxi/ports.js';
import { tripUndone } from './actions/esxi.js';
import type { EsxInventory } from './esxi/inventory.js';

// The daemon is the only place where clock, timers, sources, actions and the journal meet.
// Everything it calls on the sampling path is pure (rates, detector, breaker) or a kept-open
// fd read; commands run off the tick and their results come back on the next one.

export interface DaemonOptions {
  policyPath: string;
  stateDir: string;
  socketPath: string;
  dryRun: boolean;
  log: Logger;
  /** Group that owns the control socket (0660) and its directory (0750), by name. */
  socketGroup?: string;
  /** Prometheus text format on a loopback address (off when absent). */
  metrics?: { host: string; port: number };
  /** Where trips, restores, escalations and failed actions are sent (never blocks protection). */
  webhook?: WebhookOptions;
}

/** What a reload did: swapped in a new policy, or rejected it whole (the last good one stays). */
export type ReloadOutcome =
  | { ok: true; oldHash: string; policyHash: string; changed: boolean }
  | { ok: false; policyHash: string; errors: string[] };

export interface Daemon {
  /** Re-read the policy from the same path (SIGHUP, `stormbreaker reload`). Never throws for a bad policy. */
  reload(trigger: string, by?: Requester): Promise<ReloadOutcome>;
  stop(): Promise<void>;
}

const hrNs = (): number => Number(process.hrtime.bigint());
const PKG_VERSION = '0.1.0';
const NO_MOVES: Tick['fdbMoves'] = Object.freeze([]);
const RESCAN_MS = 1000;
// After the tripwire fires, sample at the active rate this long; a real storm turns warm within
// it and extends it by activeHoldMs, a lone legitimate broadcast costs a handful of samples.
const TRIPWIRE_BURST_MS = 5;
// Re-arm the tripwire at most this often, bounding the extra samples under broadcast chatter.
const TRIPWIRE_REARM_MS = 5;
// Without the tripwire nothing wakes an idle sampler early, so the idle period is capped here.
const IDLE_MS_WITHOUT_TRIPWIRE = 10;
const LAST_EVENTS = 200;
/** Baseline reachability check of policy.reachability.target, while nothing else is going on. */
const REACH_BASELINE_MS = 10_000;
/** A baseline check put off by a storm or an action in progress is tried again this soon. */
const REACH_RETRY_MS = 500;
/** `events` reads at most this many journal lines from the end of the file. */
const JOURNAL_TAIL_LINES = 10_000;

export class StartupError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log;
  const loaded = await loadPolicyFile(opts.policyPath);
  if ('errors' in loaded) {
    throw new StartupError(loaded.errors.map(formatPolicyError).join('\n'), 1);
  }
  // --dry-run from the command line wins over every policy, including reloaded ones.
  const withFlags = (p: Policy): Policy => (opts.dryRun ? { ...p, dryRun: true } : p);
  let policy: Policy = withFlags(loaded.policy);
  let policyLoadedAt = new Date().toISOString();
  let lastReloadError: { at: string; trigger: string; errors: string[] } | null = null;
  let reloads = 0;
  let socketGid: number | undefined;
  if (opts.socketGroup !== undefined) {
    try {
      socketGid = resolveGroup(opts.socketGroup);
    } catch (err) {
      throw new StartupError(`--socket-group: ${(err as Error).message}`, 1);
    }
  }

  const journal: Journal = openJournal(join(opts.stateDir, 'journal.jsonl'));
  const replay = readJournal(journal.path);
  if (replay.badLines.length > 0) {
    log.warn({ component: 'journal', badLines: replay.badLines }, 'journal has unreadable lines (skipped)');
  }
  const recentEvents: JournalEvent[] = replay.events.slice(-LAST_EVENTS);
  const lastTrip = new Map<string, JournalEvent>();
  for (const e of replay.events) if (e.event === 'trip' || e.event === 'would-trip') lastTrip.set(e.port, e);

  // systemd (Type=notify): READY once sampling runs, WATCHDOG from the sampling loop itself
  // (a stalled sampler is a dead agent), STATUS on trips, STOPPING on the way out.
  const sd = createSdNotifier(process.env, undefined, {
    onError: (err: Error, msg: string) => log.warn({ component: 'sdnotify', err: err.message, msg }, 'sd_notify failed'),
  });
  if (sd.problem) log.error({ component: 'sdnotify', err: sd.problem }, 'systemd notification unavailable: a Type=notify unit will time out');
  // Metrics and notifications come from the command line (--metrics, --webhook, --hook-argv) or
  // else from the policy's `metrics` / `notify`: the CLI wins, as an operator's explicit override,
  // and then the policy's section is ignored whole. Both are read once, here: a reload does not
  // restart the metrics server or the notifier, so changes to those sections take effect at the
  // next restart (keeping a listening socket and a delivery queue alive across reloads is simpler
  // and loses nothing in flight).
  const metricsAt = opts.metrics ?? policy.metrics;
  const metricsFrom = opts.metrics ? '--metrics' : 'policy metrics.listen';
  const onNotifyError = (e: Error & { code?: string }): void => log.warn({ component: 'webhook', code: e.code, err: e.message }, 'notification failed');
  const notifyTargets: WebhookOptions[] = opts.webhook ? [opts.webhook] : notifyFromPolicy(policy.notify);
  const hooks: EventNotifier | null = combineNotifiers(notifyTargets.map((w) => createWebhookNotifier({ ...w, onError: onNotifyError })));
  const NOTIFIED = new Set(['trip', 'would-trip', 'restore', 'escalate', 'action-failed', 'reassert', 'hold', 'release', 'recovery-exhausted', 'reload-failed', 'undo', 'reachability-down', 'reachability-up']);
  const reaction = createHistogram();
  const tripsTotal = new Map<string, number>();
  const startTimeSeconds = Math.floor(Date.now() / 1000);

  const record = (e: JournalEvent): void => {
    journal.append(e);
    if (e.event === 'trip') tripsTotal.set(e.port, (tripsTotal.get(e.port) ?? 0) + 1);
    if (hooks && NOTIFIED.has(e.event)) hooks.notify(e); // enqueue only: never waits on the network
    if (e.event === 'trip' || e.event === 'action-failed') sd.status(`${e.event} ${e.port}: ${e.reason}`);
    recentEvents.push(e);
    if (recentEvents.length > LAST_EVENTS) recentEvents.shift();
    if (e.event === 'trip' || e.event === 'would-trip') lastTrip.set(e.port, e);
    // An undo means an action cut the management path: an alert, like a failed action.
    const level = e.event === 'action-failed' || e.event === 'reload-failed' || e.event === 'undo' ? 'error' : e.event === 'flood-observed' || e.event === 'reachability-down' ? 'warn' : 'info';
    log[level]({ component: 'breaker', ...e }, e.event);
  };
  record({ ts: new Date().toISOString(), event: 'start', port: '', reason: 'agent started', policyHash: policy.hash, policyFile: policy.file, dryRun: policy.dryRun });

  // --- sources -----------------------------------------------------------------------------
  const warn = (component: string) => (obj: object, msg: string) => log.warn({ component, ...obj }, msg);
  const sources: CounterSource[] = [createSysfsSource({ warn: warn('sysfs') })];
  const addon = loadPacketAddon();
  if ('error' in addon) {
    log.warn({ component: 'packet', err: addon.error }, 'broadcast counting unavailable: falling back to total rx rates');
  } else {
    sources.push(createPacketSource({ warn: warn('packet') }, addon));
  }
  let fdb: FdbSource | null = policy.fdb.enabled ? createFdbSource({ now: hrNs, warn: warn('fdb') }) : null;

  // --- per-port sampling state, rebuilt only when the set of ports changes ---------------------
  // `ports`: every watched port, local and ESXi (the breaker and operators act on these);
  // `judged`: the ones the detector may judge now (an ESXi host whose counters stopped is left out).
  let localPorts = new Map<string, PortPolicy>();
  let ports = new Map<string, PortPolicy>();
  let judged = new Map<string, PortPolicy>();
  let allRates: PortRates[] = [];
  let infos: PortInfo[] = [];
  let prev = new Map<string, Counters>();
  let cur = new Map<string, Counters>();
  let rates: PortRates[] = [];
  const lastRates = new Map<string, PortRates>();

  function rescan(): void {
    const resolved = resolvePorts(policy, listInterfaceNames());
    const next = listInterfaces(undefined, (name) => resolved.has(name));
    const changed =
      next.length !== infos.length ||
      next.some((p, i) => p.name !== infos[i]!.name || p.bridge !== infos[i]!.bridge || p.ifindex !== infos[i]!.ifindex);
    localPorts = resolved;
    mergeRemote();
    // watch() every rescan: sources keep fds of unchanged ports and reopen ports that failed
    // or were recreated under the same name (new ifindex).
    for (const s of sources) s.watch(next);
    if (!changed) return;
    const added = next.filter((p) => !prev.has(p.name)).map((p) => p.name);
    const removed = infos.filter((p) => !resolved.has(p.name)).map((p) => p.name);
    infos = next;
    const np = new Map<string, Counters>();
    const nc = new Map<string, Counters>();
    for (const p of infos) {
      np.set(p.name, prev.get(p.name) ?? emptyCounters());
      nc.set(p.name, cur.get(p.name) ?? emptyCounters());
    }
    prev = np;
    cur = nc;
    rates = infos.map((p) => lastRates.get(p.name) ?? blankRates(p));
    for (const r of rates) lastRates.set(r.port, r);
    mergeRemote();
    log.info({ component: 'ports', watched: infos.map((p) => ({ port: p.name, bridge: p.bridge, role: ports.get(p.name)?.role })), added, removed }, 'watched ports changed');
  }

  // --- ESXi hosts over SSH (policy esxi): their ports join the same detector and breaker ------
  const esxHosts = new Map<string, EsxHost>();
  /** The same hosts as an array, and whether each was fresh at the last merge (the tick reads these: no allocation). */
  const esxList: EsxHost[] = [];
  const esxFresh: boolean[] = [];
  /** Re-merge when a host turned fresh or stale since the last merge. */
  function checkFresh(t: number): void {
    for (let i = 0; i < esxList.length; i++) {
      if (esxList[i]!.fresh(t) !== esxFresh[i]) return mergeRemote();
    }
  }
  function mergeRemote(): void {
    if (esxHosts.size === 0) {
      ports = localPorts;
      judged = localPorts;
      allRates = rates;
      return;
    }
    ports = new Map(localPorts);
    judged = new Map(localPorts);
    allRates = [...rates];
    const now = hrNs();
    for (let i = 0; i < esxList.length; i++) {
      const h = esxList[i]!;
      const fresh = h.fresh(now);
      esxFresh[i] = fresh;
      for (const [n, pp] of h.ports()) {
        ports.set(n, pp);
        if (fresh) judged.set(n, pp);
      }
      allRates.push(...h.rates());
    }
  }
  for (const hp of policy.esxi?.hosts ?? []) {
    esxHosts.set(
      hp.name,
      startEsxHost(policy, hp, policy.actions.retries, {
        onPortsChanged: () => {
          mergeRemote();
          log.info({ component: 'esxi', host: hp.name, ports: [...esxHosts.get(hp.name)?.ports().keys() ?? []], live: esxHosts.get(hp.name)?.live() }, 'ESXi ports changed');
        },
        // A block of counters arrived: judge it now, not at the next idle tick.
        onRates: () => kick(),
        onInventory: (inv) => reassertEsxi(hp, inv),
        log: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m), error: (o, m) => log.error(o, m) },
        ...(process.env.STORMBREAKER_SSH ? { ssh: process.env.STORMBREAKER_SSH } : {}),
      }),
    );
  }
  for (const h of esxHosts.values()) (esxList.push(h), esxFresh.push(false));

  // --- core state --------------------------------------------------------------------------
  let det = initialDetectorState();
  let brk = initialBreakerState();
  const tripped = trippedPorts(replay.events);
  if (tripped.size > 0) {
    brk = restoreTripped(brk, [...tripped.values()].map((t) => ({ port: t.port, evidence: t.event.evidence, since: t.since })));
  }
  // Holds outlive a restart with their expiry (one already past expires on the first step).
  const held = heldPorts(replay.events);
  if (held.size > 0) {
    const byText = (b: unknown): string | undefined =>
      typeof b === 'string' ? b : b && typeof b === 'object' && 'uid' in b ? `uid ${String((b as { uid: unknown }).uid)}` : undefined;
    brk = restoreHeld(brk, [...held.values()].map((h) => ({ port: h.port, since: h.since, reason: h.reason, untilMs: h.untilMs, ...(byText(h.by) !== undefined ? { by: byText(h.by)! } : {}) })));
  }
  const results: ActionResult[] = [];
  const operator: OperatorCommand[] = [];
  const tick: { tNs: number; ports: PortRates[]; fdbMoves: Tick['fdbMoves'] } = { tNs: 0, ports: [], fdbMoves: [] };
  // Automatic link-downs after which the management gateway did not answer (see verifyReach).
  const unreachable: Array<{ port: string; target: string }> = [];
  const input = { tNs: 0, wallMs: 0, verdicts: [] as Verdict[], results, operator, unreachable };
  let lastT = hrNs();
  let activeUntil = 0;
  let periodMs = policy.sampling.idleMs;
  const idleMs = (): number => (tripwire ? policy.sampling.idleMs : Math.min(policy.sampling.idleMs, IDLE_MS_WITHOUT_TRIPWIRE));
  let ticks = 0;
  let ticksPerSec = 0;
  let rateFrom = { ticks: 0, at: lastT };
  let lastTickAt = lastT;
  let maxLagMs = 0;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let tripwire: Tripwire | null = null;
  let tripwireFiredAt = 0;

  // Link-ups in flight: a reachability check waits for them (an undo's link-up may be what
  // restores the path the next shut relies on).
  const pendingUps = new Set<Promise<unknown>>();

  function execute(cmd: ActionRequest): void {
    const actionOpts = { timeoutMs: policy.actions.timeoutMs, retries: policy.actions.retries };
    const issuedNs = input.tNs; // the tick of the verdict
    const esx = esxHosts.get(esxHostOf(cmd.port) ?? '');
    const p = esx ? esx.act(cmd, lastTrip.get(cmd.port)?.action?.esxi) : executeLinkAction(cmd, actionOpts);
    if (cmd.kind === 'link-up') {
      pendingUps.add(p);
      const drop = (): void => void pendingUps.delete(p);
      p.then(drop, drop);
    }
    p.then(
      (r) => {
        if (r.kind === 'link-down' && r.ok) observe(reaction, (hrNs() - issuedNs) / 1e6);
        results.push(r);
        wake();
      },
      (err: unknown) => {
        results.push({ kind: cmd.kind, port: cmd.port, ok: false, via: 'none', durationMs: 0, attempts: 0, error: (err as Error).message, verified: false });
        wake();
      },
    );
  }

  function runCore(t: number): void {
    input.tNs = t;
    input.wallMs = Date.now();
    const out = breakerStep(brk, input, ports, policy);
    brk = out.state;
    results.length = 0;
    operator.length = 0;
    unreachable.length = 0;
    // Act first, journal after: each journal line is fsync'd, and an escalation's event must not
    // delay its link-down.
    for (const c of out.commands) execute(c);
    for (const e of out.events) record(e);
    for (const port of out.verify) void verifyReach(port);
    scheduleRecoveryWake();
  }

  // --- reachability (policy.reachability): did an automatic link-down cut the management path? --
  // 'unknown' until the first check; 'down' when the target did not answer while nothing was
  // being done (then a failed check after an action proves nothing, and is skipped).
  let pinger: Pinger | null = null;
  let reach: { state: 'unknown' | 'up' | 'down' | 'unavailable'; target: string; at: string | null; rttMs: number | null; error: string | null } = {
    state: 'unknown',
    target: '',
    at: null,
    rttMs: null,
    error: null,
  };
  let baselineRunning = false;
  let baselineRetry: NodeJS.Timeout | null = null;

  function reachTarget(): string | null {
    const rc = policy.reachability;
    if (!rc) return null;
    if (reach.target !== rc.target) reach = { state: 'unknown', target: rc.target, at: null, rttMs: null, error: null };
    pinger ??= createPinger();
    return rc.target;
  }

  /** A check's answer moves the baseline; transitions are journaled once each. */
  function noteReach(target: string, ok: boolean, rttMs: number | undefined, error: string | undefined, during: string): void {
    if (stopped || reach.target !== target) return; // stopping (journal closed), or the policy changed meanwhile
    const was = reach.state;
    const next = error !== undefined ? 'unavailable' : ok ? 'up' : 'down';
    reach = { ...reach, state: next, at: new Date().toISOString(), rttMs: rttMs ?? null, error: error ?? null };
    if (next === was) return;
    const ts = reach.at!;
    if (next === 'down') {
      record({ ts, event: 'reachability-down', port: '', reason: `${target} does not answer (${during}): checks after automatic link-downs are skipped until it does`, policyHash: policy.hash, target });
    } else if (next === 'unavailable') {
      record({ ts, event: 'reachability-down', port: '', reason: `cannot check ${target}: ${error}; checks after automatic link-downs are skipped`, policyHash: policy.hash, target, error });
    } else if (was === 'down' || was === 'unavailable') {
      record({ ts, event: 'reachability-up', port: '', reason: `${target} answers again (${during}): link-downs are verified again`, policyHash: policy.hash, target });
    }
  }

  function baselineCheck(): void {
    const target = reachTarget();
    if (target === null || baselineRunning || stopped) return;
    // During a storm or an action the path may be congested or cut on purpose: not a baseline.
    const now = hrNs();
    if (now < activeUntil || breakerBusy(brk, now)) {
      // Try again once things are quiet rather than a whole period later (a reload's new target).
      if (!baselineRetry) baselineRetry = setTimeout(() => ((baselineRetry = null), baselineCheck()), REACH_RETRY_MS);
      return;
    }
    const rc = policy.reachability!;
    baselineRunning = true;
    pinger!
      .check(target, rc.timeoutMs, rc.tries)
      .then((o) => noteReach(target, o.reachable, o.rttMs, o.error, 'baseline check'))
      .finally(() => (baselineRunning = false));
  }

  async function verifyReach(port: string): Promise<void> {
    const target = reachTarget();
    if (target === null) return;
    if (reach.state === 'down' || reach.state === 'unavailable') {
      log.warn({ component: 'reachability', port, target, baseline: reach.state }, 'reachability check skipped: the target did not answer before the action either');
      return;
    }
    const rc = policy.reachability!;
    try {
      await Promise.allSettled([...pendingUps]);
      const o = await pinger!.check(target, rc.timeoutMs, rc.tries);
      if (stopped) return;
      if (o.error !== undefined) {
        noteReach(target, false, undefined, o.error, `after link-down of ${port}`);
        return;
      }
      if (o.reachable) {
        noteReach(target, true, o.rttMs, undefined, `after link-down of ${port}`);
        log.info({ component: 'reachability', port, target, rttMs: o.rttMs, tries: o.tries }, 'management path intact after link-down');
        return;
      }
      log.error({ component: 'reachability', port, target, tries: o.tries, timeoutMs: rc.timeoutMs }, `link-down of ${port} cut reachability of ${target}: undoing it`);
      unreachable.push({ port, target });
      wake();
    } catch (err) {
      log.error({ component: 'reachability', port, target, err: (err as Error).message }, 'reachability check failed');
    }
  }

  // Automatic recovery: the breaker says when the next probe is due (monotonic ns); a timer wakes
  // the sampler then, so a probe is not late by an idle period. Re-armed only when the due time moves.
  let recoveryTimer: NodeJS.Timeout | null = null;
  let recoveryDueNs = Infinity;
  function scheduleRecoveryWake(): void {
    const due = nextRecoveryNs(brk);
    if (due === recoveryDueNs) return;
    recoveryDueNs = due;
    if (recoveryTimer) clearTimeout(recoveryTimer);
    recoveryTimer = null;
    if (!Number.isFinite(due)) return;
    // +1 ms: a timer may fire a fraction of a ms before hrtime reaches the due time.
    const inMs = Math.min(2 ** 31 - 1, Math.max(0, Math.ceil((due - hrNs()) / 1e6) + 1));
    recoveryTimer = setTimeout(() => {
      recoveryTimer = null;
      recoveryDueNs = Infinity;
      wake();
    }, inMs);
  }

  function sample(): void {
    const t = hrNs();
    const dt = t - lastT;
    lastT = t;
    for (const c of cur.values()) c.ok = true;
    for (const s of sources) s.read(cur);
    let warm = false;
    for (let i = 0; i < infos.length; i++) {
      const p = infos[i]!;
      const r = computeRates(prev.get(p.name)!, cur.get(p.name)!, dt, p.name, p.bridge, rates[i]!);
      const th = ports.get(p.name)?.thresholds;
      if (th && r.valid) {
        const m = Number.isFinite(r.floodPps) ? r.floodPps : r.rxPps * (th.clearPps / th.floodPps);
        // Only flood traffic warms the sampler: a busy uplink's unicast must not keep it at 1 ms.
        if (m >= th.clearPps) warm = true;
      }
    }
    const swap = prev;
    prev = cur;
    cur = swap;
    tick.tNs = t;
    if (esxHosts.size > 0) checkFresh(t);
    tick.ports = allRates;
    tick.fdbMoves = fdb ? fdb.drain() : NO_MOVES;
    const d = detectStep(det, tick, judged, policy);
    det = d.state;
    for (let i = 0; i < esxList.length; i++) esxList[i]!.consume();
    input.verdicts = d.verdicts as Verdict[];
    if (d.verdicts.length > 0 || results.length > 0 || operator.length > 0 || unreachable.length > 0 || t < busyUntil || t >= recoveryDueNs || breakerBusy(brk, t)) runCore(t);
    if (warm || d.verdicts.length > 0) activeUntil = t + policy.sampling.activeHoldMs * 1e6;
    // A recovery probe is judged at the active rate: the storm it looks for must be seen in ms.
    else if (recoveryProbing(brk)) activeUntil = Math.max(activeUntil, t + policy.sampling.activeMs * 1e6);
    periodMs = t < activeUntil ? policy.sampling.activeMs : idleMs();
    ticks++;
  }

  // The breaker needs ticks while an action is in flight or settling, even when no verdict comes.
  let busyUntil = 0;

  // A wake-up is judged first by the tripwire's own namespace-wide flood counter (one syscall),
  // over activeMs: ordinary chatter (ARP, DHCP) costs two timer wake-ups and is re-armed at once,
  // and only a flood rate worth a look starts per-port sampling, whose cost grows with the ports.
  function onTripwire(): void {
    if (stopped || !tripwire) return;
    const now = hrNs();
    tripwireFiredAt = now;
    if (now < activeUntil) return; // already sampling fast
    const tw = tripwire;
    const c0 = tw.count();
    setTimeout(() => {
      if (stopped) return;
      const t1 = hrNs();
      const pps = ((tw.count() - c0) * 1e9) / Math.max(1, t1 - now);
      if (pps < warmPps()) {
        setTimeout(() => !stopped && t1 >= activeUntil && tw.arm(), TRIPWIRE_REARM_MS);
        return;
      }
      activeUntil = Math.max(activeUntil, t1 + TRIPWIRE_BURST_MS * 1e6);
      if (timer) clearTimeout(timer);
      loop(); // per-port samples from now on, activeMs apart; a real storm turns warm at once
    }, policy.sampling.activeMs);
  }

  /** The lowest falling edge of any watched port: below it, nothing is worth a fast look. */
  function warmPps(): number {
    let m = Infinity;
    for (const pp of ports.values()) m = Math.min(m, pp.thresholds.clearPps);
    return Number.isFinite(m) ? m : 0;
  }

  function loop(): void {
    if (stopped) return;
    const now = hrNs();
    const lag = (now - lastTickAt) / 1e6 - periodMs;
    if (lag > maxLagMs && ticks > 0) maxLagMs = lag;
    lastTickAt = now;
    try {
      sample();
      sd.watchdogTick(now / 1e6);
    } catch (err) {
      log.error({ component: 'sampler', err: (err as Error).message, stack: (err as Error).stack }, 'sampling tick failed');
    }
    if (tripwire && !tripwire.armed && lastT >= activeUntil && lastT - tripwireFiredAt >= TRIPWIRE_REARM_MS * 1e6) tripwire.arm();
    // Against a deadline: the period is from tick start to tick start, not work + period.
    const spentMs = (hrNs() - now) / 1e6;
    timer = setTimeout(loop, Math.max(0, periodMs - spentMs));
  }

  /** Run a tick now (an ESXi block arrived) without forcing the breaker to run. */
  function kick(): void {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(loop, 0);
  }

  function wake(): void {
    // An action result or an operator command: run the core now rather than waiting a tick.
    if (stopped) return;
    busyUntil = hrNs() + (policy.breaker.settleMs + 50) * 1e6;
    if (timer) clearTimeout(timer);
    timer = setTimeout(loop, 0);
  }

  // --- keep tripped ports down (someone may have brought one up by hand) -------------------------
  function reassert(): void {
    for (const p of portStates(brk)) {
      if (p.state !== 'tripped' && p.state !== 'held') continue;
      if (!isValidIfName(p.port)) continue; // ESXi ports: not re-asserted (see README)
      const up = isAdminUp(p.port);
      if (up !== true) continue;
      const what = p.state === 'held' ? 'held' : 'tripped';
      const until = p.state === 'held' ? 'until the hold ends' : 'until an operator restores it';
      executeLinkAction({ kind: 'link-down', port: p.port, reason: 'reassert' }, { timeoutMs: policy.actions.timeoutMs, retries: policy.actions.retries }).then((r) => {
        record({ ts: new Date().toISOString(), event: r.ok ? 'reassert' : 'action-failed', port: p.port, reason: r.ok ? `port was ${what} and found up; put down again ${until}` : `could not put ${what} port down again: ${r.error}`, policyHash: policy.hash, action: r });
      });
    }
  }

  // ESXi ports: a tripped or held port whose cut was undone on the host (a vNIC reconnected by
  // hand, also while the agent was down) is cut again, judged on each fresh inventory.
  const reasserting = new Set<string>();
  function reassertEsxi(hp: EsxiHostPolicy, inv: EsxInventory): void {
    const h = esxHosts.get(hp.name);
    if (!h || stopped) return;
    for (const p of portStates(brk)) {
      if ((p.state !== 'tripped' && p.state !== 'held') || esxHostOf(p.port) !== hp.name || reasserting.has(p.port)) continue;
      const rec = lastTrip.get(p.port)?.action?.esxi;
      if (!tripUndone(inv, hp, p.port, rec)) continue;
      const what = p.state === 'held' ? 'held' : 'tripped';
      reasserting.add(p.port);
      void h
        .act({ kind: 'link-down', port: p.port, reason: 'reassert' }, rec)
        .then((r) => {
          if (stopped) return;
          record({ ts: new Date().toISOString(), event: r.ok ? 'reassert' : 'action-failed', port: p.port, reason: r.ok ? `port was ${what} and found undone on ${hp.name}; cut again` : `could not cut ${what} port again on ${hp.name}: ${r.error}`, policyHash: policy.hash, action: r });
        })
        .finally(() => reasserting.delete(p.port));
    }
  }

  rescan();
  reassert();
  const reachTimer = setInterval(baselineCheck, REACH_BASELINE_MS);
  const slow = setInterval(() => {
    try {
      const now = hrNs();
      ticksPerSec = ((ticks - rateFrom.ticks) * 1e9) / Math.max(1, now - rateFrom.at);
      rateFrom = { ticks, at: now };
      if (holdExpiryDue(brk, Date.now())) wake();
      rescan();
      reassert();
    } catch (err) {
      log.error({ component: 'ports', err: (err as Error).message }, 'rescan failed');
    }
  }, RESCAN_MS);

  // --- reload ------------------------------------------------------------------------------
  // One at a time: a SIGHUP and a `reload` arriving together load the file twice, in order.
  let reloadChain: Promise<unknown> = Promise.resolve();
  function reload(trigger: string, by?: Requester): Promise<ReloadOutcome> {
    const next = reloadChain.then(() => doReload(trigger, by));
    reloadChain = next.catch(() => undefined);
    return next;
  }

  async function doReload(trigger: string, by: Requester | undefined): Promise<ReloadOutcome> {
    if (stopped) throw new ControlError('E_STOPPING', 'agent is stopping');
    const loadedNext = await loadPolicyFile(opts.policyPath);
    if (stopped) throw new ControlError('E_STOPPING', 'agent is stopping');
    const oldHash = policy.hash;
    const ts = new Date().toISOString();
    const who = by ? { by } : {};
    if ('errors' in loadedNext) {
      // Rejected whole: a policy that is half right is not applied half.
      const errors = loadedNext.errors.map(formatPolicyError);
      lastReloadError = { at: ts, trigger, errors };
      record({ ts, event: 'reload-failed', port: '', reason: `policy reload (${trigger}) rejected with ${errors.length} error(s); ${oldHash} stays in force`, policyHash: oldHash, policyFile: policy.file, errors, trigger, ...who });
      return { ok: false, policyHash: oldHash, errors };
    }
    // ESXi hosts keep the connection, ports and settings they started with: reconnecting every host
    // on a reload would blind the agent for seconds. Say so instead of pretending.
    const esxiChanged = JSON.stringify(loadedNext.policy.esxi ?? null) !== JSON.stringify(policy.esxi ?? null);
    if (esxiChanged) log.warn({ component: 'esxi' }, 'policy reload changed the esxi section: it takes effect at the next restart; hosts keep their current settings');
    policy = withFlags(loadedNext.policy);
    policyLoadedAt = ts;
    lastReloadError = null;
    reloads++;
    if (policy.fdb.enabled && !fdb) fdb = createFdbSource({ now: hrNs, warn: warn('fdb') });
    else if (!policy.fdb.enabled && fdb) {
      fdb.close();
      fdb = null;
    }
    record({ ts, event: 'reload', port: '', reason: `policy reloaded (${trigger}): ${oldHash} -> ${policy.hash}${esxiChanged ? '; esxi section changes take effect at restart' : ''}`, policyHash: policy.hash, oldHash, newHash: policy.hash, policyFile: policy.file, dryRun: policy.dryRun, trigger, ...who });
    try {
      rescan(); // ports re-resolved against the new rules now, not a second later
      baselineCheck(); // a new target is checked now, not in 10 s
    } catch (err) {
      log.error({ component: 'ports', err: (err as Error).message }, 'rescan after reload failed');
    }
    return { ok: true, oldHash, policyHash: policy.hash, changed: oldHash !== policy.hash };
  }

  // --- control socket ----------------------------------------------------------------------
  const str = (v: unknown, name: string, max = 1024): string => {
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw new ControlError('E_BAD_ARGS', `${name} must be a string`);
    if (v.length > max) throw new ControlError('E_BAD_ARGS', `${name} is longer than ${max} characters`);
    return v;
  };

  function operatorCommand(cmd: 'trip' | 'restore' | 'hold' | 'release', args: Record<string, unknown>, ctx: RequestContext) {
    const port = str(args.port, 'port', 64);
    const reason = str(args.reason, 'reason') || 'operator request';
    const who = requester(ctx.peer, args);
    const state = portStates(brk).find((p) => p.port === port)?.state;
    // A held port may be released even when a reload stopped watching it; a tripped ESXi vNIC may
    // be restored though the host no longer lists it among the watched ports (its VM has no vSwitch
    // port left while it is disconnected).
    const esxKnown = state !== undefined && esxHosts.has(esxHostOf(port) ?? '') && (cmd === 'restore' || cmd === 'release');
    if (!ports.has(port) && !(cmd === 'release' && state === 'held') && !esxKnown) {
      throw new ControlError('E_UNKNOWN_PORT', `port ${JSON.stringify(port)} is not watched by the policy`);
    }
    const o: OperatorCommand = { kind: cmd, port, reason, by: requesterText(who), extra: { by: who } };
    let forMs: number | null = null;
    if (cmd === 'hold') {
      if (args.forMs !== undefined && args.forMs !== null) {
        if (typeof args.forMs !== 'number' || !Number.isFinite(args.forMs) || args.forMs <= 0) throw new ControlError('E_BAD_ARGS', 'forMs must be a positive number');
        forMs = args.forMs;
      } else if (args.for !== undefined && args.for !== null) {
        forMs = parseDuration(str(args.for, 'for', 32));
        if (forMs === null) throw new ControlError('E_BAD_ARGS', 'for must be a duration like 30s, 5m, 2h');
      }
      if (forMs !== null) {
        o.untilMs = Date.now() + forMs;
        // Expire on time rather than at the next once-a-second check.
        setTimeout(wake, forMs + 5).unref();
      }
    }
    operator.push(o);
    wake();
    return { accepted: true, port, cmd, by: who, ...(o.untilMs !== undefined ? { until: new Date(o.untilMs).toISOString() } : {}) };
  }

  async function journalEvents(args: Record<string, unknown>) {
    const port = str(args.port, 'port', 64);
    let sinceMs: number | null = null;
    if (args.sinceMs !== undefined && args.sinceMs !== null) {
      if (typeof args.sinceMs !== 'number' || !Number.isFinite(args.sinceMs) || args.sinceMs < 0) throw new ControlError('E_BAD_ARGS', 'sinceMs must be a non-negative number');
      sinceMs = args.sinceMs;
    }
    let limit = JOURNAL_TAIL_LINES;
    if (args.limit !== undefined && args.limit !== null) {
      if (typeof args.limit !== 'number' || !Number.isInteger(args.limit) || args.limit < 1) throw new ControlError('E_BAD_ARGS', 'limit must be a positive integer');
      limit = Math.min(args.limit, JOURNAL_TAIL_LINES);
    }
    // From the file, not the in-memory tail: the journal is the record (bounded read from the end).
    const tail = await readJournalTail(journal.path, JOURNAL_TAIL_LINES);
    const from = sinceMs === null ? '' : new Date(Date.now() - sinceMs).toISOString();
    const out = tail.events.filter((e) => (!port || e.port === port) && (!from || (typeof e.ts === 'string' && e.ts >= from)));
    return out.slice(-limit);
  }

  const server: Server = await startControlServer(
    opts.socketPath,
    async (cmd, args, ctx) => {
      switch (cmd) {
        case 'status':
          return status();
        case 'why': {
          const port = str(args.port, 'port', 64);
          if (port) return lastTrip.get(port) ?? null;
          let latest: JournalEvent | null = null;
          for (const e of lastTrip.values()) if (!latest || e.ts > latest.ts) latest = e;
          return latest;
        }
        case 'events':
          return journalEvents(args);
        case 'trip':
        case 'restore':
        case 'hold':
        case 'release':
          return operatorCommand(cmd, args, ctx);
        case 'reload':
          return reload('control', requester(ctx.peer, args));
        default:
          throw new ControlError('E_UNKNOWN_CMD', `unknown command ${JSON.stringify(cmd).slice(0, 80)}`);
      }
    },
    { onError: warn('control'), ...(socketGid !== undefined ? { gid: socketGid } : {}) },
  );

  function status() {
    const pstates = portStates(brk);
    const states = new Map(pstates.map((p) => [p.port, p.state] as const));
    const byPort = new Map(pstates.map((p) => [p.port, p] as const));
    // Each port's latest event, in one pass (the events are oldest first).
    const lastEventOf = new Map(recentEvents.map((e) => [e.port, e.event] as const));
    return {
      policy: { file: policy.file, hash: policy.hash, dryRun: policy.dryRun, loadedAt: policyLoadedAt, reloads, lastError: lastReloadError },
      health: {
        ticks,
        ticksPerSec: Math.round(ticksPerSec * 10) / 10,
        periodMs,
        lastTickAgeMs: (hrNs() - lastTickAt) / 1e6,
        maxLagMs,
        sources: sources.map((s) => s.id).concat(fdb ? ['fdb'] : [], tripwire ? ['tripwire'] : []),
        broadcastCounting: !('error' in addon),
        // 'reachability-down': the target did not answer while nothing was done, so checks after
        // automatic link-downs are skipped (they would undo good actions).
        reachability: policy.reachability
          ? {
              target: policy.reachability.target,
              state: reach.target !== policy.reachability.target ? 'unknown' : reach.state === 'up' ? 'ok' : reach.state === 'unknown' ? 'unknown' : 'reachability-down',
              ...(reach.state === 'unavailable' ? { error: reach.error } : {}),
              lastCheckAt: reach.at,
              lastRttMs: reach.rttMs === null ? null : Math.round(reach.rttMs * 1000) / 1000,
            }
          : 'off',
      },
      ...(esxHosts.size > 0 ? { esxi: [...esxHosts.values()].map((h) => h.status()) } : {}),
      ports: [...infos, ...esxiInfos()].map((p) => {
        const pp = ports.get(p.name);
        const lastEvent = lastEventOf.get(p.name);
        const r = lastRates.get(p.name) ?? esxShown(p.name);
        return {
          port: p.name,
          bridge: p.bridge,
          role: pp?.role,
          protected: pp?.protected,
          state: states.get(p.name) ?? 'forwarding',
          ...(byPort.get(p.name)?.untilMs !== undefined ? { heldUntil: new Date(byPort.get(p.name)!.untilMs!).toISOString() } : {}),
          ...(byPort.get(p.name)?.recoveryTries !== undefined ? { recoveryTries: byPort.get(p.name)!.recoveryTries } : {}),
          rxPps: r && r.valid ? Math.round(r.rxPps) : null,
          floodPps: r && r.valid && Number.isFinite(r.floodPps) ? Math.round(r.floodPps) : null,
          txPps: r && r.valid ? Math.round(r.txPps) : null,
          lastEvent: lastEvent ?? null,
        };
      }),
    };
  }

  /** An ESXi port's last valid rates, in the shape status reads (valid: they were, when measured). */
  function esxShown(port: string): Pick<PortRates, 'rxPps' | 'txPps' | 'floodPps' | 'valid'> | undefined {
    const h = esxHosts.get(esxHostOf(port) ?? '');
    const r = h?.live() ? h.shownRates().get(port) : undefined; // a stale host shows no rates, not old ones
    return r ? { ...r, valid: true } : undefined;
  }

  /** ESXi ports in the shape of local ones, for status (bridge = `<host>/<vSwitch>`). */
  function esxiInfos(): PortInfo[] {
    const out: PortInfo[] = [];
    for (const h of esxHosts.values()) for (const r of h.rates()) out.push({ name: r.port, ifindex: 0, bridge: r.bridge });
    for (const h of esxHosts.values()) for (const n of h.ports().keys()) if (!out.some((o) => o.name === n)) out.push({ name: n, ifindex: 0, bridge: null });
    return out;
  }

  if (!('error' in addon)) {
    const prio = policy.sampling.realtimePriority;
    if (prio > 0) {
      try {
        addon.setRealtime(prio);
        log.info({ component: 'daemon', realtimePriority: prio }, 'sampling thread runs SCHED_FIFO');
      } catch (err) {
        log.warn({ component: 'daemon', err: (err as Error).message }, 'cannot raise scheduling priority; a storm that pegs a core may delay the agent');
      }
    }
    try {
      tripwire = createTripwire(addon, onTripwire, prio);
    } catch (err) {
      log.warn({ component: 'tripwire', err: (err as Error).message, idleMs: idleMs() }, 'tripwire unavailable; idle sampling capped at 10 ms');
    }
  }
  loop();
  baselineCheck(); // at start: a target that never answers must not make the first action look bad
  let metrics: MetricsServer | null = null;
  if (metricsAt) {
    try {
      metrics = await startMetricsServer({
        ...metricsAt,
        onError: (err: Error) => log.warn({ component: 'metrics', err: err.message }, 'metrics request failed'),
        snapshot: () => snapshotFromStatus(status() as never, { build: { version: PKG_VERSION, node: process.version }, startTimeSeconds, reaction, tripsTotal, ...(hooks ? { notifyDroppedTotal: hooks.stats.dropped } : {}) }),
      });
    } catch (err) {
      stopped = true;
      hooks?.close();
      throw new StartupError(`${metricsFrom}: ${(err as Error).message}`, 1);
    }
  }
  log.info({ component: 'daemon', policy: policy.file, policyHash: policy.hash, socket: opts.socketPath, dryRun: policy.dryRun, ports: infos.length, metrics: metricsAt ?? null, notify: notifyTargets.map((w) => w.target.kind) }, 'stormbreaker running');
  sd.ready(`watching ${infos.length} ports, policy ${policy.hash}${policy.dryRun ? ' (dry run)' : ''}`);

  return {
    reload,
    async stop() {
      if (stopped) return;
      stopped = true;
      sd.stopping('agent stopping');
      if (timer) clearTimeout(timer);
      if (recoveryTimer) clearTimeout(recoveryTimer);
      clearInterval(slow);
      clearInterval(reachTimer);
      if (baselineRetry) clearTimeout(baselineRetry);
      pinger?.close();
      // Journal first: closing hundreds of AF_PACKET sockets takes ~12 ms each (the kernel
      // waits in packet_release), and a supervisor may kill us before that ends.
      record({ ts: new Date().toISOString(), event: 'stop', port: '', reason: 'agent stopped', policyHash: policy.hash });
      journal.close();
      server.close(); // stop accepting; open clients end with the process
      hooks?.close();
      await metrics?.close();
      tripwire?.close();
      fdb?.close();
      fdb = null;
      for (const s of sources) s.close();
      await Promise.all([...esxHosts.values()].map((h) => h.stop()));
    },
  };
}

/** The policy's `notify` as notifier options: one per target written (a URL, a hook, or both). */
function notifyFromPolicy(n: Policy['notify']): WebhookOptions[] {
  if (!n) return [];
  const common = { timeoutMs: n.timeoutMs, tries: n.tries };
  const out: WebhookOptions[] = [];
  if (n.webhook) out.push({ ...common, target: { kind: 'http', url: n.webhook } });
  if (n.hookArgv) out.push({ ...common, target: { kind: 'exec', argv: n.hookArgv } });
  return out;
}

/** One notifier over several (each keeps its own queue, so a slow webhook never delays the hook). */
function combineNotifiers(ns: EventNotifier[]): EventNotifier | null {
  if (ns.length <= 1) return ns[0] ?? null;
  const sum = (k: keyof EventNotifier['stats']): number => ns.reduce((a, n) => a + n.stats[k], 0);
  return {
    notify: (e) => {
      for (const n of ns) n.notify(e);
    },
    get stats() {
      return { sent: sum('sent'), failed: sum('failed'), dropped: sum('dropped'), tries: sum('tries'), pending: sum('pending') };
    },
    idle: async () => {
      await Promise.all(ns.map((n) => n.idle()));
    },
    close: () => {
      for (const n of ns) n.close();
    },
  };
}

function blankRates(p: PortInfo): PortRates {
  return { port: p.name, bridge: p.bridge, dtMs: 0, rxPps: 0, txPps: 0, rxBps: 0, floodPps: NaN, bcastPps: NaN, valid: false };
}
