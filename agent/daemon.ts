import type { Policy } from './types.js';
import { loadPolicyFile } from './policy/load.js';
import { formatPolicyError } from './policy/errors.js';
import { breakerBusy, holdExpiryDue } from './breaker/state.js';
import { startControlServer } from './control/server.js';
import { createHistogram, observe } from './notify/histogram.js';
import type { MetricsServer } from './notify/metrics.js';
import { openRecording, type Recording } from './daemon/recorder.js';
import { policyInForce } from './daemon/reload.js';
import { socketGroupId, StartupError, type Daemon, type DaemonOptions } from './daemon/options.js';
import { startLocalSampling } from './daemon/local.js';
import { carrierJoinChecks, createJoinWatch, createUnbridgedMoves, createWatchedPorts, enslavedSinceListed, followLinkChanges, lowestClearPps, rescanLocal } from './daemon/ports.js';
import type { startEsxiHosts } from './daemon/esxi-hosts.js';
import { bridgeIfindexOf, localKind, portKinds } from './daemon/port-kinds.js';
import { breakerFromJournal } from './daemon/restore.js';
import { createTick } from './daemon/tick.js';
import { createScheduler } from './daemon/scheduler.js';
import { nodeTimers } from './daemon/clock.js';
import { createExecutor } from './daemon/executor.js';
import { createReachability } from './daemon/reachability.js';
import { buildStatus } from './daemon/status.js';
import { controlHandler, outcomeWithinMs } from './daemon/commands.js';
import { warmUp } from './daemon/warmup.js';
import { createIdleGc, minorGc } from './daemon/idle-gc.js';
import { connectionCap, keptFilesCap, MAX_CONNECTIONS, readNofile } from './host/fd-limit.js';
import { createKeptPortFiles } from './host/port-files.js';
import { createCaptures } from './daemon/captures.js';

// The wiring root: each part lives in daemon/ with the narrow interface it needs; here they are
// made, connected, started and stopped. Hot path: daemon/tick.ts, run when daemon/scheduler.ts says.

export { StartupError, type Daemon, type DaemonOptions, type ReloadOutcome } from './daemon/options.js';

const hrNs = (): number => Number(process.hrtime.bigint());
/** Interfaces are listed again, and tripped ports checked, this often. */
const RESCAN_MS = 1000;

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const base = await openRecord(opts);
  // The ESXi code (SSH sessions, the fuse, the esxcli parsers) loads only for a policy with ESXi
  // hosts, which are read once, at start: compiled ahead (daemon/keep-code.ts), it cost every
  // agent ~40 ms of its start. Loaded here, before anything runs, when the policy names a host.
  const esxi = (base.first.esxi?.hosts.length ?? 0) > 0 ? await import('./daemon/esxi-hosts.js') : null;
  return serve(base, wirePipeline(base, esxi?.startEsxiHosts ?? null));
}

/** What everything else records into, and the policy as first loaded. */
interface Base extends Recording {
  opts: DaemonOptions;
  first: Policy;
  /** The control socket's group (--socket-group), resolved before anything runs. */
  gid: number | undefined;
  life: { stopped: boolean };
}

async function openRecord(opts: DaemonOptions): Promise<Base> {
  const loaded = await loadPolicyFile(opts.policyPath);
  if ('errors' in loaded) throw new StartupError(loaded.errors.map(formatPolicyError).join('\n'), 1);
  const gid = socketGroupId(opts.socketGroup); // an unknown group stops the start here
  // Notifications (and metrics): the command line wins over the policy; both read once, at start.
  return { ...(await openRecording(opts.stateDir, opts.log, opts.webhook, loaded.policy)), opts, first: loaded.policy, gid, life: { stopped: false } };
}

