// Storm signature: per-port rates in, verdicts out. Pure (no clock, timers, I/O or logging):
// time is the tick's monotonic tNs and everything else comes from the arguments.
//
// Why not a threshold alone: a single VM reaches ~175k pps of broadcast, as much as a loop does
// (LAB-FACTS). What a loop has and a flooding host has not: two or more ports of one bridge hot
// at once, each of them receiving and re-sending the circling frames (rx ≈ tx), and MACs
// flapping between ports in the FDB. A flooding VM's port has high rx and ~0 tx; the ports it
// floods into have high tx and ~0 rx.
//
// Egress: an uplink that transmits a flood (tx broadcast+multicast, where the source counts it)
// while no watched port of its bridge is hot means the storm's source is on this host but not
// watched (an ESXi guest bridging two unwatched vNICs, after the loop through the switch was
// cut). It is reported, never acted on: shutting the last uplink would cut the host off.
//
// `step` MUTATES the state it is given and returns that same object (the hot path runs up to
// ~1000 times a second over up to 256 ports; rebuilding per-port state each tick would be pure
// garbage). It is still deterministic: same state + same inputs -> same result. On a quiet tick
// it allocates nothing but the small result object; verdicts and their evidence are built only
// when there is something to report.
import type { Evidence, PortPolicy, PortRates, Policy, Thresholds, Tick, Verdict } from '../types.js';

/** Samples kept per port for the evidence window. */
export const RING_SIZE = 16;
/**
 * Time constant of the per-port baseline (EWMA of the flood rate while cool). Time-based rather
 * than a fixed alpha per sample because the sampler switches between idle (10 ms) and active
 * (1 ms) periods: a per-sample alpha would shrink the baseline's memory tenfold exactly when a
 * storm starts, letting a storm that ramps over seconds (the recorded eNSP loop goes
 * 57 -> 395 pps over 7 s) raise its own threshold. 10 s = alpha 0.01 per sample at 100 ms.
 */
export const BASELINE_TAU_MS = 10_000;
/** rx and tx of a loop member are within this factor of each other. */
export const RX_TX_FACTOR = 4;
/** FDB moves are judged over this sliding window. */
export const FDB_WINDOW_MS = 50;
/** A MAC moving this often between >= 2 ports of one bridge within the window is loop proof. */
export const FDB_MIN_MOVES = 3;
/** Moves kept per bridge (newest win); a loop produces far more, a few dozen suffice as proof. */
export const FDB_RING = 64;
/** A port with no valid sample for this long is forgotten (it vanished or cannot be read). */
export const FORGET_AFTER_MS = 1000;

export interface PortTrack {
  readonly port: string;
  bridge: string | null;
  /** Rising edge passed and falling edge (clearPps) not yet crossed. */
  hot: boolean;
  /** Consecutive valid samples while hot. */
  hotCount: number;
  /** tNs of the first sample of the current hot run. */
  hotSinceNs: number;
  /** EWMA of the measured rate while not hot; starts at 0 so a storm already running at start is not learnt. */
  baseline: number;
  txHot: boolean;
  /** hot && txHot && rx ≈ tx, as of the last valid sample. */
  loopMember: boolean;
  /** tNs of the last valid sample (or of creation). */
  lastSeenNs: number;
  // The last valid sample and what it was judged against, for verdicts and their evidence.
  rxPps: number;
  txPps: number;
  floodPps: number;
  /** The measured rate: floodPps if known, else rxPps. */
  measure: number;
  /** Rising threshold in force at the last sample: max(threshold, baseline * baselineFactor). */
  risePps: number;
  /** Falling threshold in force at the last sample. */
  clearPps: number;
  /** true: measure is the flood rate; false: total rx fallback (no broadcast counter). */
  byFlood: boolean;
  /** tx broadcast+multicast pps of the last valid sample (NaN: not counted by the source). */
  txFloodPps: number;
  /** tx flood above floodPps (falls below clearPps to clear), and for how many samples since when. */
  egressHot: boolean;
  egressCount: number;
  egressSinceNs: number;
  // Ring of the last RING_SIZE valid samples (preallocated).
  readonly ringT: Float64Array;
  readonly ringRx: Float64Array;
  readonly ringTx: Float64Array;
  readonly ringFlood: Float64Array;
  /** Index the next sample is written to. */
  ringNext: number;
  ringLen: number;
}

