import { describe, expect, it } from 'vitest';
import { initialBreakerState } from '../../agent/breaker/state.js';
import { createTick } from '../../agent/daemon/tick.js';
import { createWatchedPorts } from '../../agent/daemon/ports.js';
import { createScheduler, type Scheduler } from '../../agent/daemon/scheduler.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { JournalEvent, PortRates, TickSource } from '../../agent/types.js';
import { fakeTime } from '../helpers/fake-time.js';

// The tick and the scheduler together, on a fake clock, over a simulated kvm loop: up1 and up2
// of br0 cabled into one L2 domain carry a storm whenever both are up and a frame circulates.
// Link commands land 3 ms after they are issued. This is the daemon's loop without the host.

function simulatedLoop() {
  const policy = testPolicy();
  const ports = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm' }, policy);
  for (const p of ports.values()) if (p.role === 'uplink') p.recovery = { mode: 'auto', cooldownMs: 500, probeMs: 500, backoff: 2, maxTries: 3 };
  const up: Record<string, boolean> = { up1: true, up2: true, vm1: true };
  let storm = false;
  const rates: PortRates[] = ['up1', 'up2', 'vm1'].map((port) => ({ port, bridge: 'br0', dtMs: 1, rxPps: 0, txPps: 0, rxBps: 0, floodPps: 0, bcastPps: 0, valid: true }));
  const source: TickSource = {
    id: 'sim',
    ports: () => ports,
    rates: () => rates,
    fresh: () => true,
    consume() {},
    close() {},
    collect(f) {
      storm = storm && up.up1! && up.up2!; // an open loop ends the storm
      for (const r of rates) {
        const member = storm && r.port !== 'vm1';
        // rx ≈ tx on each member, slightly out of step (as in the lab's 98k/101k).
        const share = r.port === 'up1' ? 0.98 : 1.01;
        r.rxPps = member ? 100_000 * share + 300 : 300;
        r.txPps = storm ? 100_000 * (2 - share) + 300 : 300;
        r.floodPps = member ? 100_000 * share : 10;
        r.bcastPps = r.floodPps;
        if (member) f.warm = true;
      }
    },
  };
  const time = fakeTime();
  const events: JournalEvent[] = [];
  const watched = createWatchedPorts(time.clock.now);
  watched.add(source);
  let scheduler: Scheduler | null = null;
  const wake = (): void => {
    tick.busy(time.clock.now());
    scheduler!.runNow();
  };
  const tick = createTick({
    watched,
    policy: () => policy,
    wallMs: () => 1.7e12 + time.nowMs(),
    breaker: initialBreakerState(),
    out: {
      execute: (c) =>
        time.timers.set(() => {
          up[c.port] = c.kind === 'link-up';
          tick.inbox.results.push({ kind: c.kind, port: c.port, ok: true, via: 'sim', durationMs: 3, attempts: 1, verified: true });
          wake();
        }, 3),
      record: (e) => events.push(e),
      intent: () => {},
      verify: () => {},
      recoveryDue: (t) => scheduler!.wakeAt(t),
    },
  });
  scheduler = createScheduler({ clock: time.clock, timers: time.timers, sampling: () => policy.sampling, tick: (t) => tick.run(t), onError: (e) => { throw e; }, onRecoveryDue: wake, warmPps: () => 5000 });
  const until = (pred: () => boolean, maxMs: number): boolean => {
    for (let i = 0; i < maxMs && !pred(); i++) time.advance(1);
    return pred();
  };
  return { time, events, up, scheduler, startStorm: () => (storm = true), until, story: () => events.map((e) => `${e.event}:${e.port}`) };
}

describe('pipeline: tick + scheduler over a simulated loop', () => {
  it('shuts one member within a few ms at the active rate, then probes after the cooldown; a storm during the probe re-trips at once', () => {
    const s = simulatedLoop();
    s.scheduler.start();
    s.time.advance(250);
    const t0 = s.time.nowMs();
    s.startStorm();
    expect(s.until(() => s.events.some((e) => e.event === 'trip'), 300)).toBe(true);
    // Idle ticks are 10 ms apart here (no tripwire): the storm is seen at the next one, then
    // judged at 1 ms (holdSamples) and shut 3 ms later.
    expect(s.time.nowMs() - t0).toBeLessThan(10 + 10);
    expect(s.up).toMatchObject({ up1: false, up2: true });
    expect(s.until(() => s.events.some((e) => e.event === 'probe'), 700)).toBe(true);
    s.time.advance(10); // the probe's link-up lands
    expect(s.up.up1).toBe(true);
    s.startStorm();
    const t1 = s.time.nowMs();
    expect(s.until(() => s.events.filter((e) => e.event === 'trip').length === 2, 200)).toBe(true);
    expect(s.time.nowMs() - t1).toBeLessThan(10);
    expect(s.events.filter((e) => e.event === 'trip')[1]!.reason).toBe('storm still present after recovery probe 1');
    expect(s.story()).toEqual(['trip:up1', 'probe:up1', 'trip:up1']);
    expect(s.up).toMatchObject({ up1: false, up2: true });
  });

  it('a quiet probe ends in restore after probeMs, and the sampler goes back to idle after activeHoldMs', () => {
    const s = simulatedLoop();
    s.scheduler.start();
    s.time.advance(250);
    s.startStorm();
    expect(s.until(() => s.events.some((e) => e.event === 'probe'), 1000)).toBe(true);
    expect(s.until(() => s.events.some((e) => e.event === 'restore'), 600)).toBe(true);
    expect(s.story()).toEqual(['trip:up1', 'probe:up1', 'restore:up1']);
    expect(s.up.up1).toBe(true);
    expect(s.scheduler.stats.periodMs).toBe(1);
    s.time.advance(2500);
    expect(s.scheduler.stats.periodMs).toBe(s.scheduler.idleMs()); // 10: no tripwire here
  });
});
