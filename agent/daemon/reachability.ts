import type { Logger } from '../log.js';
import type { JournalEvent, Policy } from '../types.js';
import { createPinger, type Pinger } from '../actions/reachability.js';

// policy.reachability: did an automatic link-down cut the management path? A baseline check
// runs while nothing else is going on; 'unknown' until the first, 'down' when the target did not
// answer while nothing was being done (then a failed check after an action proves nothing, and
// is skipped). A check that fails after a link-down asks the breaker to undo it.

/** Baseline reachability check of policy.reachability.target, while nothing else is going on. */
const REACH_BASELINE_MS = 10_000;
/** A baseline check put off by a storm or an action in progress is tried again this soon. */
const REACH_RETRY_MS = 500;

export interface ReachabilityDeps {
  policy(): Policy;
  record(e: JournalEvent): void;
  log: Logger;
  /** Nothing going on: no storm being sampled, no action in flight or settling. */
  quiet(): boolean;
  /** Settles when the link-ups in flight have. */
  upsSettled(): Promise<void>;
  /** The link-down of `port` cut the path: the breaker undoes it. */
  undo(port: string, target: string): void;
  stopped(): boolean;
}

export type ReachabilityStatus = 'off' | { target: string; state: 'ok' | 'unknown' | 'reachability-down'; error?: string | null; lastCheckAt: string | null; lastRttMs: number | null };

export interface Reachability {
  /** Check the baseline now, if there is a target and nothing else is going on. */
  baseline(): void;
  /** After an automatic link-down of port. */
  verify(port: string): void;
  status(): ReachabilityStatus;
  close(): void;
}

type ReachState = { state: 'unknown' | 'up' | 'down' | 'unavailable'; target: string; at: string | null; rttMs: number | null; error: string | null };

export function createReachability(d: ReachabilityDeps): Reachability {
  let pinger: Pinger | null = null;
  let reach: ReachState = { state: 'unknown', target: '', at: null, rttMs: null, error: null };
  let baselineRunning = false;
  let retry: NodeJS.Timeout | null = null;
  const timer = setInterval(baseline, REACH_BASELINE_MS);

  function target(): string | null {
    const rc = d.policy().reachability;
    if (!rc) return null;
    if (reach.target !== rc.target) reach = { state: 'unknown', target: rc.target, at: null, rttMs: null, error: null };
    pinger ??= createPinger();
    return rc.target;
  }

  /** A check's answer moves the baseline; transitions are journaled once each. */
  function note(tgt: string, ok: boolean, rttMs: number | undefined, error: string | undefined, during: string): void {
    if (d.stopped() || reach.target !== tgt) return; // stopping (journal closed), or the policy changed meanwhile
    const was = reach.state;
    const next = error !== undefined ? 'unavailable' : ok ? 'up' : 'down';
    reach = { ...reach, state: next, at: new Date().toISOString(), rttMs: rttMs ?? null, error: error ?? null };
    if (next === was) return;
    const ts = reach.at!;
    const policyHash = d.policy().hash;
    if (next === 'down') {
      d.record({ ts, event: 'reachability-down', port: '', reason: `${tgt} does not answer (${during}): checks after automatic link-downs are skipped until it does`, policyHash, target: tgt });
    } else if (next === 'unavailable') {
      d.record({ ts, event: 'reachability-down', port: '', reason: `cannot check ${tgt}: ${error}; checks after automatic link-downs are skipped`, policyHash, target: tgt, error });
    } else if (was === 'down' || was === 'unavailable') {
      d.record({ ts, event: 'reachability-up', port: '', reason: `${tgt} answers again (${during}): link-downs are verified again`, policyHash, target: tgt });
    }
  }

  function baseline(): void {
    const tgt = target();
    if (tgt === null || baselineRunning || d.stopped()) return;
    // During a storm or an action the path may be congested or cut on purpose: not a baseline.
    if (!d.quiet()) {
      // Try again once things are quiet rather than a whole period later (a reload's new target).
      if (!retry) retry = setTimeout(() => ((retry = null), baseline()), REACH_RETRY_MS);
      return;
    }
    const rc = d.policy().reachability!;
    baselineRunning = true;
    pinger!
      .check(tgt, rc.timeoutMs, rc.tries)
      .then((o) => note(tgt, o.reachable, o.rttMs, o.error, 'baseline check'))
      .finally(() => (baselineRunning = false));
  }

  async function verify(port: string): Promise<void> {
    const tgt = target();
    if (tgt === null) return;
    if (reach.state === 'down' || reach.state === 'unavailable') {
      d.log.warn({ component: 'reachability', port, target: tgt, baseline: reach.state }, 'reachability check skipped: the target did not answer before the action either');
      return;
    }
    const rc = d.policy().reachability!;
    try {
      await d.upsSettled();
      const o = await pinger!.check(tgt, rc.timeoutMs, rc.tries);
      if (d.stopped()) return;
      if (o.error !== undefined) return note(tgt, false, undefined, o.error, `after link-down of ${port}`);
      if (o.reachable) {
        note(tgt, true, o.rttMs, undefined, `after link-down of ${port}`);
        d.log.info({ component: 'reachability', port, target: tgt, rttMs: o.rttMs, tries: o.tries }, 'management path intact after link-down');
        return;
      }
      d.log.error({ component: 'reachability', port, target: tgt, tries: o.tries, timeoutMs: rc.timeoutMs }, `link-down of ${port} cut reachability of ${tgt}: undoing it`);
      d.undo(port, tgt);
    } catch (err) {
      d.log.error({ component: 'reachability', port, target: tgt, err: (err as Error).message }, 'reachability check failed');
    }
  }

  return {
    baseline,
    verify: (port) => void verify(port),
    // 'reachability-down': the target did not answer while nothing was done, so checks after
    // automatic link-downs are skipped (they would undo good actions).
    status() {
      const rc = d.policy().reachability;
      if (!rc) return 'off';
      const state = reach.target !== rc.target ? 'unknown' : reach.state === 'up' ? 'ok' : reach.state === 'unknown' ? 'unknown' : 'reachability-down';
      return {
        target: rc.target,
        state,
        ...(reach.state === 'unavailable' ? { error: reach.error } : {}),
        lastCheckAt: reach.at,
        lastRttMs: reach.rttMs === null ? null : Math.round(reach.rttMs * 1000) / 1000,
      };
    },
    close() {
      clearInterval(timer);
      if (retry) clearTimeout(retry);
      pinger?.close();
    },
  };
}
