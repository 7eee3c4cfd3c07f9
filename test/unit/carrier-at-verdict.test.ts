import { describe, expect, it } from 'vitest';
import { initialBreakerState, RECENT_JOIN_MS } from '../../agent/breaker/state.js';
import { CARRIER_FRESH_MS, carrierJoinChecks, createJoinWatch, createWatchedPorts } from '../../agent/daemon/ports.js';
import { createTick } from '../../agent/daemon/tick.js';
import { createLocalSource } from '../../agent/sources/local.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { breakerDriver, T0, verdictsFor } from '../helpers/breaker-driver.js';
import type { ActionRequest, Counters, CounterReader, PortInfo } from '../../agent/types.js';
import type { Logger } from '../../agent/log.js';

// A cable plugged into a port already in the bridge closes a loop; the link monitor's line that
// would list the carrier-up again is late (the storm starves it), so the listing still has the
// old carrier count when the loop's verdict comes. At that verdict, before the breaker picks,
// the bridge's carrier counts are read (JoinWatch.carrierAtVerdict, through an injected reader)
// and a rise makes its port the joiner: cut, rather than the uplink first by name.

const policy = testPolicy();
const infos: PortInfo[] = [
  { name: 'up1', ifindex: 2, bridge: 'br0' },
  { name: 'up2', ifindex: 3, bridge: 'br0' },
  { name: 'vm1', ifindex: 4, bridge: 'br0' },
  { name: 'up3', ifindex: 5, bridge: 'br1' },
];
const hostNames = infos.map((p) => p.name);
const silent: Logger = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Logger;

/** A fake carrier_up_count reader that records what it was asked. */
function carrierReader(start: Record<string, number | null>) {
  const ups = new Map(Object.entries(start));
  const read: string[] = [];
  return { ups, read, fn: (name: string) => (read.push(name), ups.get(name) ?? null) };
}

describe('JoinWatch.carrierAtVerdict', () => {
  it("reads only the verdict's bridge's listed members; a rise is a carrier join at the verdict's time, kept by the next listing", () => {
    const c = carrierReader({ up1: 3, up2: 1, vm1: 1, up3: 1 });
    const w = createJoinWatch(c.fn);
    w(infos, hostNames, 1e9);
    c.read.length = 0;
    // Nothing rose: nothing stamped, nothing changed.
    expect(w.carrierAtVerdict('br0', 2e9)).toBeNull();
    expect(c.read.sort()).toEqual(['up1', 'up2', 'vm1']);
    c.ups.set('up2', 2); // the cable: the kernel counted one carrier-up
    c.ups.set('up3', 2); // on another bridge: not this verdict's business
    c.read.length = 0;
    const j = w.carrierAtVerdict('br0', 3e9);
    expect(c.read).not.toContain('up3');
    expect([...j!]).toEqual([['up2', { atNs: 3e9, by: 'carrier', afterNs: 1e9 }]]);
    // The same count again: no second join (the stored count moved on).
    expect(w.carrierAtVerdict('br0', 4e9)).toBeNull();
    // The listing that comes late keeps the verdict's stamp, and sees up3's own rise.
    expect([...w(infos, hostNames, 5e9)]).toEqual([
      ['up2', { atNs: 3e9, by: 'carrier', afterNs: 1e9 }],
      ['up3', { atNs: 5e9, by: 'carrier' }],
    ]);
  });

  it('an unknown count (older kernel, failed read) or an unlisted bridge is never a join', () => {
    const c = carrierReader({ up1: null, up2: 1 });
    const w = createJoinWatch(c.fn);
    expect(w.carrierAtVerdict('br0', 0)).toBeNull(); // before any listing
    w(infos, hostNames, 10e9);
    c.ups.set('up1', 5);
    c.ups.set('up2', null);
    expect(w.carrierAtVerdict('br0', 20e9)).toBeNull();
    c.read.length = 0;
    expect(w.carrierAtVerdict('esx1/vSwitch0', 30e9)).toBeNull();
    expect(c.read).toEqual([]);
  });
});

