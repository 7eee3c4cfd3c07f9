// The pure breaker driven by hand in unit tests: verdict and result factories, and a driver whose
// `at(ms, ...)` is one breakerStep at that monotonic time; the detector and breaker in a closed
// loop over a generated trace. Shared by breaker*.test.ts and two-cuts.test.ts.
import { expect } from 'vitest';
import { breakerStep, initialBreakerState, portStates, type BreakerInput, type BreakerState, type BreakerStep } from '../../agent/breaker/state.js';
import { initialDetectorState, step } from '../../agent/detect/signature.js';
import { TraceGen, type TraceSpec } from '../../agent/testing/traces.js';
import type { ActionRequest, ActionResult, Evidence, JournalEvent, Policy, PortPolicy, Verdict } from '../../agent/types.js';

export const WALL0 = Date.UTC(2025, 0, 2, 3, 4, 5);
export const T0 = 5e12;

/** Evidence, loop and flood verdicts stamped with `policy`'s hash. */
export function verdictsFor(policy: Policy) {
  const evidence = (tag = 'x'): Evidence => ({ tNs: 0, window: [], thresholds: {}, clues: [tag], rule: 0, policyHash: policy.hash });
  return {
    evidence,
    loop: (members: string[], bridge: string | null = 'br0'): Verdict => ({ kind: 'loop', bridge, members, evidence: evidence(`loop ${members}`) }),
    flood: (port: string): Verdict => ({ kind: 'flood', port, evidence: evidence(`flood ${port}`) }),
  };
}

export const result = (kind: ActionResult['kind'], port: string, ok = true): ActionResult => ({
  kind,
  port,
  ok,
  via: 'sysfs-flags',
  durationMs: 0.2,
  attempts: 1,
  verified: ok,
  ...(ok ? {} : { error: 'EPERM' }),
});

/**
 * Closed-loop tests: the breaker's commands of one tick land on the trace before the next (a
 * link-down stops the port's counters, a link-up starts them again), each with a successful result.
 */
export function landOnTrace(down: Set<string>, pending: readonly ActionRequest[]): ActionResult[] {
  return pending.map((c) => {
    if (c.kind === 'link-down') down.add(c.port);
    else down.delete(c.port);
    return result(c.kind, c.port);
  });
}

export function breakerDriver(
  ports: ReadonlyMap<string, PortPolicy>,
  pol: Policy,
  state: BreakerState = initialBreakerState(),
  clock: { t0Ns: number; wall0: number } = { t0Ns: T0, wall0: WALL0 },
) {
  const commands: Array<ActionRequest & { tMs: number }> = [];
  const events: JournalEvent[] = [];
  return {
    state,
    commands,
    events,
    at(tMs: number, o: Partial<Omit<BreakerInput, 'tNs' | 'wallMs'>> = {}): BreakerStep {
      const input: BreakerInput = { tNs: clock.t0Ns + tMs * 1e6, wallMs: clock.wall0 + tMs, verdicts: [], results: [], operator: [], ...o };
      const out = breakerStep(state, input, ports, pol);
      expect(out.state).toBe(state);
      for (const c of out.commands) commands.push({ ...c, tMs });
      events.push(...out.events);
      return out;
    },
    stateOf: (port: string) => portStates(state).find((p) => p.port === port)?.state ?? 'forwarding',
    kinds: () => events.map((e) => `${e.event}:${e.port}`),
  };
}

/**
 * Detector + breaker in a closed loop over a generated trace that reacts to link-downs: the
 * commands of one tick take effect during the next interval (an action takes ~0.2-3 ms, about one
 * sample). Returns what was commanded (with the trace's ms), journaled, and how many ticks had verdicts.
 */
export function closedLoop(spec: TraceSpec, ports: ReadonlyMap<string, PortPolicy>, ms: number, pol: Policy) {
  const gen = new TraceGen(spec);
  const det = initialDetectorState();
  const brk = initialBreakerState();
  const commands: Array<ActionRequest & { tMs: number }> = [];
  const events: JournalEvent[] = [];
  let pending: ActionRequest[] = [];
  let verdictTicks = 0;
  while (gen.tMs < ms) {
    const results = landOnTrace(gen.down, pending);
    pending = [];
    const tick = gen.next();
    const d = step(det, tick, ports, pol);
    if (d.verdicts.length) verdictTicks++;
    const out = breakerStep(brk, { tNs: tick.tNs, wallMs: WALL0 + gen.tMs, verdicts: d.verdicts, results, operator: [] }, ports, pol);
    for (const c of out.commands) commands.push({ ...c, tMs: gen.tMs });
    pending.push(...out.commands);
    events.push(...out.events);
  }
  return { commands, events, verdictTicks, down: gen.down };
}
