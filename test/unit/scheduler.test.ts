import { describe, expect, it } from 'vitest';
import { createScheduler, FDB_WAKE_REARM_MS, IDLE_MS_WITHOUT_TRIPWIRE, TRIPWIRE_BURST_MS, TRIPWIRE_REARM_MS, TRIPWIRE_WINDOW_MS, THREAD_MOVES_WAKE_MS, type Waker } from '../../agent/daemon/scheduler.js';
import type { TickOutcome } from '../../agent/daemon/tick.js';
import { testPolicy } from '../../agent/testing/policy.js';
import { fakeTime } from '../helpers/fake-time.js';
import { nodeTimers } from '../../agent/daemon/clock.js';

// The scheduler alone, with a fake clock and timers and a scripted tick: which periods it keeps,
// when it goes fast and back, what the tripwire and a recovery timer do, and how lag is measured.

const sampling = testPolicy().sampling; // idleMs 100, activeMs 1, activeHoldMs 2000

function setup(o: { during?: (n: number) => void; waker?: boolean; warmAt?: (ms: number) => boolean; probing?: () => boolean; throwAt?: (n: number) => boolean; workMs?: number; warmPps?: number } = {}) {
  const time = fakeTime();
  const t0 = time.nowMs();
  const ticks: number[] = [];
  const errors: string[] = [];
  let recoveries = 0;
  const outcome: TickOutcome = { warm: false, probing: false, verdicts: 0 };
  const s = createScheduler({
    clock: time.clock,
    timers: time.timers,
    sampling: () => sampling,
    tick: (tNs) => {
      const ms = tNs / 1e6 - t0;
      ticks.push(ms);
      if (o.throwAt?.(ticks.length)) throw new Error(`tick ${ticks.length} failed`);
      if (o.workMs) time.spend(o.workMs);
      o.during?.(ticks.length);
      outcome.warm = o.warmAt?.(ms) ?? false;
      outcome.probing = o.probing?.() ?? false;
      return outcome;
    },
    onError: (e) => errors.push(e.message),
    onRecoveryDue: () => recoveries++,
    warmPps: () => o.warmPps ?? 5000,
  });
  let armed = false;
  const waker: Waker & { fire(): void; arms: Array<{ minFrames: number; windowNs: number }> } = {
    arms: [],
    arm(minFrames, windowNs) {
      armed = true;
      waker.arms.push({ minFrames, windowNs });
    },
    get armed() {
      return armed;
    },
    fire() {
      armed = false;
      s.onWaker();
    },
  };
  if (o.waker !== false) s.useWaker(waker);
  const gaps = (from: number, to: number): number[] => {
    const w = ticks.filter((t) => t >= from && t <= to);
    return w.slice(1).map((t, i) => Math.round((t - w[i]!) * 1000) / 1000);
  };
  return { time, s, ticks, errors, waker, gaps, recoveries: () => recoveries, t0 };
}

describe('scheduler periods', () => {
  it('ticks every idleMs while quiet, from tick start to tick start (work does not stretch the period)', () => {
    const { time, s, ticks, gaps } = setup({ workMs: 3 });
    s.start();
    time.advance(1000);
    expect(ticks.length).toBe(11);
    expect(new Set(gaps(0, 1000))).toEqual(new Set([100]));
    expect(s.stats.periodMs).toBe(100);
  });

  it('without a tripwire the idle period is capped (nothing else wakes it early)', () => {
    const { time, s, gaps } = setup({ waker: false });
    s.start();
    time.advance(100);
    expect(new Set(gaps(0, 100))).toEqual(new Set([IDLE_MS_WITHOUT_TRIPWIRE]));
    expect(s.idleMs()).toBe(IDLE_MS_WITHOUT_TRIPWIRE);
  });

  it('goes to activeMs on a warm tick, stays there activeHoldMs after the last one, then back to idle', () => {
    // Warm from 300 ms to 500 ms.
    const { time, s, gaps, ticks } = setup({ warmAt: (ms) => ms >= 300 && ms < 500 });
    s.start();
    time.advance(3500);
    expect(new Set(gaps(0, 300))).toEqual(new Set([100]));
    const firstWarm = ticks.find((t) => t >= 300)!;
    expect(firstWarm).toBe(300);
    // Fast from the first warm tick until activeHoldMs after the last warm one (~500 + 2000).
    expect(new Set(gaps(firstWarm, 2499))).toEqual(new Set([sampling.activeMs]));
    const lastFast = ticks.filter((t, i) => i > 0 && t - ticks[i - 1]! === sampling.activeMs).at(-1)!;
    expect(lastFast).toBeGreaterThanOrEqual(2499);
    expect(lastFast).toBeLessThanOrEqual(2501);
    expect(new Set(gaps(2600, 3500))).toEqual(new Set([100]));
    expect(s.stats.periodMs).toBe(100);
  });

  it('a recovery probe keeps the active rate while it runs, and only then', () => {
    let probing = false;
    const { time, s, gaps } = setup({ probing: () => probing });
    s.start();
    time.advance(200);
    probing = true;
    s.runNow();
    time.advance(50);
    expect(new Set(gaps(201, 250))).toEqual(new Set([sampling.activeMs]));
    probing = false;
    time.advance(300);
    expect(new Set(gaps(260, 550))).toEqual(new Set([100]));
  });

  it('a wake from inside a tick runs one more tick at once and keeps one timer chain', () => {
    // A link-down's first stage wakes the scheduler from inside the breaker's step. That used to
    // start a second chain: after the first storm every period held two ticks ~0.1 ms apart.
    let s: ReturnType<typeof setup>['s'] | null = null;
    const st = setup({ during: (n) => (n === 3 ? s!.runNow() : undefined) });
    s = st.s;
    st.s.start();
    st.time.advance(1000);
    expect(st.ticks.slice(0, 5)).toEqual([0, 100, 200, 200, 300]);
    expect(st.time.pending()).toBe(1);
    expect(new Set(st.gaps(300, 1000))).toEqual(new Set([100]));
  });

  it('runNow runs a tick at once, and a failing tick is reported while the loop goes on', () => {
    const { time, s, ticks, errors } = setup({ throwAt: (n) => n === 2 });
    s.start();
    time.advance(50);
    s.runNow();
    time.advance(0);
    expect(ticks).toEqual([0, 50]);
    expect(errors).toEqual(['tick 2 failed']);
    time.advance(100);
    expect(ticks).toEqual([0, 50, 150]);
  });
});

