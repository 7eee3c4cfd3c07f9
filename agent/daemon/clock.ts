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