describe('JoinWatch: members only, and not twice within CARRIER_FRESH_MS', () => {
  it("a verdict reads its members only; a port read at a verdict or while hot is not read again within CARRIER_FRESH_MS", () => {
    const c = carrierReader({ up1: 1, up2: 1, vm1: 1, up3: 1 });
    const w = createJoinWatch(c.fn);
    w(infos, hostNames, 0);
    c.read.length = 0;
    const fresh = CARRIER_FRESH_MS * 1e6;
    expect(w.carrierAtVerdict('br0', 1e6, ['up1', 'up2'])).toBeNull();
    expect(c.read.sort()).toEqual(['up1', 'up2']); // vm1 is no member: it cannot have closed this loop
    c.read.length = 0;
    c.ups.set('up2', 2);
    // Within the window: nothing read, so the rise waits (for the listing, or the next read).
    expect(w.carrierAtVerdict('br0', 1e6 + fresh - 1, ['up1', 'up2'])).toBeNull();
    expect(c.read).toEqual([]);
    expect([...w.carrierAtVerdict('br0', 1e6 + fresh, ['up1', 'up2'])!]).toEqual([['up2', { atNs: 1e6 + fresh, by: 'carrier', afterNs: 0 }]]);
    c.read.length = 0;
    // Hot ports: read now, so the verdict right after reads nothing.
    c.ups.set('up1', 2);
    expect([...w.carrierOfHot(['up1', 'up3'], 50e6)!].map(([n]) => n)).toEqual(['up2', 'up1']);
    expect(c.read.sort()).toEqual(['up1', 'up3']);
    c.read.length = 0;
    expect(w.carrierAtVerdict('br0', 51e6, ['up1', 'up2'])).toBeNull();
    expect(c.read).toEqual(['up2']); // up1 was read hot 1 ms ago; up2 last at 11 ms
    // A listing starts afresh: its own read is no check (a rise right after it must be seen).
    w(infos, hostNames, 52e6);
    c.read.length = 0;
    w.carrierAtVerdict('br0', 53e6, ['up1']);
    expect(c.read).toEqual(['up1']);
    expect(w.carrierOfHot([], 54e6)).toBeNull();
  });
});

