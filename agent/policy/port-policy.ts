// Every PortPolicy and Thresholds object the detector and breaker read is made here: one object
// literal each, every field present (an absent optional one as undefined), in one order.
//
// Why: a cold agent's first storm runs code compiled during the warm-up (daemon/warmup.ts), and
// V8 compiles property reads for the hidden classes it saw there. Port policies made elsewhere
// by spreads had others: V8's first copies of an object by spread take a slow path and give
// another hidden class than its later ones, a join added `joinedNs` to a copy, ESXi ports carry
// `settleMs`, observed ones `observed`. So the ports re-resolved by the first rescan after the
// warm-up deoptimised observe (its threshold reads), loopVerdict, the evidence builder and the
// local source's collect in the first storm's ticks (lab, kvm, --trace-deopt-verbose, session 16).
import type { OverlayInfo, PortPolicy, Thresholds } from '../types.js';

/** A copy of `t` with the one hidden class every thresholds object has. */
export function thresholdsOf(t: Thresholds): Thresholds {
  return {
    floodPps: t.floodPps,
    clearPps: t.clearPps,
    rxPps: t.rxPps,
    broadcastShare: t.broadcastShare,
    holdSamples: t.holdSamples,
    floodHoldMs: t.floodHoldMs,
    baselineFactor: t.baselineFactor,
  };
}

/** What a join stamps on a port policy (all three given: an absent one is no part of this join). */
export type JoinStamp = Pick<PortPolicy, 'joinedNs' | 'joinedBy' | 'joinedAfterNs'>;

/** A copy of `p` (its thresholds too) with the one hidden class every port policy has; `join` stamps a join. */
export function portPolicyOf(p: PortPolicy, join: JoinStamp = p): PortPolicy {
  return {
    name: p.name,
    role: p.role,
    protected: p.protected,
    shutRank: p.shutRank,
    thresholds: thresholdsOf(p.thresholds),
    rule: p.rule,
    dryRun: p.dryRun,
    recovery: p.recovery,
    settleMs: p.settleMs,
    observed: p.observed,
    joinedNs: join.joinedNs,
    joinedBy: join.joinedBy,
    joinedAfterNs: join.joinedAfterNs,
    overlay: p.overlay,
  };
}

/** A copy of `p` (portPolicyOf) that is, or is not, a tunnel port (PortPolicy.overlay). */
export function withOverlay(p: PortPolicy, overlay: OverlayInfo | undefined): PortPolicy {
  const out = portPolicyOf(p);
  out.overlay = overlay;
  return out;
}

// A field's storage follows the values it has held: small integers only, then any number, then
// anything. The first value of a new kind (a shutRank of Infinity, a fractional threshold, a
// joinedNs where undefined was) moves every object made before to another hidden class, and code
// compiled for the old one deoptimises when it meets them. Made at load with a fraction, Infinity
// and (in the optional fields) undefined, the fields hold anything from the start.
for (const v of [0.5, Infinity, undefined]) {
  const n = v ?? 0.25;
  const t = { floodPps: n, clearPps: n, rxPps: n, broadcastShare: n, holdSamples: n, floodHoldMs: n, baselineFactor: n };
  const recovery = v === undefined ? undefined : { mode: 'manual' as const, cooldownMs: n, probeMs: n, backoff: n, maxTries: n };
  portPolicyOf({ name: 'x', role: 'other', protected: false, shutRank: n, thresholds: t, rule: n, dryRun: false, settleMs: v, joinedNs: v, joinedBy: v === undefined ? undefined : 'carrier', joinedAfterNs: v, observed: v === undefined ? undefined : true, recovery, overlay: v === undefined ? undefined : { kind: 'vxlan', underlay: v === Infinity ? null : 'x' } });
}