export interface BridgeTrack {
  readonly bridge: string;
  // Ring of recent FDB moves on this bridge, oldest at fdbHead (preallocated).
  readonly fdbT: Float64Array;
  readonly fdbMac: string[];
  readonly fdbPort: string[];
  fdbHead: number;
  fdbLen: number;
  /** Per-tick tallies, valid when seq === state.seq. */
  seq: number;
  members: number;
  /** Members whose hotCount reached their own holdSamples. */
  held: number;
  lastActiveNs: number;
}

export interface DetectorState {
  ports: Map<string, PortTrack>;
  bridges: Map<string, BridgeTrack>;
  /** Incremented every step; stamps per-tick tallies so they need no clearing. */
  seq: number;
  lastSweepNs: number;
}

export interface DetectorStep {
  state: DetectorState;
  /** Shared frozen empty array on quiet ticks: do not mutate. */
  verdicts: readonly Verdict[];
}

const NO_VERDICTS: readonly Verdict[] = Object.freeze([]);

export function initialDetectorState(): DetectorState {
  return { ports: new Map(), bridges: new Map(), seq: 0, lastSweepNs: -Infinity };
}

/**
 * Feed one tick. `ports` holds the watched ports only: rates of any other port are ignored.
 * Mutates and returns `state` (see the file comment).
 */
