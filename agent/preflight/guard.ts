// guard-up: bring one port up only after a probe shows it closes no loop, then watch it.
//
// "Up but safe" during the probe. A port must be up (with carrier) to send and receive probes,
// and a bridge port that is up forwards at once (STP off). So BEFORE the link goes up, the nft
// table isolates it (nft.ts): ingress policy drop (nothing it receives reaches the bridge; the
// tap still sees every frame, it runs before the ingress hook) and egress policy drop except the
// probe ethertype (nothing the bridge floods leaves through it, only our probe frames). Every
// other interface drops probe frames at ingress. The hooks attach to a down device, so there is
// no window between "up" and "guarded". The bridge's own state is not touched: no config to
// restore if we die. SIGINT/SIGTERM/SIGHUP mid-probe take the port down, then delete the table
// (interrupt.ts); SIGKILL leaves a port that is isolated (table still there, and the next run
// refuses to replace it), never one that forwards unchecked.
//
// Ending: on a loop finding the port goes down FIRST and the table is removed after, so it never
// forwards; on a clean probe the table is removed (the port starts forwarding) and its counters
// are watched for watchMs with the storm detector's thresholds; a hot port is shut at once
// through sysfs (~0.2 ms, no spawn) and the run reports it.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { setAdminUpSysfs } from '../actions/link.js';
import { runArgv } from '../host/exec.js';
import { isAdminUp } from '../host/interfaces.js';
import { assertIfName } from '../host/names.js';
import { resolvePort } from '../policy/match.js';
import { loadPacketAddon, type PacketAddon } from '../sources/packet.js';
import type { Policy, Thresholds } from '../types.js';
import { analyzeProbe } from './analyze.js';
import type { CheckReport, Finding } from './findings.js';
import { onInterrupt } from './interrupt.js';
import { installProbeTable, readTableCounters, removeProbeTable, removeProbeTableSync, runNft, type NftRunner } from './nft.js';
import {
  DEFAULT_COLLECT,
  loadProbeAddon,
  openTap,
  PreflightError,
  readHostPorts,
  runProbe,
  sendAndCollect,
  type CollectOptions,
  type HostPort,
  type ProbeAddon,
} from './probe.js';
import { initialWatchState, watchStep, type WatchPoint } from './watch.js';

export type GuardOutcome = 'up' | 'already-up' | 'refused' | 'no-carrier' | 'shut';

export interface GuardOptions {
  policy: Policy;
  port: string;
  /** How long to watch the port's counters after it starts forwarding (0: no watch). */
  watchMs: number;
  /** Counter sample period during the watch. */
  sampleMs?: number;
  /** How long to wait for carrier after `ip link set up` (autonegotiation on real NICs: 1-3 s). */
  carrierTimeoutMs?: number;
  collect?: Partial<CollectOptions>;
  addon?: ProbeAddon;
  nft?: NftRunner;
  sysRoot?: string;
}

export interface GuardResult {
  port: string;
  outcome: GuardOutcome;
  report: CheckReport;
}

