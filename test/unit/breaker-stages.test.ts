import { describe, expect, it } from 'vitest';
import { breakerBusy, breakerStep, initialBreakerState, loopSettling, portStates } from '../../agent/breaker/state.js';
import { initialDetectorState, step } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { kvmLoop, TraceGen } from '../../agent/testing/traces.js';
import type { ActionRequest, ActionResult, JournalEvent } from '../../agent/types.js';
import { breakerDriver, result, verdictsFor, WALL0 } from '../helpers/breaker-driver.js';

// A bridge port's link-down comes back in two parts: stage 'stopped' (bridge state disabled,
// forwarding stopped) and, later, the final result after its admin-down. The breaker settles and
// escalates from the stop; the port is 'tripped' (journaled 'trip') only on the final result.

const policy = testPolicy();
const SETTLE = policy.breaker.settleMs;
const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink', vm1: 'vm', mgmt0: 'mgmt' }, policy);
const { loop } = verdictsFor(policy);
const stopped = (port: string, stoppedNs?: number): ActionResult => ({ ...result('link-down', port), via: 'netlink-brport-state', stage: 'stopped', ...(stoppedNs !== undefined ? { stoppedNs } : {}) });

describe('staged link-down (stopped, then admin-down)', () => {
  it("the port stays tripping until the final result, journaled once; without whole samples after the stop, settle's timeout runs from the final result", () => {
    const d = breakerDriver(ports, policy);
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    const s = d.at(1, { results: [stopped('up1')] });
    expect(s.events).toEqual([]);
    expect(s.verify).toEqual([]);
    expect(d.stateOf('up1')).toBe('tripping');
    // Loop verdicts with no samples measured after the stop (under load one may straddle it):
    // no second shut, however long the admin-down takes.
    for (let t = 2; t < 45; t++) d.at(t, { verdicts: [loop(['up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
    // The stopped port's admin-down may go once the stop's settle is over.
    expect(loopSettling(d.state, 5e12 + (1 + SETTLE) * 1e6)).toBe(false);
    // up1's final result: 'tripped', journaled, reachability checked; settle runs from here.
    const f = d.at(45, { results: [result('link-down', 'up1')] });
    expect(f.events).toMatchObject([{ event: 'trip', port: 'up1' }]);
    expect(f.verify).toEqual(['up1']);
    expect(d.stateOf('up1')).toBe('tripped');
    d.at(44 + SETTLE, { verdicts: [loop(['up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1']);
    d.at(45 + SETTLE, { verdicts: [loop(['up2', 'up3'])] });
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    expect(d.kinds()).toEqual(['trip:up1', 'escalate:up2']);
  });

  it("the final result after a stop does not restart settle (the next member's stop already did)", () => {
    const d = breakerDriver(ports, policy);
    d.at(0, { verdicts: [loop(['up1', 'up2'])] });
    d.at(1, { results: [stopped('up1')] });
    d.at(25, { results: [result('link-down', 'up1')] });
    // Settle ran from the stop (1 + SETTLE), not from the final result (25 + SETTLE).
    expect(loopSettling(d.state, 5e12 + (1 + SETTLE) * 1e6)).toBe(false);
  });

  it('a stage for a port the breaker is not tripping for a loop changes nothing', () => {
    const d = breakerDriver(ports, policy);
    const out = d.at(0, { results: [stopped('vm1')] });
    expect(out.events).toEqual([]);
    expect(portStates(d.state).map((p) => p.state)).toEqual(['forwarding']);
  });

  it('a failed admin-down after the stop: journaled, the next member shut at once, settle not left open', () => {
    const d = breakerDriver(ports, policy);
    d.at(0, { verdicts: [loop(['up1', 'up2', 'up3'])] });
    d.at(1, { results: [stopped('up1')] });
    const f = d.at(10, { results: [{ ...result('link-down', 'up1', false), error: 'admin-down failed' }] });
    expect(f.events).toMatchObject([{ event: 'action-failed', port: 'up1' }, { event: 'escalate', port: 'up2' }]);
    expect(d.commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    d.at(11, { results: [result('link-down', 'up2')] });
    expect(loopSettling(d.state, 5e12 + (12 + SETTLE) * 1e6)).toBe(false);
    expect(breakerBusy(d.state, 5e12 + (12 + SETTLE) * 1e6)).toBe(false);
  });

  it('three uplinks, admin-down slower than the storm (40 ms): the second shut goes a few samples after the first stop, not after its admin-down', () => {
    const ADMIN_DOWN_MS = 40;
    // vm1 sends a multicast stream meanwhile: one member at a time (not breaker twoCutsWhy).
    const gen = new TraceGen(kvmLoop({ members: ['up1', 'up2', 'up3'], others: ['vm1'], othersSendPps: 2000 }));
    const det = initialDetectorState();
    const brk = initialBreakerState();
    const commands: Array<ActionRequest & { tMs: number }> = [];
    const events: Array<JournalEvent & { tMs: number }> = [];
    let pending: ActionRequest[] = [];
    const finals: Array<{ atMs: number; r: ActionResult }> = [];
    while (gen.tMs < 600) {
      // A link-down stops the port on the next sample (stage 'stopped'); its final result comes ADMIN_DOWN_MS later.
      const results: ActionResult[] = [];
      for (const c of pending) {
        gen.down.add(c.port);
        results.push(stopped(c.port));
        finals.push({ atMs: gen.tMs + ADMIN_DOWN_MS, r: result('link-down', c.port) });
      }
      pending = [];
      while (finals.length > 0 && finals[0]!.atMs <= gen.tMs) results.push(finals.shift()!.r);
      const tick = gen.next();
      const v = step(det, tick, ports, policy);
      const out = breakerStep(brk, { tNs: tick.tNs, wallMs: WALL0 + gen.tMs, verdicts: v.verdicts, results, operator: [] }, ports, policy);
      for (const c of out.commands) commands.push({ ...c, tMs: gen.tMs });
      pending.push(...out.commands);
      for (const e of out.events) events.push({ ...e, tMs: gen.tMs });
    }
    expect(commands.map((c) => c.port)).toEqual(['up1', 'up2']);
    const gap = commands[1]!.tMs - commands[0]!.tMs;
    expect(gap).toBeLessThan(SETTLE / 2);
    expect(gap).toBeLessThan(ADMIN_DOWN_MS);
    // Escalation before up1's trip is journaled; each port tripped once, after its admin-down.
    expect(events.map((e) => `${e.event}:${e.port}`)).toEqual(['escalate:up2', 'trip:up1', 'trip:up2']);
    expect(events[1]!.tMs - commands[0]!.tMs).toBeGreaterThanOrEqual(ADMIN_DOWN_MS);
    expect(portStates(brk).map((p) => `${p.port}:${p.state}`)).toEqual(['up1:tripped', 'up2:tripped']);
  });
});
