import { describe, expect, it } from 'vitest';
import { breakerStep, initialBreakerState, type BreakerState } from '../../agent/breaker/state.js';
import { createExecutor } from '../../agent/daemon/executor.js';
import { portKinds, type DownStages, type PortKind } from '../../agent/daemon/port-kinds.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { ActionRequest, ActionResult } from '../../agent/types.js';
import { verdictsFor } from '../helpers/breaker-driver.js';

// The executor's part in a bridge port's staged link-down: the stop goes to the breaker's inbox
// (and to the reaction listeners) at once; the admin-down waits while a loop shut is in flight or
// settling, so that it does not hold rtnl while the next member's stop needs it.

const policy = testPolicy();
const ports = testPorts({ up1: 'uplink', up2: 'uplink', up3: 'uplink' }, policy);
const { loop } = verdictsFor(policy);

function setup(brk: BreakerState, slow: Record<string, Promise<void>> = {}) {
  let nowNs = 1e12;
  const log: string[] = [];
  const kind: PortKind = {
    id: 'local',
    checkName: () => true,
    async down(req: ActionRequest, _prev, stages?: DownStages) {
      const base = { kind: req.kind, port: req.port, via: 'netlink-brport-state', durationMs: 0.1, attempts: 1, verified: true, ok: true, stoppedNs: nowNs };
      stages!.onStopped({ ...base, stage: 'stopped' });
      await stages!.adminDownGate();
      log.push(`admin-down ${req.port}`);
      await slow[req.port];
      log.push(`admin-down ${req.port} done`);
      return base;
    },
    up: async (req) => ({ kind: req.kind, port: req.port, ok: true, via: 'x', durationMs: 1, attempts: 1, verified: true }),
    verify: () => true,
    reassertReason: () => '',
  };
  const results: ActionResult[] = [];
  let wakes = 0;
  const ex = createExecutor({
    kinds: portKinds([kind]),
    clock: { now: () => nowNs },
    results,
    wake: () => wakes++,
    previous: () => undefined,
    breaker: () => brk,
    record: () => {},
    policy: () => policy,
    stopped: () => false,
  });
  return { ex, log, results, wakes: () => wakes, nowNs: () => nowNs, advance: (ms: number) => (nowNs += ms * 1e6) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('executor: staged link-down', () => {
  it('the stop reaches the inbox and the listeners at once; the admin-down waits for the loop to settle; the final result is not a second reaction', async () => {
    const brk = initialBreakerState();
    const s = setup(brk);
    const seen: string[] = [];
    s.ex.onOutcome((r) => seen.push(`${r.port}:${r.stage ?? 'final'}`));
    // The breaker shuts up1 for a loop: in flight until it takes in the stop.
    breakerStep(brk, { tNs: s.nowNs(), wallMs: 0, verdicts: [loop(['up1', 'up2', 'up3'])], results: [], operator: [] }, ports, policy);
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'loop' }, s.nowNs());
    expect(s.results.map((r) => `${r.port}:${r.stage}`)).toEqual(['up1:stopped']);
    expect(s.wakes()).toBe(1);
    expect(seen).toEqual(['up1:stopped']);
    await sleep(10);
    expect(s.log).toEqual([]); // up1 still in flight for the breaker
    // The breaker takes in the stop: settling for settleMs from now.
    breakerStep(brk, { tNs: s.nowNs(), wallMs: 0, verdicts: [], results: s.results.splice(0), operator: [] }, ports, policy);
    await sleep(10);
    expect(s.log).toEqual([]);
    s.advance(policy.breaker.settleMs + 1);
    await sleep(10);
    expect(s.log).toEqual(['admin-down up1', 'admin-down up1 done']);
    expect(s.results.map((r) => `${r.port}:${r.stage ?? 'final'}:${r.ok}`)).toEqual(['up1:final:true']);
    expect(seen).toEqual(['up1:stopped']);
  });

  it('no loop in flight or settling: the admin-down goes at once', async () => {
    const s = setup(initialBreakerState());
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'operator' }, s.nowNs());
    await sleep(0);
    expect(s.log).toEqual(['admin-down up1', 'admin-down up1 done']);
  });

  it('the admin-down waits at most a second, however long the loop keeps settling', async () => {
    const brk = initialBreakerState();
    const s = setup(brk);
    breakerStep(brk, { tNs: s.nowNs(), wallMs: 0, verdicts: [loop(['up1', 'up2'])], results: [], operator: [] }, ports, policy);
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'loop' }, s.nowNs());
    await sleep(10);
    s.advance(999);
    await sleep(10);
    expect(s.log).toEqual([]);
    s.advance(2);
    await sleep(10);
    expect(s.log).toEqual(['admin-down up1', 'admin-down up1 done']);
  });

  it('deferred admin-downs run one after another, in the order the ports stopped', async () => {
    let release!: () => void;
    const s = setup(initialBreakerState(), { up1: new Promise<void>((r) => (release = r)) });
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'loop' }, s.nowNs());
    s.ex.execute({ kind: 'link-down', port: 'up2', reason: 'loop' }, s.nowNs());
    await sleep(10);
    expect(s.log).toEqual(['admin-down up1']); // up2 waits for up1's to end
    release();
    await sleep(10);
    expect(s.log).toEqual(['admin-down up1', 'admin-down up1 done', 'admin-down up2', 'admin-down up2 done']);
    expect(s.results.map((r) => `${r.port}:${r.stage ?? 'final'}`)).toEqual(['up1:stopped', 'up2:stopped', 'up1:final', 'up2:final']);
  });
});
