import type { JournalEvent } from '../types.js';
import { initialBreakerState, restoreHeld, restoreTripped, type BreakerState } from '../breaker/state.js';
import { heldPorts, trippedPorts } from '../journal/journal.js';

/**
 * The breaker as the journal left it: a restart never re-enables a tripped port, and holds
 * outlive it with their expiry (one already past expires on the first step). Pure.
 */
export function breakerFromJournal(events: readonly JournalEvent[]): BreakerState {
  let brk = initialBreakerState();
  const tripped = trippedPorts(events);
  if (tripped.size > 0) {
    brk = restoreTripped(brk, [...tripped.values()].map((t) => ({ port: t.port, evidence: t.event.evidence, since: t.since })));
  }
  const held = heldPorts(events);
  if (held.size > 0) {
    const byText = (b: unknown): string | undefined =>
      typeof b === 'string' ? b : b && typeof b === 'object' && 'uid' in b ? `uid ${String((b as { uid: unknown }).uid)}` : undefined;
    brk = restoreHeld(brk, [...held.values()].map((h) => ({ port: h.port, since: h.since, reason: h.reason, untilMs: h.untilMs, ...(byText(h.by) !== undefined ? { by: byText(h.by)! } : {}) })));
  }
  return brk;
}