export function step(
  state: DetectorState,
  tick: Tick,
  ports: ReadonlyMap<string, PortPolicy>,
  policy: Policy,
): DetectorStep {
  const tNs = tick.tNs;
  const seq = ++state.seq;

  for (let i = 0; i < tick.ports.length; i++) {
    const r = tick.ports[i]!;
    const pp = ports.get(r.port);
    if (pp === undefined) continue;
    let tr = state.ports.get(r.port);
    if (tr === undefined) {
      tr = newTrack(r.port, r.bridge, tNs);
      state.ports.set(r.port, tr);
    }
    tr.bridge = r.bridge;
    // Missing data never shuts a port and never hides a storm: an invalid sample changes nothing.
    if (!r.valid) continue;
    observe(tr, r, pp.thresholds, tNs);
  }

  for (let i = 0; i < tick.fdbMoves.length; i++) {
    const mv = tick.fdbMoves[i]!;
    // The fdb source names the bridge ("master"); if it could not, the port's own bridge will do.
    const b = mv.bridge ?? state.ports.get(mv.port)?.bridge ?? null;
    if (b === null) continue;
    pushMove(bridgeTrack(state, b, tNs), mv.tNs, mv.mac, mv.port);
  }

  // Forget vanished ports (and ports the policy no longer watches). Not every tick: the sweep
  // walks every port and a second's precision is all it needs.
  if (tNs - state.lastSweepNs >= 100e6) {
    state.lastSweepNs = tNs;
    sweep(state, ports, tNs);
  }

  // Pass 1: loop membership and per-bridge tallies.
  let candidateBridges = 0;
  let egress = 0;
  for (const tr of state.ports.values()) {
    if (tr.egressHot) egress++;
    // A port the policy stopped watching (reload) is ignored until the sweep forgets it.
    const pp = ports.get(tr.port);
    tr.loopMember =
      pp !== undefined &&
      tr.hot &&
      tr.txHot &&
      tr.rxPps <= RX_TX_FACTOR * tr.txPps &&
      tr.txPps <= RX_TX_FACTOR * tr.rxPps;
    if (!tr.loopMember || tr.bridge === null) continue;
    const b = bridgeTrack(state, tr.bridge, tNs);
    if (b.seq !== seq) {
      b.seq = seq;
      b.members = 0;
      b.held = 0;
    }
    b.members++;
    if (tr.hotCount >= pp!.thresholds.holdSamples) b.held++;
    b.lastActiveNs = tNs;
    if (b.members === 2) candidateBridges++;
  }

  let verdicts: Verdict[] | null = null;
  // Pass 2: loop verdicts, only for bridges with two or more members (rare: a storm).
  if (candidateBridges > 0) {
    for (const b of state.bridges.values()) {
      if (b.seq !== seq || b.members < 2) continue;
      pruneMoves(b, tNs);
      const flap = b.fdbLen >= FDB_MIN_MOVES ? worstFlap(b) : null;
      // MAC flapping is near-proof of a loop: then one hot sample per member suffices.
      if (flap === null && b.held < 2) continue;
      (verdicts ??= []).push(loopVerdict(state, b, flap, tick, ports, policy));
    }
  }

  // Pass 3: floods from a single port (hot rx, tx not ≈ rx).
  for (const tr of state.ports.values()) {
    if (!tr.hot || tr.loopMember) continue;
    const pp = ports.get(tr.port);
    if (pp === undefined || tr.hotCount < pp.thresholds.holdSamples) continue;
    // Hot for floodHoldMs, counted from the first hot sample's interval start (its dt ago).
    if (tick.tNs - tr.hotSinceNs < pp.thresholds.floodHoldMs * 1e6) continue;
    (verdicts ??= []).push(floodVerdict(tr, pp, tick, policy));
  }

  // Pass 4: a flood leaving by an uplink whose source no watched port shows (rare: skipped unless some port is egress-hot).
  if (egress > 0) {
    for (const tr of state.ports.values()) {
      if (!tr.egressHot || tr.hot || tr.loopMember) continue;
      const pp = ports.get(tr.port);
      if (pp === undefined || pp.role !== 'uplink' || tr.egressCount < pp.thresholds.holdSamples) continue;
      if (tick.tNs - tr.egressSinceNs < pp.thresholds.floodHoldMs * 1e6) continue;
      if (hotOnBridge(state, tr)) continue;
      (verdicts ??= []).push(egressVerdict(tr, pp, tick, policy));
    }
  }

  return { state, verdicts: verdicts ?? NO_VERDICTS };
}

function newTrack(port: string, bridge: string | null, tNs: number): PortTrack {
  return {
    port,
    bridge,
    hot: false,
    hotCount: 0,
    hotSinceNs: 0,
    baseline: 0,
    txHot: false,
    loopMember: false,
    lastSeenNs: tNs,
    rxPps: 0,
    txPps: 0,
    floodPps: NaN,
    measure: 0,
    risePps: 0,
    clearPps: 0,
    byFlood: false,
    txFloodPps: NaN,
    egressHot: false,
    egressCount: 0,
    egressSinceNs: 0,
    ringT: new Float64Array(RING_SIZE),
    ringRx: new Float64Array(RING_SIZE),
    ringTx: new Float64Array(RING_SIZE),
    ringFlood: new Float64Array(RING_SIZE),
    ringNext: 0,
    ringLen: 0,
  };
}

