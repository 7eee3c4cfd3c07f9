// Time as the daemon's parts see it, injected so a unit test can drive them by hand.

/** Monotonic time, ns. */
export interface Clock {
  now(): number;
}

/** setTimeout / clearTimeout. */
export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/**
 * Node's timers, where 0 ms means now: setTimeout makes anything under 1 ms a 1 ms timer on
 * libuv's ms clock (1-2 ms in practice), and every wake paid that before its tick (a tripwire
 * burst, a MAC move, an action's result that the next loop member's verdict waits on).
 */
export const nodeTimers: Timers = {
  set: (fn, ms) => (ms > 0 ? setTimeout(fn, ms) : { immediate: setImmediate(fn) }),
  clear: (h) => (isImmediate(h) ? clearImmediate(h.immediate) : clearTimeout(h as NodeJS.Timeout)),
};

const isImmediate = (h: unknown): h is { immediate: NodeJS.Immediate } => typeof h === 'object' && h !== null && 'immediate' in h;