/** sources -> tick -> executor, driven by the scheduler; reachability checks what was done. */
function wirePipeline(b: Base, startEsxi: typeof startEsxiHosts | null) {
  const { rec, life, opts } = b;
  const log = opts.log;
  const isStopped = (): boolean => life.stopped;
  const pol = policyInForce(b.first, { path: opts.policyPath, dryRun: opts.dryRun, log, record: rec.record, applied, stopped: isStopped });
  const policy = pol.current;
  rec.record({ ts: new Date().toISOString(), event: 'start', port: '', reason: 'agent started', policyHash: policy().hash, policyFile: policy().file, dryRun: policy().dryRun });

  // Sources: the registry every tick reads.
  const sampling = startLocalSampling(log, hrNs(), hrNs, (byThread) => !life.stopped && scheduler.onMoves(byThread));
  // Each listing's per-port mode and carrier files, kept open across listings (host/port-files.ts).
  const nofile = readNofile();
  const portFiles = createKeptPortFiles(undefined, undefined, () => keptFilesCap(nofile, watched.all().size));
  const carrierUps = (name: string, ifindex: number): number | null => portFiles.readInt(name, ifindex, 'carrier_up_count');
  const joins = { watch: createJoinWatch(carrierUps), now: hrNs }; // a port that joined a bridge is cut first (breaker/state.ts)
  const carrier = carrierJoinChecks(sampling.local, () => watched.merge(), joins.watch, log);
  // A port enslaved since the last listing is listed again inside the tick, before the detector,
  // once it carries flood traffic or MACs move onto it (see enslavedSinceListed).
  const movesOnUnbridged = createUnbridgedMoves();
  const watched = createWatchedPorts(hrNs, (s, f) => {
    const local = sampling.local;
    // Carrier counts of hot bridged ports, before the detector: see JoinWatch.carrierOfHot.
    if (s === local) carrier.hot(f.tNs);
    if (!(s === local ? local.unbridgedWarm() : movesOnUnbridged(f.fdbMoves, local.infos())) || !enslavedSinceListed(local.infos())) return;
    try {
      rescan();
    } catch (err) {
      log.error({ component: 'ports', err: (err as Error).message }, 'rescan for an enslaved port failed');
    }
  });
  watched.add(sampling.local);
  sampling.followPolicy(policy(), watched);
  const esx = startEsxi === null ? [] : startEsxi(policy(), {
    log,
    portsChanged: () => watched.merge(),
    ratesArrived: () => scheduler.runNow(),
    inventoryRead: (k) => !life.stopped && executor.reassert([k]),
    cutReported: (r) => (tick.inbox.results.push(r), wake()),
    record: rec.record,
    onRecord: rec.onRecord,
    replayed: b.replay.events,
  });
  for (const h of esx) watched.add(h.host);
  const kinds = portKinds([...esx.map((h) => h.kind), localKind(policy, (port) => bridgeIfindexOf(sampling.local.infos(), port))]);

  // A carrier-up the late link monitor has not brought to the listing yet (see JoinWatch).
  const atLoopVerdict = carrier.atVerdict;
  const tick = createTick({
    watched,
    policy,
    wallMs: Date.now,
    breaker: breakerFromJournal(b.replay.events),
    now: hrNs,
    atLoopVerdict,
    out: { execute: (c, t) => executor.execute(c, t), record: rec.record, intent: rec.intent, verify: (p) => reach.verify(p), recoveryDue: (t) => scheduler.wakeAt(t) },
  });
  /** An action result or an operator command: run the breaker now rather than a tick later. */
  const wake = (): void => {
    if (life.stopped) return;
    tick.busy(hrNs());
    scheduler.runNow();
  };
  const scheduler = createScheduler({
    clock: { now: hrNs },
    timers: nodeTimers,
    sampling: () => policy().sampling,
    tick: (t) => {
      const o = tick.run(t);
      b.sd.watchdogTick(t / 1e6);
      return o;
    },
    onError: (err) => log.error({ component: 'sampler', err: err.message, stack: err.stack }, 'sampling tick failed'),
    onRecoveryDue: wake,
    warmPps: () => lowestClearPps(watched.all()),
    // Said when ticks resume: how long the agent did not protect.
    onStall: (gapMs, periodMs) => rec.record({ ts: new Date().toISOString(), event: 'stall', port: '', reason: `the agent did not run for ${Math.round(gapMs)} ms (period ${periodMs} ms): stopped, paused or starved; sampling resumed`, gapMs: Math.round(gapMs), periodMs }),
  });
  const executor = createExecutor({ kinds, clock: { now: hrNs }, results: tick.inbox.results, wake, previous: (p) => rec.lastTrip.get(p)?.action?.esxi, breaker: tick.breaker, record: rec.record, policy, stopped: isStopped });
  const reaction = createHistogram();
  executor.onOutcome((r, ms) => r.kind === 'link-down' && r.ok && observe(reaction, ms));
  const reach = createReachability({
    policy,
    record: rec.record,
    log,
    quiet: () => !scheduler.active(hrNs()) && !breakerBusy(tick.breaker(), hrNs()),
    upsSettled: executor.upsSettled,
    undo: (port, target) => (tick.inbox.unreachable.push({ port, target }), wake()),
    stopped: isStopped,
  });

  const rescan = (): void => rescanLocal(sampling.local, policy(), watched, log, sampling.portsListed, joins, portFiles);
  function applied(p: Policy): void {
    sampling.followPolicy(p, watched);
    try {
      rescan(); // ports re-resolved against the new rules now, not a second later
      reach.baseline(); // a new target is checked now, not in 10 s
    } catch (err) {
      log.error({ component: 'ports', err: (err as Error).message }, 'rescan after reload failed');
    }
  }
  return { pol, policy, sampling, watched, esx, kinds, tick, wake, scheduler, executor, reaction, reach, rescan, atLoopVerdict, portFiles };
}