describe('scheduler lag', () => {
  it('measures how late a tick started against its period (event loop stalled 40 ms)', () => {
    const { time, s } = setup();
    s.start();
    time.advance(250);
    expect(s.stats.maxLagMs).toBe(0);
    time.spend(90); // the event loop is busy until 340: the tick due at 300 starts 40 ms late
    time.advance(0);
    expect(s.stats.maxLagMs).toBeCloseTo(40, 6);
    expect(s.stats.lastTickAt / 1e6).toBeCloseTo(time.nowMs(), 6);
    time.advance(500); // on time again: the worst lag stays
    expect(s.stats.maxLagMs).toBeCloseTo(40, 6);
    expect(s.stats.lateTicks).toBe(1);
    time.spend(69); // due at 900, starts at 908: under LATE_MS, not counted
    time.advance(0);
    expect(s.stats.lateTicks).toBe(1);
  });

  it('counts ticks per second when asked', () => {
    const { time, s } = setup();
    s.start();
    time.advance(1000);
    s.measureRate();
    expect(s.stats.ticks).toBe(11);
    expect(s.stats.ticksPerSec).toBeCloseTo(11, 6);
  });
});

describe('scheduler and the tripwire', () => {
  it('a burst behind the tripwire starts per-port ticks at once (no timer, no counter read), activeMs apart', () => {
    const { time, s, ticks, waker } = setup();
    s.start();
    time.advance(20);
    expect(waker.armed).toBe(true); // armed after the first idle tick
    waker.fire();
    time.advance(0);
    expect(ticks).toEqual([0, 20]);
    time.advance(TRIPWIRE_BURST_MS);
    expect(ticks.length).toBe(2 + TRIPWIRE_BURST_MS);
    // Nothing warm came: back to idle after the burst, re-armed.
    time.advance(200);
    expect(ticks.filter((t) => t > 30 && t < 120)).toEqual([]);
    expect(waker.armed).toBe(true);
  });

  it('is armed for a burst at the lowest falling edge: warmPps over TRIPWIRE_WINDOW_MS, at least 2 frames', () => {
    for (const [warmPps, minFrames] of [
      [5000, 5],
      [20_000, 20],
      [300, 2],
    ] as const) {
      const { time, s, waker } = setup({ warmPps });
      s.start();
      time.advance(1);
      expect(waker.arms.at(-1)).toEqual({ minFrames, windowNs: TRIPWIRE_WINDOW_MS * 1e6 });
      s.stop();
    }
  });

  it('re-arms no sooner than REARM_MS after it fired, and a fire while sampling fast adds no tick', () => {
    const { time, s, ticks, waker } = setup({ warmAt: (ms) => ms >= 20 && ms < 22 });
    s.start();
    time.advance(20);
    const arms = waker.arms.length;
    waker.fire();
    time.advance(1);
    waker.fire(); // sampling fast: nothing more
    time.advance(0);
    const fast = ticks.filter((t) => t >= 20 && t <= 21).length;
    expect(fast).toBe(2);
    time.advance(TRIPWIRE_REARM_MS - 2);
    expect(waker.armed).toBe(false);
    time.advance(sampling.activeHoldMs + 200);
    expect(waker.armed).toBe(true);
    expect(waker.arms.length).toBe(arms + 1);
  });
});