describe('carrierJoinChecks (the daemon side)', () => {
  it("stamps the riser on the local source's ports and re-merges; without a rise the ports map stays the same object", () => {
    const c = carrierReader({ up1: 1, up2: 1, vm1: 1, up3: 1 });
    const w = createJoinWatch(c.fn);
    const local = createLocalSource([], 0);
    const watched = createWatchedPorts(() => 0);
    watched.add(local);
    local.watch(infos, testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm', up3: 'uplink' }, policy));
    w(infos, hostNames, 0);
    watched.merge();
    const at = carrierJoinChecks(local, () => watched.merge(), w, silent).atVerdict;
    const before = watched.all();
    at('br0', 7e6);
    expect(watched.all()).toBe(before);
    c.ups.set('up2', 2);
    at('br0', 20e6);
    expect(watched.all().get('up2')).toMatchObject({ joinedNs: 20e6, joinedBy: 'carrier', joinedAfterNs: 0 });
    expect(watched.all().get('up1')!.joinedNs).toBeUndefined();
    expect(local.infos().map((p) => p.name)).toEqual(['up1', 'up2', 'vm1', 'up3']);
  });

  it('a reader that throws leaves the ports as they were and says so: the breaker still runs', () => {
    const errors: string[] = [];
    const log = { ...silent, error: (_o: object, m: string) => errors.push(m) } as unknown as Logger;
    const w = createJoinWatch(() => 1);
    w(infos, hostNames, 0);
    const broken = Object.assign((...a: Parameters<typeof w>) => w(...a), { carrierAtVerdict: () => { throw new Error('EIO'); } });
    const local = createLocalSource([], 0);
    const watched = createWatchedPorts(() => 0);
    watched.add(local);
    expect(() => carrierJoinChecks(local, () => watched.merge(), broken, log).atVerdict('br0', 1)).not.toThrow();
    expect(errors).toEqual(['carrier check at a loop verdict failed']);
  });
});

/** Counters of a loop between up1 and up2 (100k pps each, rx and tx slightly out of step) from tMs = 5 on. */
function loopCounters(): CounterReader {
  let ms = 0;
  return {
    id: 'fake',
    watch() {},
    read(out: Map<string, Counters>) {
      ms++;
      const n = Math.max(0, ms - 5) * 100;
      for (const [name, c] of out) {
        const share = name === 'up1' ? 0.98 : name === 'up2' ? 1.01 : 0;
        Object.assign(c, { rxPackets: n * share + ms, txPackets: n * (2 - share) + ms, rxBytes: (n * share + ms) * 64, rxBroadcast: n * share, rxMulticast: 0 });
      }
    },
    close() {},
  };
}

/**
 * The daemon's pipeline over a fake host: a loop between up1 and up2 of br0, up2's carrier count
 * as given. `check`: the verdict's carrier check, also the hot ports' read (as the daemon wires
 * it, in the registry's afterCollect), or none.
 */
function pipeline(up2Rises: boolean, check: 'verdict' | 'hot' | 'none' = 'verdict') {
  const c = carrierReader({ up1: 1, up2: 1, vm1: 1 });
  const w = createJoinWatch(c.fn);
  const local = createLocalSource([loopCounters()], 0);
  let checks: ReturnType<typeof carrierJoinChecks> | null = null;
  const watched = createWatchedPorts(() => 0, (s, f) => void (check === 'hot' && s === local && checks!.hot(f.tNs)));
  checks = carrierJoinChecks(local, () => watched.merge(), w, silent);
  watched.add(local);
  const bridged = infos.slice(0, 3);
  // up1 and up2 by one uplink rule: equal rank, so by name up1 would go first.
  local.watch(bridged, testPorts({ up1: { role: 'uplink', rule: 0 }, up2: { role: 'uplink', rule: 0 }, vm1: 'vm' }, policy));
  w(bridged, hostNames, 0); // the listing before the cable; the monitor's next one never comes
  c.read.length = 0;
  if (up2Rises) c.ups.set('up2', 2);
  const commands: ActionRequest[] = [];
  const tick = createTick({
    watched,
    policy: () => policy,
    wallMs: () => 1.7e12,
    breaker: initialBreakerState(),
    out: { execute: (cmd) => commands.push(cmd), record() {}, intent() {}, verify() {}, recoveryDue() {} },
    ...(check !== 'none' ? { atLoopVerdict: checks.atVerdict } : {}),
  });
  let verdictTick = -1;
  const readsAt: number[] = [];
  for (let ms = 1; ms <= 60 && commands.length === 0; ms++) {
    const before = c.read.length;
    if (tick.run(ms * 1e6).verdicts > 0 && verdictTick < 0) verdictTick = ms;
    if (c.read.length > before) readsAt.push(ms);
  }
  return { commands, reads: c.read, verdictTick, readsAt };
}

describe('the tick asks at a loop verdict, before the breaker', () => {
  it('cuts up2, whose carrier count rose since the listing, on the very tick of the verdict', () => {
    const r = pipeline(true);
    expect(r.verdictTick).toBeGreaterThan(0);
    expect(r.commands.map((c) => c.port)).toEqual(['up2']);
    // Listed at 0, found at the verdict: the carrier came up in the window between, and no more is known.
    expect(r.commands[0]!.reason).toBe(
      `loop on br0: shut up2 (up2's carrier came up in the ${r.verdictTick} ms before this verdict (read during this storm), already in br0: cutting it undoes the change that closed the loop; first of up2,up1 by shut order, recent joiners first)`,
    );
  });

  it("without a rise (or without the check) it cuts by shut order: up1; the counts are read only at verdicts, the verdict's members only", () => {
    const r = pipeline(false);
    expect(r.commands.map((c) => c.port)).toEqual(['up1']);
    // One verdict tick, its two members read once each (vm1 is no member): no read on the ticks before the verdict.
    expect(r.reads.sort()).toEqual(['up1', 'up2']);
    expect(r.readsAt).toEqual([r.verdictTick]);
    expect(pipeline(true, 'none').commands.map((c) => c.port)).toEqual(['up1']);
  });

  it('with the hot read wired: the members are read as soon as they carry the flood, before the verdict, which then reads nothing', () => {
    const r = pipeline(true, 'hot');
    expect(r.commands.map((c) => c.port)).toEqual(['up2']);
    expect(r.readsAt.length).toBe(1);
    expect(r.readsAt[0]!).toBeLessThan(r.verdictTick);
    expect(r.reads.sort()).toEqual(['up1', 'up2']); // vm1 carries no flood in: not hot, not read
    // Stamped at the hot read: the reason claims only the window from the listing to the verdict.
    expect(r.commands[0]!.reason).toContain(`up2's carrier came up in the ${r.verdictTick} ms before this verdict (read during this storm)`);
  });
});

describe('the trip reason says how the port joined', () => {
  const { loop } = verdictsFor(policy);
  const ports = (by: 'bridge' | 'carrier' | undefined, afterMs?: number) => {
    const p = testPorts({ up1: { role: 'uplink', rule: 0 }, up2: { role: 'uplink', rule: 0 } }, policy);
    p.set('up2', { ...p.get('up2')!, joinedNs: T0, ...(by ? { joinedBy: by } : {}), ...(afterMs !== undefined ? { joinedAfterNs: T0 + afterMs * 1e6 } : {}) });
    return p;
  };

  it('a carrier-up seen by a listing: "its carrier came up 12 ms before this verdict, already in br0"', () => {
    const out = breakerDriver(ports('carrier'), policy).at(12, { verdicts: [loop(['up1', 'up2'])] });
    expect(out.commands[0]!.reason).toBe(
      "loop on br0: shut up2 (up2's carrier came up 12 ms before this verdict, already in br0: cutting it undoes the change that closed the loop; first of up2,up1 by shut order, recent joiners first)",
    );
  });

  it('a carrier-up found at the verdict: only the window since the listing is claimed, journaled as joinedWithinMs', () => {
    // Listed 640 ms before the verdict, stamped at the verdict itself (T0 + 0 ms here, verdict at 0).
    const d = breakerDriver(ports('carrier', -640), policy);
    const out = d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    expect(out.commands[0]!.reason).toBe(
      "loop on br0: shut up2 (up2's carrier came up in the 640 ms before this verdict (read during this storm), already in br0: cutting it undoes the change that closed the loop; first of up2,up1 by shut order, recent joiners first)",
    );
    const landed = d.at(2, { results: [{ kind: 'link-down', port: 'up2', ok: true, via: 'sysfs-flags', durationMs: 0.2, attempts: 1, verified: true }] });
    expect(landed.events).toMatchObject([{ event: 'trip', port: 'up2', joinedMsBefore: 0, joinedBy: 'carrier', joinedWithinMs: 640 }]);
  });

  it('an enslave (or a port that appeared enslaved, or no cause given): "joined br0"', () => {
    for (const by of ['bridge', undefined] as const) {
      const out = breakerDriver(ports(by), policy).at(12, { verdicts: [loop(['up1', 'up2'])] });
      expect(out.commands[0]!.reason).toContain('(up2 joined br0 12 ms before this verdict: cutting it undoes');
    }
  });

  it('the trip event carries joinedMsBefore and joinedBy; past RECENT_JOIN_MS neither wording is used', () => {
    const d = breakerDriver(ports('carrier'), policy);
    d.at(12, { verdicts: [loop(['up1', 'up2'])] });
    const landed = d.at(14, { results: [{ kind: 'link-down', port: 'up2', ok: true, via: 'sysfs-flags', durationMs: 0.2, attempts: 1, verified: true }] });
    expect(landed.events).toMatchObject([{ event: 'trip', port: 'up2', joinedMsBefore: 12, joinedBy: 'carrier' }]);
    const late = breakerDriver(ports('carrier'), policy).at(RECENT_JOIN_MS + 1, { verdicts: [loop(['up1', 'up2'])] });
    expect(late.commands[0]!.reason).toBe('loop on br0: shut up1 (first of up1,up2 by shut order)');
  });
});
