// Pay the breaker's first-storm costs at start (issue 11 item 4), as detect/warmup.ts does for
// the detector: a first storm against an idle agent ran the trip path (member choice, evidence,
// events), the result and settle paths for the first time, interpreted (~1.2 ms of a cold
// stop, traced in the lab). Here the detector's synthetic storms are fed on into a throwaway
// breaker state whose commands are answered at once, so trip, settle, escalate, flood cut and
// restore all run before a real storm needs them. Pure: no clock, no I/O; nothing outlives the call.
import type { ActionResult, PortPolicy, Policy, Verdict } from '../types.js';
import { WARM_PHASES, warmPorts, warmUpDetector } from '../detect/warmup.js';
import { breakerBusy, breakerStep, initialBreakerState, portStates, type BreakerInput, type BreakerState, type OperatorCommand } from './state.js';

export interface BreakerWarmUp {
  /** Link-downs and link-ups the breaker asked for, and the events it would have journaled. */
  downs: number;
  ups: number;
  events: Record<string, number>;
  /** Bytes of those events as JSON (the journal's serialization ran on them too). */
  jsonBytes: number;
}


/** Run the detector's warm-up storms through a fresh breaker; see the top of the file. */
export function warmUpBreaker(policy: Policy, portPolicy: PortPolicy, ticks = 3000): BreakerWarmUp {
  const ports = warmPorts(portPolicy);
  // A fresh state per synthetic storm (the shut budget would refuse the later ones), and an
  // operator restore of what is tripped half way through each.
  const phase = Math.max(1, Math.floor(ticks / WARM_PHASES));
  let st = initialBreakerState();
  const out: BreakerWarmUp = { downs: 0, ups: 0, events: {}, jsonBytes: 0 };
  let results: ActionResult[] = [];
  let n = 0;
  const input: BreakerInput = { tNs: 0, wallMs: 0, verdicts: [], results, operator: [] };
  warmUpDetector(policy, portPolicy, ticks, (verdicts: readonly Verdict[], tNs: number) => {
    const i = n++;
    if (i % phase === 0) st = initialBreakerState();
    const half = i % phase === phase >> 1;
    const operator = half ? restores(st) : [];
    // The phase's second story (the three-member loop's: one cut, then the escalation on the
    // evidence) needs a budget of its own: the first spent it.
    if (half) st.autoShuts.length = 0;
    if (verdicts.length === 0 && results.length === 0 && operator.length === 0 && !breakerBusy(st, tNs)) return;
    input.tNs = tNs;
    input.wallMs = tNs / 1e6;
    input.verdicts = verdicts;
    input.results = results;
    input.operator = operator;
    const step = breakerStep(st, input, ports, policy);
    results = step.commands.map((c) => {
      if (c.kind === 'link-down') out.downs++;
      else out.ups++;
      return { kind: c.kind, port: c.port, ok: true, via: 'warm-up', durationMs: 0.2, attempts: 1, verified: true, ...(c.kind === 'link-down' ? { stoppedNs: tNs, forwardingStoppedMs: 0.1 } : {}) };
    });
    for (const e of step.events) {
      out.events[e.event] = (out.events[e.event] ?? 0) + 1;
      out.jsonBytes += JSON.stringify(e).length;
    }
  });
  return out;
}

/** An operator restore of every port the warm-up left tripped. */
function restores(st: BreakerState): OperatorCommand[] {
  return portStates(st)
    .filter((p) => p.state === 'tripped')
    .map((p) => ({ kind: 'restore', port: p.port, reason: 'warm-up', by: 'warm-up' }));
}