/** One valid sample: hysteresis, hold count, baseline, tx. */
function observe(tr: PortTrack, r: PortRates, t: Thresholds, tNs: number): void {
  tr.lastSeenNs = tNs;
  const k = tr.ringNext;
  tr.ringT[k] = tNs;
  tr.ringRx[k] = r.rxPps;
  tr.ringTx[k] = r.txPps;
  tr.ringFlood[k] = r.floodPps;
  tr.ringNext = (k + 1) % RING_SIZE;
  if (tr.ringLen < RING_SIZE) tr.ringLen++;

  const byFlood = Number.isFinite(r.floodPps);
  const m = byFlood ? r.floodPps : r.rxPps;
  const base = byFlood ? t.floodPps : t.rxPps;
  // Without a broadcast counter the falling edge keeps the same proportion to the rising edge.
  const clear = byFlood ? t.clearPps : t.floodPps > 0 ? (t.clearPps * t.rxPps) / t.floodPps : t.clearPps;
  const rise = Math.max(base, tr.baseline * t.baselineFactor);

  if (tr.hot) {
    if (m < clear) tr.hot = false;
  } else if (m >= rise && (!byFlood || r.rxPps === 0 || r.floodPps / r.rxPps >= t.broadcastShare)) {
    tr.hot = true;
  }
  if (tr.hot) {
    if (tr.hotCount === 0) tr.hotSinceNs = tNs;
    tr.hotCount++;
  } else {
    tr.hotCount = 0;
    tr.baseline += Math.min(1, r.dtMs / BASELINE_TAU_MS) * (m - tr.baseline);
  }
  // Same threshold as rx: in a loop every member re-sends what it receives.
  tr.txHot = r.txPps >= base;
  const txf = r.txFloodPps ?? NaN;
  if (!Number.isFinite(txf)) tr.egressHot = false;
  else if (tr.egressHot) tr.egressHot = txf >= t.clearPps;
  else tr.egressHot = txf >= t.floodPps;
  if (tr.egressHot) {
    if (tr.egressCount === 0) tr.egressSinceNs = tNs;
    tr.egressCount++;
  } else tr.egressCount = 0;
  tr.txFloodPps = txf;

  tr.rxPps = r.rxPps;
  tr.txPps = r.txPps;
  tr.floodPps = r.floodPps;
  tr.measure = m;
  tr.risePps = rise;
  tr.clearPps = clear;
  tr.byFlood = byFlood;
}

function bridgeTrack(state: DetectorState, bridge: string, tNs: number): BridgeTrack {
  let b = state.bridges.get(bridge);
  if (b === undefined) {
    b = {
      bridge,
      fdbT: new Float64Array(FDB_RING),
      fdbMac: new Array<string>(FDB_RING).fill(''),
      fdbPort: new Array<string>(FDB_RING).fill(''),
      fdbHead: 0,
      fdbLen: 0,
      seq: 0,
      members: 0,
      held: 0,
      lastActiveNs: tNs,
    };
    state.bridges.set(bridge, b);
  }
  return b;
}

function pushMove(b: BridgeTrack, tNs: number, mac: string, port: string): void {
  let k: number;
  if (b.fdbLen < FDB_RING) {
    k = (b.fdbHead + b.fdbLen) % FDB_RING;
    b.fdbLen++;
  } else {
    // Full: overwrite the oldest.
    k = b.fdbHead;
    b.fdbHead = (b.fdbHead + 1) % FDB_RING;
  }
  b.fdbT[k] = tNs;
  b.fdbMac[k] = mac;
  b.fdbPort[k] = port;
  b.lastActiveNs = Math.max(b.lastActiveNs, tNs);
}

/** Drop moves older than the window (moves arrive in time order from one stream). */
function pruneMoves(b: BridgeTrack, tNs: number): void {
  const cutoff = tNs - FDB_WINDOW_MS * 1e6;
  while (b.fdbLen > 0 && b.fdbT[b.fdbHead]! < cutoff) {
    b.fdbHead = (b.fdbHead + 1) % FDB_RING;
    b.fdbLen--;
  }
}

interface Flap {
  mac: string;
  moves: number;
  ports: string[];
}

