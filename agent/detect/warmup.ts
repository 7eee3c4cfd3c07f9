// Pay the detector's first-storm costs at start (issue 11 item 4): V8 compiles a function lazily
// and optimises it only after it ran hot, so the first storm an idle agent meets runs the
// verdict paths (loop, flap, sustained, flood evidence) interpreted, for the first time. Feeding
// the detector a synthetic storm on a throwaway state at start makes the first real storm run
// code that is already compiled. Pure: no clock, no I/O; nothing it touches outlives the call.
import type { PortPolicy, PortRates, Policy, Tick, FdbMove, Verdict } from '../types.js';
import { initialDetectorState, step } from './signature.js';

const WARM_BRIDGE = '(warm-up)';
export const WARM_PORTS = ['warm-a', 'warm-b', 'warm-c'] as const;
/** The synthetic storms, each for an equal share of the ticks (see warmUpDetector). */
export const WARM_PHASES = 5;

/** The warm-up's ports, each with `portPolicy`'s thresholds, unprotected, live (not dry-run). */
export function warmPorts(portPolicy: PortPolicy): Map<string, PortPolicy> {
  return new Map<string, PortPolicy>(WARM_PORTS.map((p, i) => [p, { ...portPolicy, name: p, protected: false, dryRun: false, shutRank: i }]));
}

function rates(port: string): PortRates {
  return { port, bridge: WARM_BRIDGE, dtMs: 1, rxPps: 0, txPps: 0, rxBps: 0, floodPps: 0, bcastPps: 0, valid: true };
}

/**
 * Run `ticks` synthetic 1 ms ticks through a fresh detector state: quiet, a two-port loop with a
 * flapping MAC, a slow loop, a unicast loop and a single-port flood, so every verdict path runs.
 * `portPolicy` supplies the thresholds (the policy's defaults, as a real port would have).
 * `each` sees every tick's verdicts (the breaker's warm-up feeds them on). Returns the verdicts it
 * produced by path (a path with none was not warmed).
 */
export function warmUpDetector(
  policy: Policy,
  portPolicy: PortPolicy,
  ticks = 3000,
  each?: (verdicts: readonly Verdict[], tNs: number) => void,
): Record<'rate' | 'flap' | 'sustained' | 'flood', number> {
  const ports = warmPorts(portPolicy);
  const st = initialDetectorState();
  const rs = WARM_PORTS.map(rates);
  const moves: FdbMove[] = [{ tNs: 0, bridge: WARM_BRIDGE, mac: '02:00:5e:00:00:01', port: 'warm-a' }];
  const none: FdbMove[] = [];
  const tick: Tick = { tNs: 0, ports: rs, fdbMoves: none };
  const t = portPolicy.thresholds;
  const seen = { rate: 0, flap: 0, sustained: 0, flood: 0 };
  for (let i = 0; i < ticks; i++) {
    const phase = Math.floor((i / ticks) * WARM_PHASES);
    const tNs = 1e12 + i * 1e6;
    // 0 quiet; 1 loop over the rate gate with a flap; 2 slow loop; 3 unicast loop with a flap; 4 flood.
    const loopPps = phase === 1 ? 5 * t.floodPps : phase === 2 ? t.clearPps / 2 : phase === 3 ? 4 * t.floodPps : 0;
    const flood = phase === 3 ? 0 : loopPps;
    for (let k = 0; k < rs.length; k++) {
      const r = rs[k]!;
      const member = k < 2;
      r.rxPps = phase === 4 ? (k === 2 ? 8 * t.floodPps : 0) : member ? loopPps : 0;
      r.txPps = phase === 4 ? (k === 2 ? 0 : 8 * t.floodPps) : member ? loopPps * 1.02 : 2 * loopPps;
      r.floodPps = phase === 4 ? r.rxPps : member ? flood : 0;
      r.bcastPps = r.floodPps;
    }
    tick.tNs = tNs;
    const flap = phase === 1 || phase === 3;
    if (flap) {
      moves[0]!.tNs = tNs;
      moves[0]!.port = i % 2 ? 'warm-a' : 'warm-b';
    }
    tick.fdbMoves = flap ? moves : none;
    const verdicts = step(st, tick, ports, policy).verdicts;
    each?.(verdicts, tNs);
    for (const v of verdicts) {
      const first = v.evidence.clues[0] ?? '';
      if (v.kind !== 'loop') seen.flood++;
      else if (first.includes('flapping')) seen.flap++;
      else if (first.includes('sustained')) seen.sustained++;
      else seen.rate++;
    }
  }
  return seen;
}
