import { describe, expect, it } from 'vitest';
import { initialBreakerState, portStates } from '../../agent/breaker/state.js';
import { createTick } from '../../agent/daemon/tick.js';
import { createWatchedPorts } from '../../agent/daemon/ports.js';
import { createLocalSource } from '../../agent/sources/local.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, kvmLoop, quietNetwork, type TraceSpec } from '../../agent/testing/traces.js';
import type { ActionRequest, Counters, CounterReader, JournalEvent, PortPolicy, PortRates, Tick, TickFrame, TickSource } from '../../agent/types.js';

// The tick alone: fake sources (recorded traces replayed through the one TickSource interface),
// the real detector and breaker, and `out` recorded. What a regression would break: a verdict
// must become a link-down command on that very tick; a quiet tick must not run the breaker; a
// stale source's ports are not judged; results and operator commands reach the breaker.

const policy = testPolicy();
const ports = testPorts({ up1: 'uplink', up2: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, policy);

/** A TickSource replaying a trace, one recorded tick per collect(), rates copied in place. */
function replay(trace: Tick[], pp: ReadonlyMap<string, PortPolicy>, o: { fresh?: () => boolean; id?: string } = {}): TickSource & { consumed: number } {
  const rates: PortRates[] = trace[0]!.ports.map((r) => ({ ...r }));
  let i = 0;
  const src = {
    id: o.id ?? 'replay',
    consumed: 0,
    ports: () => pp,
    rates: () => rates,
    fresh: () => (o.fresh ? o.fresh() : true),
    collect(f: TickFrame) {
      const t = trace[Math.min(i++, trace.length - 1)]!;
      for (let k = 0; k < rates.length; k++) Object.assign(rates[k]!, t.ports[k]);
      f.fdbMoves = t.fdbMoves;
    },
    consume() {
      src.consumed++;
    },
    close() {},
  };
  return src;
}

function harness(sources: TickSource[]) {
  let nowNs = 0;
  const watched = createWatchedPorts(() => nowNs);
  for (const s of sources) watched.add(s);
  const commands: Array<ActionRequest & { issuedNs: number }> = [];
  const events: JournalEvent[] = [];
  const verified: string[] = [];
  const dues: number[] = [];
  const intents: JournalEvent[] = [];
  /** What left the tick, in order: `intent:port`, `execute:port`. */
  const order: string[] = [];
  const tick = createTick({
    watched,
    policy: () => policy,
    wallMs: () => 1_700_000_000_000,
    breaker: initialBreakerState(),
    out: {
      execute: (c, t) => (order.push(`execute:${c.port}`), commands.push({ ...c, issuedNs: t })),
      record: (e) => events.push(e),
      intent: (e) => (order.push(`intent:${e.port}`), intents.push(e)),
      verify: (p) => verified.push(p),
      recoveryDue: (t) => dues.push(t),
    },
  });
  const run = (tNs: number) => {
    nowNs = tNs;
    return tick.run(tNs);
  };
  return { tick, run, commands, events, verified, dues, watched, intents, order };
}

function drive(spec: TraceSpec, ms: number, fresh?: () => boolean) {
  const trace = buildTrace(spec, ms);
  const src = replay(trace, ports, fresh ? { fresh } : {});
  const h = harness([src]);
  const outcomes = trace.map((t) => ({ tNs: t.tNs, ...h.run(t.tNs) }));
  return { ...h, trace, outcomes, src };
}

describe('tick: sources -> rates -> detect -> breaker -> commands', () => {
  it('a loop becomes one link-down command on the tick of its verdict (the trip is journaled when it lands)', () => {
    const r = drive(kvmLoop({ periodMs: 1 }), 200);
    const verdictAt = r.outcomes.findIndex((o) => o.verdicts > 0);
    expect(verdictAt).toBeGreaterThan(0);
    expect(r.commands.length).toBe(1);
    const cmd = r.commands[0]!;
    expect(cmd.kind).toBe('link-down');
    expect(['up1', 'up2']).toContain(cmd.port); // a loop member, never a copy-only port
    expect(cmd.issuedNs).toBe(r.outcomes[verdictAt]!.tNs);
    expect(r.events).toEqual([]); // the trip is journaled with the action's result, not before it
    // ...but its intent is written first, before the link-down leaves: a kill cannot lose it.
    expect(r.order).toEqual([`intent:${cmd.port}`, `execute:${cmd.port}`]);
    expect(r.intents[0]).toMatchObject({ event: 'trip-intent', port: cmd.port });
    expect(r.outcomes[verdictAt]!.warm).toBe(true);
    expect(portStates(r.tick.breaker()).find((p) => p.port === cmd.port)?.state).toBe('tripping');
  });

  it('a quiet network gives no verdict, never runs the breaker and never asks for the active rate', () => {
    const r = drive(quietNetwork({ periodMs: 10 }), 1000);
    expect(r.outcomes.every((o) => o.verdicts === 0 && !o.warm && !o.probing)).toBe(true);
    expect(r.commands).toEqual([]);
    expect(r.events).toEqual([]);
    expect(r.dues).toEqual([]); // recoveryDue is told only after a breaker step
    expect(r.src.consumed).toBe(r.trace.length); // consume() after every detector step
  });

  it("a source that is not fresh (a stale ESXi host) has its ports watched but not judged", () => {
    const r = drive(kvmLoop({ periodMs: 1 }), 200, () => false);
    expect(r.outcomes.every((o) => o.verdicts === 0)).toBe(true);
    expect(r.commands).toEqual([]);
    expect([...r.watched.all().keys()].sort()).toEqual(['mgmt0', 'up1', 'up2', 'vm1']);
    expect(r.watched.judged().size).toBe(0);
  });

  it('an action result in the inbox reaches the breaker on the next tick, and the inbox is emptied', () => {
    const r = drive(kvmLoop({ periodMs: 1 }), 120);
    const port = r.commands[0]!.port;
    const t = r.trace.at(-1)!.tNs;
    r.tick.inbox.results.push({ kind: 'link-down', port, ok: true, via: 'sysfs-flags', durationMs: 0.2, attempts: 1, verified: true });
    r.run(t + 1e6);
    expect(r.tick.inbox.results).toEqual([]);
    expect(portStates(r.tick.breaker()).find((p) => p.port === port)?.state).toBe('tripped');
    expect(r.events.map((e) => `${e.event}:${e.port}`)).toEqual([`trip:${port}`]);
    expect(r.events[0]!.action?.ok).toBe(true);
    expect(r.dues.length).toBeGreaterThan(0);
  });

  it('a command that throws inside the breaker is dropped with its error; the next tick still protects', () => {
    const r = drive(quietNetwork({ periodMs: 10 }), 100);
    const t = r.trace.at(-1)!.tNs;
    // What `hold --forMs 1e300` once put in the inbox: an expiry no Date can hold.
    r.tick.inbox.operator.push({ kind: 'hold', port: 'vm1', reason: 'test', by: 'uid 0', untilMs: 1e300 });
    r.run(t + 10e6);
    expect(r.tick.inbox.operator).toEqual([]);
    expect(r.events.map((e) => `${e.event}:${e.port}`)).toEqual(['action-failed:vm1']);
    expect(r.events[0]!.reason).toMatch(/dropped: it failed inside the breaker/);
    r.tick.inbox.operator.push({ kind: 'trip', port: 'vm1', reason: 'test', by: 'uid 0' });
    r.run(t + 20e6);
    expect(r.commands.map((c) => `${c.kind}:${c.port}`)).toEqual(['link-down:vm1']);
  });

  it('an operator trip in the inbox becomes a link-down on the next tick, even on a quiet network', () => {
    const r = drive(quietNetwork({ periodMs: 10 }), 100);
    r.tick.inbox.operator.push({ kind: 'trip', port: 'vm1', reason: 'test', by: 'uid 0' });
    r.run(r.trace.at(-1)!.tNs + 10e6);
    expect(r.commands.map((c) => `${c.kind}:${c.port}`)).toEqual(['link-down:vm1']);
    expect(r.tick.inbox.operator).toEqual([]);
  });

  it('busy() keeps the breaker running on quiet ticks until settle has passed', () => {
    const r = drive(quietNetwork({ periodMs: 10 }), 50);
    const t = r.trace.at(-1)!.tNs;
    r.tick.busy(t);
    const before = r.dues.length;
    r.run(t + 5e6);
    expect(r.dues.length).toBe(before + 1);
    r.run(t + (policy.breaker.settleMs + 60) * 1e6);
    expect(r.dues.length).toBe(before + 1);
  });
});

describe('local source: counters -> rates, warm', () => {
  function reader(values: Map<string, Partial<Counters>>): CounterReader {
    return { id: 'fake', watch() {}, read: (out) => out.forEach((c, n) => Object.assign(c, values.get(n) ?? {})), close() {} };
  }
  it('turns two reads into rates and says warm once a flood reaches the falling edge', () => {
    const values = new Map<string, Partial<Counters>>([['vm1', { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: 0, rxMulticast: 0 }]]);
    const local = createLocalSource([reader(values)], 0);
    const pp = testPorts({ vm1: 'vm' });
    local.watch([{ name: 'vm1', ifindex: 2, bridge: 'br0' }], pp);
    const f: TickFrame = { tNs: 1e6, fdbMoves: [], warm: false };
    local.collect(f);
    // 10 ms later: 100 broadcast frames = 10k pps, over clearPps (5000).
    values.set('vm1', { rxPackets: 100, txPackets: 0, rxBytes: 6400, rxBroadcast: 100, rxMulticast: 0 });
    f.tNs = 11e6;
    local.collect(f);
    const r = local.lastRates('vm1')!;
    expect(r.valid).toBe(true);
    expect(r.floodPps).toBeCloseTo(10_000, 6);
    expect(f.warm).toBe(true);
    // The same rates object is reused: the tick allocates nothing per port.
    expect(local.rates()[0]).toBe(r);
  });
});