/** The MAC with the most moves in the window among those seen on >= 2 ports at least FDB_MIN_MOVES times. */
function worstFlap(b: BridgeTrack): Flap | null {
  let bestMac = '';
  let bestMoves = 0;
  for (let i = 0; i < b.fdbLen; i++) {
    const mac = b.fdbMac[(b.fdbHead + i) % FDB_RING]!;
    let counted = false;
    for (let j = 0; j < i && !counted; j++) counted = b.fdbMac[(b.fdbHead + j) % FDB_RING] === mac;
    if (counted) continue;
    const firstPort = b.fdbPort[(b.fdbHead + i) % FDB_RING]!;
    let moves = 0;
    let multi = false;
    for (let j = i; j < b.fdbLen; j++) {
      const k = (b.fdbHead + j) % FDB_RING;
      if (b.fdbMac[k] !== mac) continue;
      moves++;
      if (b.fdbPort[k] !== firstPort) multi = true;
    }
    if (multi && moves >= FDB_MIN_MOVES && moves > bestMoves) {
      bestMac = mac;
      bestMoves = moves;
    }
  }
  if (bestMoves === 0) return null;
  const ports: string[] = [];
  for (let j = 0; j < b.fdbLen; j++) {
    const k = (b.fdbHead + j) % FDB_RING;
    if (b.fdbMac[k] === bestMac && !ports.includes(b.fdbPort[k]!)) ports.push(b.fdbPort[k]!);
  }
  ports.sort();
  return { mac: bestMac, moves: bestMoves, ports };
}

function sweep(state: DetectorState, ports: ReadonlyMap<string, PortPolicy>, tNs: number): void {
  const cutoff = tNs - FORGET_AFTER_MS * 1e6;
  for (const [name, tr] of state.ports) {
    if (tr.lastSeenNs < cutoff || !ports.has(name)) state.ports.delete(name);
  }
  for (const [name, b] of state.bridges) {
    if (b.lastActiveNs < cutoff) state.bridges.delete(name);
  }
}

// --- verdicts and evidence (built only when there is something to report) ----------------------

function loopVerdict(
  state: DetectorState,
  b: BridgeTrack,
  flap: Flap | null,
  tick: Tick,
  ports: ReadonlyMap<string, PortPolicy>,
  policy: Policy,
): Verdict {
  const members: PortTrack[] = [];
  for (const tr of state.ports.values()) if (tr.loopMember && tr.bridge === b.bridge) members.push(tr);
  members.sort((x, y) => (x.port < y.port ? -1 : x.port > y.port ? 1 : 0));

  const thresholds: Record<string, number> = {};
  const clues: string[] = [`${members.length} ports of ${b.bridge} hot at once`];
  for (const tr of members) {
    const t = ports.get(tr.port)!.thresholds;
    portThresholds(thresholds, tr, t);
    thresholds[`${tr.port}.txPps`] = tr.txPps;
    thresholds[`${tr.port}.holdSamples`] = flap === null ? t.holdSamples : 1;
    clues.push(`rx≈tx on ${tr.port} (${kpps(tr.rxPps)}/${kpps(tr.txPps)} pps)`);
  }
  thresholds.rxTxFactor = RX_TX_FACTOR;
  if (flap !== null) {
    clues.push(`MAC ${flap.mac} moved ${flap.moves} times between ${flap.ports.join(',')} within ${FDB_WINDOW_MS} ms`);
    thresholds.fdbMoves = flap.moves;
    thresholds.fdbMinMoves = FDB_MIN_MOVES;
  }
  for (const tr of members) clues.push(`${tr.port} hot for ${tr.hotCount} samples`);

  const first = ports.get(members[0]!.port)!;
  return {
    kind: 'loop',
    bridge: b.bridge,
    members: members.map((m) => m.port),
    evidence: evidence(members, thresholds, clues, first.rule, tick, policy),
  };
}

function floodVerdict(tr: PortTrack, pp: PortPolicy, tick: Tick, policy: Policy): Verdict {
  const t = pp.thresholds;
  const thresholds: Record<string, number> = {};
  portThresholds(thresholds, tr, t);
  thresholds[`${tr.port}.txPps`] = tr.txPps;
  thresholds[`${tr.port}.holdSamples`] = t.holdSamples;
  thresholds[`${tr.port}.floodHoldMs`] = t.floodHoldMs;
  const what = tr.byFlood ? 'broadcast+multicast' : 'rx (no broadcast counter)';
  const clues = [`${what} ${kpps(tr.measure)} pps on ${tr.port} >= ${kpps(tr.risePps)}`];
  if (tr.byFlood && tr.rxPps > 0) clues.push(`broadcast share ${Math.round((100 * tr.floodPps) / tr.rxPps)}%`);
  clues.push(`rx only: tx ${kpps(tr.txPps)} pps (not a loop member)`);
  clues.push(`hot for ${tr.hotCount} samples over ${Math.round((tick.tNs - tr.hotSinceNs) / 1e6)} ms`);
  return { kind: 'flood', port: tr.port, evidence: evidence([tr], thresholds, clues, pp.rule, tick, policy) };
}

