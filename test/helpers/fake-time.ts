// A hand-driven monotonic clock and timer queue for unit tests of the scheduler and the tick:
// timers fire in time order as `advance` moves the clock; `spend` is work done inside a callback.
import type { Clock, Timers } from '../../agent/daemon/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

export function fakeTime(startNs = 1e12) {
  let now = startNs;
  let seq = 0;
  const queue: Pending[] = [];
  const clock: Clock = { now: () => now };
  const timers: Timers = {
    set(fn, ms) {
      const p = { at: now + Math.max(0, ms) * 1e6, seq: seq++, fn };
      queue.push(p);
      return p;
    },
    clear(h) {
      const i = queue.indexOf(h as Pending);
      if (i >= 0) queue.splice(i, 1);
    },
  };
  return {
    clock,
    timers,
    /** Move the clock by ms, firing every timer due on the way, in order. */
    advance(ms: number): void {
      const end = now + ms * 1e6;
      for (;;) {
        queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const next = queue[0];
        if (!next || next.at > end) break;
        queue.shift();
        now = Math.max(now, next.at);
        next.fn();
      }
      now = end;
    },
    /** Time passing without timers firing (work inside a tick, a stalled event loop). */
    spend(ms: number): void {
      now += ms * 1e6;
    },
    nowMs: () => now / 1e6,
    pending: () => queue.length,
  };
}
