// Pay the detector's first-storm costs at start (issue 11 item 4): V8 compiles a function lazily
// and optimises it only after it ran hot, so the first storm an idle agent meets runs the
// verdict paths (loop, flap, sustained, flood evidence) interpreted, for the first time. Feeding
// the detector a synthetic storm on a throwaway state at start makes the first real storm run
// code that is already compiled. Pure: no clock, no I/O; nothing it touches outlives the call.
//
// The synthetic input must look like the real one to the compiler, not only to the detector: the
// same object shapes (blankRates, emptyTick), rates that are doubles, names that are strings made
// at run time (as read from sysfs or split from a monitor line), not literals. Code compiled for
// integer rates and literal names was thrown away in the first real storm's tick (lab,
// --trace-deopt: observe, worstFlap, markMembers, loopVerdict, evidence and four more
// deoptimised there, ~1 ms of the cold verdict tick).
import type { PortPolicy, PortRates, Policy, FdbMove, Verdict } from '../types.js';
import { blankRates } from '../sample/rates.js';
import { emptyTick, initialDetectorState, step } from './signature.js';
import { portPolicyOf } from '../policy/port-policy.js';
import { runtime, warmUpDomains, type DomainWarmUp } from './warmup-domains.js';
export const WARM_BRIDGE = runtime('(warm-up)');
export const WARM_PORTS: readonly string[] = ['warm-a', 'warm-b', 'warm-c', 'warm-d'].map(runtime);
/** The synthetic storms, each for an equal share of the ticks (see warmUpDetector). */
export const WARM_PHASES = 5;
/**
 * Where in the three-member loop's phase warm-d starts its stream (a share of the phase). The
 * breaker's warm-up restores what it shut half way through each phase: the stream starts before
 * that, so its 10 ms average is over a loop's floor when the loop is judged again.
 */
const STREAM_FROM = 0.4;

/** The warm-up's ports, each with `portPolicy`'s thresholds, unprotected, live (not dry-run). */
export function warmPorts(portPolicy: PortPolicy): Map<string, PortPolicy> {
  return new Map<string, PortPolicy>(WARM_PORTS.map((p, i) => [p, portPolicyOf({ ...portPolicy, name: p, protected: false, dryRun: false, shutRank: i })]));
}

function rates(port: string): PortRates {
  const r = blankRates(port, WARM_BRIDGE, NaN);
  r.valid = true;
  return r;
}

/** A MAC as the FDB monitor's parser leaves it: split out of a line. */
export function macFromLine(): string {
  return '02:00:5e:00:00:01 dev warm-a master (warm-up)'.split(/\s+/)[0]!;
}

/**
 * Run `ticks` synthetic 1 ms ticks through a fresh detector state: quiet, a two-port loop with a
 * flapping MAC, a slow loop, a unicast loop and a single-port flood, so every verdict path runs;
 * then the other forwarding domains' storms (macvtap rings, a guest's flood, an ESXi vSwitch:
 * warmup-domains.ts), on states and ports of their own. `portPolicy` supplies the thresholds (the
 * policy's defaults, as a real port would have). `each` sees every tick's verdicts of the
 * bridge's storms (the breaker's warm-up feeds them on; a ring's loop verdict takes the same
 * breaker path as a bridge's). Returns the verdicts it produced by path (a path with none was not warmed).
 */
export function warmUpDetector(
  policy: Policy,
  portPolicy: PortPolicy,
  ticks = 3000,
  each?: (verdicts: readonly Verdict[], tNs: number) => void,
): Record<'rate' | 'flap' | 'sustained' | 'flood', number> & { domains: DomainWarmUp } {
  const ports = warmPorts(portPolicy);
  const st = initialDetectorState();
  const rs = WARM_PORTS.map(rates);
  const moves: FdbMove[] = [{ tNs: 0, bridge: WARM_BRIDGE, mac: macFromLine(), port: WARM_PORTS[0]! }];
  const none: FdbMove[] = [];
  const tick = emptyTick();
  tick.ports = rs;
  tick.fdbMoves = none;
  const t = portPolicy.thresholds;
  const seen = { rate: 0, flap: 0, sustained: 0, flood: 0 };
  let tNs = 1e12;
  for (let i = 0; i < ticks; i++) {
    const phase = Math.floor((i / ticks) * WARM_PHASES);
    // Real intervals and rates are never whole numbers: neither are these (see the file comment).
    const jitter = 1 + ((i * 7919) % 13) / 997;
    tNs += 1e6 * jitter;
    // 0 quiet; 1 loop over the rate gate with a flap, of three members: in its first part they
    // are every way into the bridge (the breaker's two cuts at once run), from STREAM_FROM on
    // warm-d sends a multicast stream beside them (one cut, then the breaker's escalation on the
    // evidence after it: the synthetic loop goes on); 2 slow loop; 3 unicast loop with a flap
    // (the breaker's settle escalation runs); 4 flood.
    const loopPps = jitter * (phase === 1 ? 5 * t.floodPps : phase === 2 ? t.clearPps / 2 : phase === 3 ? 4 * t.floodPps : 0.25);
    const flood = phase === 3 ? 0 : loopPps;
    const stream = phase === 1 && (i / ticks) * WARM_PHASES - phase >= STREAM_FROM ? jitter * t.floodPps * 0.1 : 0;
    for (let k = 0; k < rs.length; k++) {
      const r = rs[k]!;
      const member = k < 2 || (phase === 1 && k === 2);
      r.rxPps = phase === 4 ? (k === 2 ? 8 * jitter * t.floodPps : 0) : member ? loopPps : k === 3 ? stream : 0;
      r.txPps = phase === 4 ? (k === 2 ? 0 : 8 * jitter * t.floodPps) : member ? loopPps * 1.02 : 2 * loopPps;
      r.floodPps = phase === 4 ? r.rxPps : member ? flood : k === 3 ? stream : 0;
      r.bcastPps = r.floodPps;
      r.rxBps = r.rxPps * 64.5;
      r.dtMs = jitter;
    }
    tick.tNs = tNs;
    const flap = phase === 1 || phase === 3;
    if (flap) {
      moves[0]!.tNs = tNs;
      moves[0]!.port = WARM_PORTS[i % 2 ? 0 : 1]!;
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
  return { ...seen, domains: warmUpDomains(policy, portPolicy) };
}
