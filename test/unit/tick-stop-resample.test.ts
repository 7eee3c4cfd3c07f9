// A tick in which a link-down stops its bridge port samples again at once (issue 11, three-uplink
// escalation; session 12's lab probe): under a three-uplink storm the sampler's thread is starved
// and ticks come 2-8 ms apart, the stop lands inside a tick after its sample was read, and
// escalation counts only intervals measured wholly after the stop. Without a sample at the stop,
// the interval to the next tick straddles it and the second shut waits a whole tick longer.
import { describe, expect, it } from 'vitest';
import { initialBreakerState } from '../../agent/breaker/state.js';
import { createTick } from '../../agent/daemon/tick.js';
import { createWatchedPorts } from '../../agent/daemon/ports.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { ActionRequest, PortRates, TickSource } from '../../agent/types.js';

const UPLINKS = ['up1', 'up2', 'up3'];
/**
 * vm1 sends a multicast stream into br0 meanwhile: the uplinks are not the only ports taking
 * frames in, so the loop is cut one member at a time, judged on the evidence after each stop
 * (with nothing else taking frames in, three members go two at once: breaker twoCutsWhy).
 */
const VM_STREAM_PPS = 2000;

/**
 * Three uplinks of br0 into one switch (`down`: down from the start): a storm circles while two
 * or more forward (rx ≈ tx on each); a stopped uplink still receives, sends nothing. Ticks every periodMs; a link-down stops
 * its port during the breaker's step, actionMs after the tick's sample, and reports stage
 * 'stopped' at once, as the executor does (the admin-down's final result comes much later).
 */
function starvedUplinks(periodMs: number, actionMs: number, withClock: boolean, down: string[] = [], vmPps = VM_STREAM_PPS) {
  const policy = testPolicy();
  const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm' }, policy);
  let now = 1e12;
  const stopped = new Set<string>(down);
  const rates: PortRates[] = [...UPLINKS, 'vm1'].map((port) => ({ port, bridge: 'br0', dtMs: periodMs, rxPps: 0, txPps: 0, rxBps: 0, floodPps: 0, bcastPps: 0, valid: true }));
  let lastT = now;
  const source: TickSource = {
    id: 'sim',
    ports: () => ports,
    rates: () => rates,
    fresh: () => true,
    consume() {},
    close() {},
    collect(f) {
      const storm = UPLINKS.filter((p) => !stopped.has(p)).length >= 2;
      for (const r of rates) {
        r.dtMs = (f.tNs - lastT) / 1e6;
        r.valid = r.dtMs >= 0.2;
        const uplink = r.port !== 'vm1' && !down.includes(r.port);
        const vm = r.port === 'vm1' ? vmPps : 0;
        r.rxPps = storm && uplink ? 100_000 : 100 + vm;
        r.txPps = storm && !stopped.has(r.port) ? 100_000 : 100;
        r.floodPps = storm && uplink ? 99_000 : 10 + vm;
        r.bcastPps = r.floodPps;
      }
      if (storm) f.warm = true;
      lastT = f.tNs;
    },
  };
  const watched = createWatchedPorts(() => now);
  watched.add(source);
  const downs: Array<{ port: string; tMs: number }> = [];
  const tick = createTick({
    watched,
    policy: () => policy,
    wallMs: () => 1.7e12 + now / 1e6,
    breaker: initialBreakerState(),
    ...(withClock ? { now: () => now } : {}),
    out: {
      execute: (c: ActionRequest) => {
        if (c.kind !== 'link-down') return;
        now += actionMs * 1e6; // the bridge state is set synchronously, inside the tick
        stopped.add(c.port);
        downs.push({ port: c.port, tMs: now / 1e6 });
        tick.inbox.results.push({ kind: 'link-down', port: c.port, ok: true, via: 'netlink-brport-state', durationMs: actionMs, attempts: 1, verified: true, stage: 'stopped', stoppedNs: now, forwardingStoppedMs: actionMs });
      },
      record: () => {},
      intent: () => {},
      verify: () => {},
      recoveryDue: () => {},
    },
  });
  for (let i = 0; i < 60; i++) {
    tick.run(now);
    now = Math.max(now, lastT) + periodMs * 1e6;
  }
  return downs;
}

describe('tick: a sample at the stop of a link-down', () => {
  it('escalates on the second tick after the first stop, not the third (ticks 4 ms apart)', () => {
    const downs = starvedUplinks(4, 1, true);
    expect(downs.map((d) => d.port)).toEqual(['up1', 'up2']);
    // Stop of up1 at s; resample at s; ticks at s + 4 and s + 8 are the two whole intervals
    // after it (persistsAfter), and up2 stops actionMs after the second of them.
    expect(downs[1]!.tMs - downs[0]!.tMs).toBeCloseTo(8 + 1, 6);
  });

  it('without the clock (one sample per tick) the interval to the next tick straddles the stop: a tick later', () => {
    const downs = starvedUplinks(4, 1, false);
    expect(downs.map((d) => d.port)).toEqual(['up1', 'up2']);
    expect(downs[1]!.tMs - downs[0]!.tMs).toBeCloseTo(12 + 1, 6);
  });

  it('three uplinks and no other port taking frames in: two of them at the first verdict, in one tick', () => {
    const downs = starvedUplinks(4, 1, true, [], 0);
    expect(downs.map((d) => d.port)).toEqual(['up1', 'up2']);
    expect(downs[1]!.tMs - downs[0]!.tMs).toBeCloseTo(1, 6); // the second stop's own actionMs
  });

  it('a two-uplink loop is still shut once: the resample does not escalate to the last member', () => {
    // up3 is down from the start: only up1 and up2 loop, and once up1 stops nothing circles.
    const downs = starvedUplinks(4, 1, true, ['up3']);
    expect(downs.map((d) => d.port)).toEqual(['up1']);
  });
});