/** Housekeeping, the control socket, the tripwire, metrics: the agent as others see it. */
async function serve(b: Base, p: ReturnType<typeof wirePipeline>): Promise<Daemon> {
  const { opts, rec, life, notifiers } = b;
  const { policy, scheduler, tick, wake, executor } = p;
  const log = opts.log;
  const local = p.kinds.all.filter((k) => k.id === 'local');
  p.rescan();
  executor.reassert(local);
  const links = followLinkChanges(p.rescan, log, () => life.stopped);
  await warmUp(policy(), p.watched.all().values().next().value, log); // the first storm must not run cold code (issue 11)
  // The carrier check a loop verdict runs, once per local bridge: its first call cost 124-298 us
  // (sysfs reads by new paths). A carrier that rose since the listing is a real join, stamped as such.
  for (const bridge of new Set(p.sampling.local.infos().map((i) => i.bridge))) if (bridge !== null) p.atLoopVerdict(bridge, hrNs());
  const gc = minorGc();
  if (gc === null) log.warn({ component: 'daemon' }, 'no minor GC from V8: a storm may meet a scavenge the idle agent left');
  const idleGc = createIdleGc(gc); // a storm starts with an empty young generation (idle-gc.ts)
  const housekeeping = setInterval(() => {
    try {
      scheduler.measureRate();
      if (holdExpiryDue(tick.breaker(), Date.now())) wake();
      p.rescan();
      executor.reassert(local); // someone may have brought a tripped port up by hand
      idleGc.tick(Date.now(), scheduler.active(hrNs()));
    } catch (err) {
      log.error({ component: 'ports', err: (err as Error).message }, 'rescan failed');
    }
  }, RESCAN_MS);

  const status = () =>
    buildStatus({ policy: p.pol, scheduler: scheduler.stats, now: hrNs, sourceIds: p.sampling.ids, broadcastCounting: p.sampling.broadcastCounting, reachability: p.reach, local: p.sampling.local, esxHosts: p.esx.map((h) => h.host), ports: p.watched.all, breaker: tick.breaker, recent: rec.recent, journal: rec.journalHealth });
  const gid = b.gid;
  // The control socket's cap from the real descriptor limit, so that connections never take the
  // descriptors the actions need (host/fd-limit.ts); asked at every accept, as ports come and go.
  const nofile = readNofile();
  const controlCap = (): number => connectionCap(nofile, p.watched.all().size);
  if (controlCap() < MAX_CONNECTIONS) log.warn({ component: 'control', nofile, ports: p.watched.all().size, maxConnections: controlCap() }, 'file descriptor limit low: fewer control connections allowed');
  const server = await startControlServer(
    opts.socketPath,
    controlHandler({ status, ports: p.watched.all, breaker: tick.breaker, kinds: p.kinds, lastTrip: rec.lastTrip, journalPath: rec.journalPath, operator: tick.inbox.operator, wake, reload: p.pol.reload, onRecord: rec.onRecord, outcomeWithinMs: () => outcomeWithinMs(policy()) }),
    { onError: (o: object, m: string) => log.warn({ component: 'control', ...o }, m), maxConnections: controlCap, ...(gid !== undefined ? { gid } : {}) },
  );
  const tripwire = p.sampling.startTripwire(() => scheduler.onWaker(), policy().sampling.realtimePriority);
  scheduler.useWaker(tripwire);
  // Evidence after each automatic trip, once the port is down: the tripwire's last frames as a pcapng.
  const captures = createCaptures({ stateDir: opts.stateDir, frames: () => tripwire?.frames() ?? null, hold: () => tripwire?.hold(), isLocal: (port) => p.kinds.of(port)?.id === 'local', record: rec.record, log, stopped: () => life.stopped, busy: () => breakerBusy(tick.breaker(), hrNs()) });
  const unsubscribeCaptures = rec.onRecord(captures.onRecord);
  scheduler.start();
  p.reach.baseline(); // at start: a target that never answers must not make the first action look bad
  const metricsAt = opts.metrics ?? b.first.metrics;
  let metrics: MetricsServer | null = null;
  if (metricsAt) {
    try {
      // Only with metrics configured: the HTTP server's code is not loaded otherwise.
      const { startDaemonMetrics } = await import('./daemon/metrics.js');
      metrics = await startDaemonMetrics({ at: metricsAt, log, status, reaction: p.reaction, tripsTotal: rec.tripsTotal, hooks: notifiers.hooks });
    } catch (err) {
      life.stopped = true;
      scheduler.stop();
      notifiers.hooks?.close();
      throw new StartupError(`${opts.metrics ? '--metrics' : 'policy metrics.listen'}: ${(err as Error).message}`, 1);
    }
  }
  const n = p.sampling.local.infos().length;
  log.info({ component: 'daemon', policy: policy().file, policyHash: policy().hash, socket: opts.socketPath, dryRun: policy().dryRun, ports: n, metrics: metricsAt ?? null, notify: notifiers.targets.map((w) => w.target.kind) }, 'stormbreaker running');
  b.sd.ready(`watching ${n} ports, policy ${policy().hash}${policy().dryRun ? ' (dry run)' : ''}`);

  return {
    reload: p.pol.reload,
    async stop() {
      if (life.stopped) return;
      life.stopped = true;
      b.sd.stopping('agent stopping');
      scheduler.stop();
      clearInterval(housekeeping);
      unsubscribeCaptures();
      links.close();
      p.reach.close();
      // Journal first: closing hundreds of AF_PACKET sockets takes ~12 ms each (the kernel
      // waits in packet_release), and a supervisor may kill us before that ends.
      rec.record({ ts: new Date().toISOString(), event: 'stop', port: '', reason: 'agent stopped', policyHash: policy().hash });
      rec.close();
      server.close(); // stop accepting; open clients end with the process
      notifiers.hooks?.close();
      await metrics?.close();
      p.sampling.close();
      p.portFiles.close();
      await Promise.all(p.watched.sources().map((s) => s.close()));
    },
  };
}
