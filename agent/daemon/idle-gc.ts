import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// While the agent idles, empty V8's young generation now and then (a minor GC: well under 1 ms
// when little lives there), so that a storm starts with an empty one. Otherwise the storm's own
// allocation (FDB monitor lines, moves, events) fills what the idle ticks left, and a scavenge
// (1-8 ms on a loaded machine) lands in the storm's first milliseconds: at a three-uplink loop's
// escalation in 2 of 4 cold storms (lab, --trace-gc, session 16). Idle is what the agent is for
// months; a scavenge then costs nothing anyone waits for.

export type MinorGc = () => void;

/** V8's gc() asked for a minor collection, or null where the runtime does not give it. */
export function minorGc(): MinorGc | null {
  try {
    // Exposed to contexts made after the flag is set: the agent's own globals stay as they are.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('typeof gc === "function" ? gc : undefined') as ((o: { type: 'minor' }) => void) | undefined;
    return gc === undefined ? null : () => gc({ type: 'minor' });
  } catch {
    return null;
  }
}

export interface IdleGc {
  /** Called now and then (the housekeeping tick): collects once the sampler has idled quietMs. Returns whether it collected. */
  tick(nowMs: number, active: boolean): boolean;
}

export function createIdleGc(gc: MinorGc | null, quietMs = 2000): IdleGc {
  let lastActive = -Infinity;
  return {
    tick(nowMs, active) {
      if (active) lastActive = nowMs;
      if (gc === null || active || nowMs - lastActive < quietMs) return false;
      gc();
      return true;
    },
  };
}