export class GuardUsageError extends Error {
  readonly code = 'E_GUARD_USAGE';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CMD_TIMEOUT_MS = 3000;
/** Probe rounds before a port counts as closing no loop, and the pause between rounds. */
const PROBE_ROUNDS = 3;
const PROBE_ROUND_GAP_MS = 100;
export { DEFAULT_WATCH_MS } from './watch.js';
const DEFAULT_SAMPLE_MS = 2;

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

async function waitCarrier(port: string, timeoutMs: number, root: string): Promise<boolean> {
  const t0 = performance.now();
  for (;;) {
    if (readTrim(`${root}/${port}/carrier`) === '1') return true;
    if (performance.now() - t0 >= timeoutMs) return false;
    await sleep(10);
  }
}

/** Down, verified; sysfs first (fast), `ip link set down` if that did not take. */
async function shutPort(port: string, root: string): Promise<void> {
  try {
    setAdminUpSysfs(port, false, root);
  } catch {
    // fall through to argv
  }
  if (isAdminUp(port, root) !== false) await runArgv(['ip', 'link', 'set', 'dev', port, 'down'], CMD_TIMEOUT_MS);
  if (isAdminUp(port, root) !== false) throw new PreflightError('E_GUARD', `${port} could not be brought down again`);
}

export async function guardUp(opts: GuardOptions): Promise<GuardResult> {
  const port = opts.port;
  assertIfName(port);
  const root = opts.sysRoot ?? '/sys/class/net';
  const nft = opts.nft ?? runNft;
  const pp = resolvePort(opts.policy, port);
  if (!pp) throw new GuardUsageError(`${port} matches no rule of ${opts.policy.file}: guard-up only brings up ports the policy names`);
  const ports = readHostPorts(opts.policy, root);
  const target = ports.find((p) => p.name === port);
  if (!target) throw new GuardUsageError(`no interface ${port} in this namespace`);

  if (target.adminUp) {
    // Nothing to switch on; say whether what is already on is safe (the ordinary probe).
    const run = await runProbe({ policy: opts.policy, collect: opts.collect, addon: opts.addon, nft, sysRoot: root });
    run.report.notes.unshift(`${port} is already up: nothing switched; probed as it is`);
    return { port, outcome: 'already-up', report: run.report };
  }

  const addon = opts.addon ?? loadProbeAddon();
  const collect = { ...DEFAULT_COLLECT, ...opts.collect };
  const notes: string[] = [];
  const findings: Finding[] = [];
  let stats: Record<string, unknown> = {};
  // The port's life in this run: it may have been set up (wentUp), may forward (released: the
  // probe was clean and the table is gone), and is kept only once the watch ended quietly
  // (accepted). guard-up is all or nothing: killed before `accepted`, the port goes down again.
  let wentUp = false;
  let released = false;
  let accepted = false;
  let installed = false;
  // One handler for the whole run (two with a gap between them would leave a window in which a
  // signal kills us with nothing cleaned: closing the tap alone can take milliseconds, since
  // packet_release waits for an RCU grace period). Down first, then unguard; a port that will not
  // go down stays isolated.
  const release = onInterrupt(() => {
    if (wentUp && !accepted) {
      setAdminUpSysfs(port, false, root);
      if (isAdminUp(port, root) !== false) return;
    }
    if (installed) removeProbeTableSync();
  });
  try {
    const fd = openTap(addon);
    try {
      try {
        await installProbeTable({ dropProbeOn: ports.map((p) => p.name), isolate: [port] }, nft);
        installed = true;
      } catch (err) {
        throw new PreflightError('E_PROBE_NFT', `cannot isolate ${port} with nft, so it stays down: ${(err as Error).message}`, { cause: err });
      }
      try {
        // Synchronous, no child process: a signal can never land between "the kernel set the link
        // up" and "we know we did". wentUp is set first: downing a port that never came up is harmless.
        wentUp = true;
        setAdminUpSysfs(port, true, root);
        if (isAdminUp(port, root) !== true) await runArgv(['ip', 'link', 'set', 'dev', port, 'up'], CMD_TIMEOUT_MS);
        if (!(await waitCarrier(port, opts.carrierTimeoutMs ?? 5000, root))) {
          notes.push(`${port} got no carrier within ${opts.carrierTimeoutMs ?? 5000} ms: cannot be checked, so it stays down`);
          return { port, outcome: 'no-carrier', report: { findings, notes } };
        }
        // Re-read: the port's own STP state and carrier changed with the link.
        const now = readHostPorts(opts.policy, root);
        const from = [port, ...now.filter((p) => p.watched && p.name !== port && p.adminUp && p.operUp).map((p) => p.name)];
        // Our carrier says nothing about the far end: a switch port (or, in the lab, the peer's
        // bridge) may start forwarding a moment later, and a probe sent into that moment finds no
        // loop that is there. So a clean answer is only trusted after PROBE_ROUNDS rounds spread
        // over a few hundred ms; a loop found in any round is final. (Seen once in CI under load.)
        const { r, a } = await probeInRounds(addon, fd, now, from, collect, port);
        const isolation = await readTableCounters(nft).catch(() => ({})); // evidence only
        stats = { probe: { framesSent: r.sent.length, framesSeen: r.framesSeen, paths: a.paths, sendMs: r.sendMs, collectMs: r.collectMs }, isolation };
        findings.push(...a.findings);
        notes.push(...a.notes);
        if (!r.sent.some((s) => s.port === port)) {
          notes.push(`the probe could not be sent on ${port} (${r.sendErrors.find((e) => e.port === port)?.code ?? '?'}): it stays down`);
          return { port, outcome: 'refused', report: { findings, notes, stats } };
        }
        const blocking = a.findings.filter((f) => f.severity === 'error' && f.ports.includes(port));
        if (blocking.length > 0) {
          notes.push(`${port} would close a loop: left down`);
          return { port, outcome: 'refused', report: { findings, notes, stats } };
        }
        released = true;
      } finally {
        // Refused, failed or no carrier: down BEFORE the isolation goes, so it never forwards.
        if (wentUp && !released) await shutPort(port, root);
        try {
          await removeProbeTable(nft);
          installed = false;
        } catch (err) {
          // A left-over table keeps the port isolated (if it was released) or only drops probes.
          throw new PreflightError('E_PROBE_CLEANUP', `could not delete table netdev stormbreaker_probe: ${(err as Error).message}; ${port} ${released ? 'is up but isolated until the table is deleted' : 'is down'}`, { cause: err });
        }
      }
    } finally {
      addon.close(fd);
    }

    if (opts.watchMs > 0) {
      const trip = await watchPort(port, opts, root);
      stats = { ...stats, watch: { ms: opts.watchMs, samples: trip.samples, maxRxPps: Math.round(trip.maxRxPps), maxFloodPps: Math.round(trip.maxFloodPps) } };
      if (trip.tripped) {
        findings.push(watchFlood(port, trip, pp.thresholds));
        return { port, outcome: 'shut', report: { findings, notes, stats } };
      }
    }
    accepted = true;
    notes.push(`${port} is up${opts.watchMs > 0 ? ` and stayed quiet for ${opts.watchMs} ms` : ''}`);
    return { port, outcome: 'up', report: { findings, notes, stats } };
  } finally {
    // Any way out but `accepted` (refused, shut, no carrier, an error in the watch) leaves it down.
    if (wentUp && !accepted && isAdminUp(port, root) !== false) await shutPort(port, root).catch(() => undefined);
    release();
  }
}

/**
 * Probe frames out of `from` in PROBE_ROUNDS rounds spread over a few hundred ms. Our carrier says
 * nothing about the far end: a switch port (or, in the lab, the peer's bridge) may start
 * forwarding a moment later, and a probe sent into that moment finds no loop that is there. So a
 * clean answer is only trusted after every round; a loop through `port` found in any round is
 * final. (Seen once in CI under load.)
 */
async function probeInRounds(addon: ProbeAddon, fd: number, now: HostPort[], from: string[], collect: CollectOptions, port: string) {
  let r = await sendAndCollect(addon, fd, now, from, collect);
  let a = analyzeProbe(now, r.sent, r.arrivals);
  for (let round = 1; round < PROBE_ROUNDS && !a.findings.some((f) => f.severity === 'error' && f.ports.includes(port)); round++) {
    await new Promise((res) => setTimeout(res, PROBE_ROUND_GAP_MS));
    const more = await sendAndCollect(addon, fd, now, from, collect);
    r = { ...more, sent: [...r.sent, ...more.sent], arrivals: [...r.arrivals, ...more.arrivals], framesSeen: r.framesSeen + more.framesSeen, sendErrors: [...r.sendErrors, ...more.sendErrors] };
    a = analyzeProbe(now, r.sent, r.arrivals);
  }
  return { r, a };
}

/** The finding when a port that passed the probe floods while watched. */
function watchFlood(port: string, trip: WatchResult, th: Thresholds): Finding {
  return {
    rule: 'guard-watch-flood',
    severity: 'error',
    ports: [port],
    what: `${port} passed the probe but, ${Math.round(trip.afterMs)} ms after it started forwarding, received ${Math.round(trip.window.at(-1)?.floodPps ?? 0)} flood pps (rx ${Math.round(trip.window.at(-1)?.rxPps ?? 0)} pps; threshold floodPps ${th.floodPps}, rxPps ${th.rxPps}, ${th.holdSamples} samples): shut again`,
    fix: `find what floods ${port} (a loop beyond it that the probe could not see, e.g. STP re-converging upstream, or a flooding guest) before trying again; run stormbreaker preflight`,
    evidence: { window: trip.window, thresholds: th, shutMs: trip.shutMs },
  };
}

interface WatchResult {
  tripped: boolean;
  afterMs: number;
  shutMs: number;
  window: WatchPoint[];
  samples: number;
  maxRxPps: number;
  maxFloodPps: number;
}

/** Sample the port's counters every sampleMs for watchMs; shut it on the first trip. */
async function watchPort(port: string, opts: GuardOptions, root: string): Promise<WatchResult> {
  const th = resolvePort(opts.policy, port)!.thresholds;
  const buf = Buffer.alloc(32);
  const rxFd = openSync(`${root}/${port}/statistics/rx_packets`, 'r');
  // Broadcast/multicast counts from the same addon the daemon uses; NaN if it cannot count.
  const loaded = loadPacketAddon();
  const pk: PacketAddon | null = 'error' in loaded ? null : loaded;
  const fds: number[] = [];
  try {
    if (pk) {
      try {
        fds.push(pk.open(port, 'broadcast'), pk.open(port, 'multicast'));
      } catch {
        for (const f of fds.splice(0)) pk.close(f);
      }
    }
    const readRx = (): number => Number(buf.toString('latin1', 0, readSync(rxFd, buf, 0, buf.length, 0)).trim());
    const readFlood = (): number => (pk && fds.length === 2 ? pk.read(fds[0]!) + pk.read(fds[1]!) : NaN);
    let st = initialWatchState();
    const t0 = performance.now();
    let samples = 0;
    let maxRx = 0;
    let maxFlood = 0;
    for (;;) {
      const tMs = performance.now();
      const step = watchStep(st, { tMs, rxPackets: readRx(), floodPackets: readFlood() }, th);
      st = step.state;
      samples++;
      const last = st.window.at(-1);
      if (last) {
        maxRx = Math.max(maxRx, last.rxPps);
        if (Number.isFinite(last.floodPps)) maxFlood = Math.max(maxFlood, last.floodPps);
      }
      if (step.trip) {
        const ts = performance.now();
        await shutPort(port, root);
        return { tripped: true, afterMs: tMs - t0, shutMs: performance.now() - ts, window: st.window, samples, maxRxPps: maxRx, maxFloodPps: maxFlood };
      }
      if (tMs - t0 >= opts.watchMs) break;
      await sleep(opts.sampleMs ?? DEFAULT_SAMPLE_MS);
    }
    return { tripped: false, afterMs: 0, shutMs: 0, window: st.window, samples, maxRxPps: maxRx, maxFloodPps: maxFlood };
  } finally {
    closeSync(rxFd);
    if (pk) for (const f of fds) pk.close(f);
  }
}