/** Is a watched port of tr's bridge (other than tr) hot on rx? Then the flood's source is watched. */
function hotOnBridge(state: DetectorState, tr: PortTrack): boolean {
  if (tr.bridge === null) return false;
  for (const o of state.ports.values()) if (o !== tr && o.hot && o.bridge === tr.bridge) return true;
  return false;
}

function egressVerdict(tr: PortTrack, pp: PortPolicy, tick: Tick, policy: Policy): Verdict {
  const t = pp.thresholds;
  const p = tr.port;
  const thresholds: Record<string, number> = {
    [`${p}.txFloodPps`]: tr.txFloodPps,
    [`${p}.floodPps`]: t.floodPps,
    [`${p}.clearPps`]: t.clearPps,
    [`${p}.rxPps`]: tr.rxPps,
    [`${p}.holdSamples`]: t.holdSamples,
    [`${p}.floodHoldMs`]: t.floodHoldMs,
  };
  const clues = [
    `tx broadcast+multicast ${kpps(tr.txFloodPps)} pps leaving by ${p} >= ${kpps(t.floodPps)}`,
    `rx ${kpps(tr.rxPps)} pps on ${p}: not received, not a loop member`,
    tr.bridge === null ? `${p} has no known bridge` : `no watched port of ${tr.bridge} is hot: the source is not watched`,
    `for ${tr.egressCount} samples over ${Math.round((tick.tNs - tr.egressSinceNs) / 1e6)} ms`,
  ];
  return { kind: 'egress', port: p, evidence: evidence([tr], thresholds, clues, pp.rule, tick, policy) };
}

function portThresholds(out: Record<string, number>, tr: PortTrack, t: Thresholds): void {
  const p = tr.port;
  out[tr.byFlood ? `${p}.floodPps` : `${p}.rxPps`] = tr.byFlood ? t.floodPps : t.rxPps;
  out[`${p}.risePps`] = tr.risePps;
  out[`${p}.observedPps`] = tr.measure;
  out[`${p}.clearPps`] = tr.clearPps;
  out[`${p}.baselinePps`] = tr.baseline;
  out[`${p}.baselineFactor`] = t.baselineFactor;
  if (tr.byFlood) out[`${p}.broadcastShare`] = t.broadcastShare;
}

function evidence(
  tracks: readonly PortTrack[],
  thresholds: Record<string, number>,
  clues: string[],
  rule: number,
  tick: Tick,
  policy: Policy,
): Evidence {
  const window: Evidence['window'] = [];
  for (const tr of tracks) {
    // Oldest first within a port.
    for (let i = 0; i < tr.ringLen; i++) {
      const k = (tr.ringNext - tr.ringLen + i + RING_SIZE) % RING_SIZE;
      window.push({
        port: tr.port,
        tMs: (tr.ringT[k]! - tick.tNs) / 1e6,
        rxPps: tr.ringRx[k]!,
        txPps: tr.ringTx[k]!,
        floodPps: tr.ringFlood[k]!,
      });
    }
  }
  // Newest last across ports; stable for equal times (port order is already by name).
  window.sort((a, b) => a.tMs - b.tMs);
  return { tNs: tick.tNs, window, thresholds, clues, rule, policyHash: policy.hash };
}

/** 98000 -> "98k", 950 -> "950": short enough for a clue line. */
function kpps(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  return x >= 1000 ? `${Math.round(x / 1000)}k` : `${Math.round(x)}`;
}