describe('scheduler FDB wake', () => {
  it('a MAC move starts per-port ticks at once (not at the next idle tick), at most one burst per FDB_WAKE_REARM_MS', () => {
    const { time, s, ticks } = setup();
    s.start();
    time.advance(20);
    s.onMoves();
    time.advance(1);
    expect(ticks[1]).toBeLessThanOrEqual(21); // the flap is judged now, not at 100 ms
    time.advance(TRIPWIRE_BURST_MS);
    const burst = ticks.filter((t) => t >= 20 && t <= 20 + TRIPWIRE_BURST_MS + 1).length;
    expect(burst).toBeGreaterThanOrEqual(TRIPWIRE_BURST_MS);
    // More moves right after: no new burst before FDB_WAKE_REARM_MS (a bond flapping all day).
    const n = ticks.length;
    s.onMoves();
    time.advance(FDB_WAKE_REARM_MS - TRIPWIRE_BURST_MS - 3);
    expect(ticks, JSON.stringify(ticks)).toHaveLength(n);
    time.advance(3);
    s.onMoves();
    time.advance(1);
    expect(ticks.length).toBeGreaterThan(n);
    // Nothing warm came: back to idle.
    time.advance(300);
    expect(s.stats.periodMs).toBe(sampling.idleMs);
  });
});

describe('scheduler FDB wake while sampling fast', () => {
  it('a MAC move ticks at once also when a tripwire burst already runs (its lines come ~2 ms after the wake), once per FDB_WAKE_REARM_MS', () => {
    const { time, s, ticks, waker } = setup();
    s.start();
    time.advance(20);
    waker.fire(); // the storm's first frames: per-port ticks, 1 ms apart
    time.advance(0);
    const woke = ticks.length;
    time.advance(0.4);
    s.onMoves(); // the monitor's first lines, mid-period
    time.advance(0);
    // Judged now, not at the next period (20 + 1 ms); old: nothing until then.
    expect(ticks).toHaveLength(woke + 1);
    expect(ticks.at(-1)!).toBeCloseTo(20.4, 6);
    // More lines right after: the period goes on as before, no extra tick per chunk of lines.
    time.advance(0.3);
    s.onMoves();
    time.advance(0);
    expect(ticks).toHaveLength(woke + 1);
  });
});

describe('scheduler wake by the tripwire thread\'s moves', () => {
  it('they start no burst from idle (at a storm\'s onset the tripwire wakes), but bring back one that ended while the flap goes on, once per FDB_WAKE_REARM_MS', () => {
    const { time, s, ticks, waker } = setup();
    s.start();
    time.advance(20);
    const idle = ticks.length;
    s.onMoves(true); // a storm's first moves, seen by the thread before its frames fire the tripwire
    time.advance(0.5);
    expect(ticks).toHaveLength(idle);
    waker.fire(); // the tripwire's wake: per-port ticks
    time.advance(0);
    expect(ticks).toHaveLength(idle + 1);
    s.onMoves(true); // while sampling fast: nothing more
    time.advance(0);
    expect(ticks).toHaveLength(idle + 1);
    // A slow loop: no port warm, the burst ends and the sampler is back at its idle rate.
    time.advance(TRIPWIRE_BURST_MS + 2);
    expect(s.stats.periodMs).toBe(sampling.idleMs);
    const after = ticks.length;
    s.onMoves(true); // the flap goes on: per-port ticks again at once, not at the next idle tick
    time.advance(0);
    expect(ticks).toHaveLength(after + 1);
    // ...at most one burst per FDB_WAKE_REARM_MS (a host whose MACs move all the time).
    time.advance(TRIPWIRE_BURST_MS + 2);
    const n = ticks.length;
    s.onMoves(true);
    time.advance(0);
    expect(ticks).toHaveLength(n);
    // Long after the last wake: the thread's moves alone start nothing (no wake to continue).
    time.advance(THREAD_MOVES_WAKE_MS + FDB_WAKE_REARM_MS);
    const m = ticks.length;
    s.onMoves(true);
    time.advance(0.5);
    expect(ticks).toHaveLength(m);
  });
});

describe('scheduler recovery wake', () => {
  it('wakes the breaker just after a recovery probe is due, once per due time', () => {
    const { time, s, recoveries } = setup();
    s.start();
    s.wakeAt(time.clock.now() + 250e6);
    s.wakeAt(time.clock.now() + 250e6); // same time: not armed twice
    time.advance(250);
    expect(recoveries()).toBe(0);
    time.advance(1);
    expect(recoveries()).toBe(1);
    s.wakeAt(Infinity);
    time.advance(1000);
    expect(recoveries()).toBe(1);
  });

  it('stop clears every timer', () => {
    const { time, s, ticks } = setup();
    s.start();
    s.wakeAt(time.clock.now() + 50e6);
    s.stop();
    time.advance(1000);
    expect(ticks).toEqual([0]);
    expect(time.pending()).toBe(0);
  });
});

describe('node timers (the daemon edge)', () => {
  it('0 ms runs at the next turn of the event loop, before a 1 ms timer set earlier; clear works for both', async () => {
    const order: string[] = [];
    setTimeout(() => order.push('setTimeout 1'), 1);
    nodeTimers.set(() => order.push('now'), 0);
    const cleared = nodeTimers.set(() => order.push('cleared now'), 0);
    nodeTimers.clear(cleared);
    const clearedLater = nodeTimers.set(() => order.push('cleared later'), 5);
    nodeTimers.clear(clearedLater);
    // Node's own setTimeout(0) is a 1 ms timer: it runs after the 1 ms one set before it.
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['now', 'setTimeout 1']);
  });
});
