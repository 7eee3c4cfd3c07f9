import { describe, expect, it } from 'vitest';
import { initialBreakerState, restoreTripped } from '../../agent/breaker/state.js';
import { createExecutor } from '../../agent/daemon/executor.js';
import { portKinds, type PortKind } from '../../agent/daemon/port-kinds.js';
import { testPolicy } from '../../agent/testing/policy.js';
import type { ActionRequest, ActionResult, EsxiActionRecord, JournalEvent } from '../../agent/types.js';

// The executor with fake port kinds: a command goes to the kind that owns the port name (never
// by name syntax in the executor), its result comes back into the breaker's inbox with a wake,
// link-ups are waited for, and only a cut found undone is put down again, once at a time.

function fakeKind(id: string, owns: (p: string) => boolean, o: { undone?: (p: string) => boolean | null; fail?: boolean } = {}) {
  const calls: Array<{ how: 'down' | 'up'; req: ActionRequest; previous: EsxiActionRecord | undefined }> = [];
  const pending: Array<(r: ActionResult) => void> = [];
  const act = (how: 'down' | 'up') => (req: ActionRequest, previous?: EsxiActionRecord) => {
    calls.push({ how, req, previous });
    return new Promise<ActionResult>((resolve) => pending.push(resolve));
  };
  const kind: PortKind = {
    id,
    checkName: owns,
    down: act('down'),
    up: act('up'),
    verify: (p) => (o.undone ? !o.undone(p) : true),
    reassertReason: (what, r) => `${id}: ${what} ${r.ok ? 'cut again' : 'failed'}`,
  };
  /** Finish the oldest action in flight. */
  const finish = (ok = !o.fail) => {
    const c = calls[calls.length - pending.length]!;
    pending.shift()!({ kind: c.req.kind, port: c.req.port, ok, via: id, durationMs: 1, attempts: 1, verified: ok });
  };
  return { kind, calls, finish };
}

function setup(tripped: string[] = []) {
  let nowNs = 1e12;
  const local = fakeKind('local', (p) => /^[a-z0-9]+$/.test(p), { undone: (p) => p === 'vm1' });
  const esx = fakeKind('esxi:esx1', (p) => p.startsWith('esx1/'));
  const results: ActionResult[] = [];
  const events: JournalEvent[] = [];
  let wakes = 0;
  const rec: EsxiActionRecord = { host: 'esx1', action: 'vnic-disconnect', target: 'vm-a key 4000' };
  const brk = restoreTripped(initialBreakerState(), tripped.map((port) => ({ port, since: 0 })));
  const ex = createExecutor({
    kinds: portKinds([esx.kind, local.kind]),
    clock: { now: () => nowNs },
    results,
    wake: () => wakes++,
    previous: (p) => (p.startsWith('esx1/') ? rec : undefined),
    breaker: () => brk,
    record: (e) => events.push(e),
    policy: () => testPolicy(),
    stopped: () => false,
  });
  return { ex, local, esx, results, events, wakes: () => wakes, rec, advance: (ms: number) => (nowNs += ms * 1e6) };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

describe('executor', () => {
  it('sends each command to the kind that owns the port; the result reaches the inbox with a wake and its time from the verdict', async () => {
    const s = setup();
    const seen: Array<[string, number]> = [];
    s.ex.onOutcome((r, ms) => seen.push([r.port, ms]));
    s.ex.execute({ kind: 'link-down', port: 'esx1/vnic-000c29000001', reason: 'loop' }, 1e12);
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'loop' }, 1e12);
    expect(s.esx.calls.map((c) => [c.how, c.req.port, c.previous])).toEqual([['down', 'esx1/vnic-000c29000001', s.rec]]);
    expect(s.local.calls.map((c) => [c.how, c.req.port])).toEqual([['down', 'up1']]);
    s.advance(3);
    s.local.finish();
    await flush();
    expect(s.results.map((r) => `${r.port}:${r.via}`)).toEqual(['up1:local']);
    expect(s.wakes()).toBe(1);
    expect(seen).toEqual([['up1', 3]]);
  });

  it('a port no kind knows fails as a result (the breaker hears of it), and nothing runs', async () => {
    const s = setup();
    s.ex.execute({ kind: 'link-down', port: 'esx9/vmnic0', reason: 'loop' }, 0);
    await flush();
    expect(s.local.calls.length + s.esx.calls.length).toBe(0);
    expect(s.results).toMatchObject([{ port: 'esx9/vmnic0', ok: false, error: expect.stringContaining('no port kind') }]);
    expect(s.wakes()).toBe(1);
  });

  it('upsSettled waits for the link-ups in flight, not for link-downs', async () => {
    const s = setup();
    s.ex.execute({ kind: 'link-down', port: 'up1', reason: 'x' }, 0);
    s.ex.execute({ kind: 'link-up', port: 'up2', reason: 'x' }, 0);
    let settled = false;
    void s.ex.upsSettled().then(() => (settled = true));
    await flush();
    expect(settled).toBe(false);
    s.local.finish(); // the link-down
    await flush();
    expect(settled).toBe(false);
    s.local.finish(); // the link-up
    await flush();
    expect(settled).toBe(true);
  });

  it('reassert puts down only a tripped port of the given kinds whose cut was undone, one at a time, and journals it in its kind`s words', async () => {
    const s = setup(['vm1', 'vm2', 'esx1/vmnic0']);
    s.ex.reassert([s.local.kind]);
    s.ex.reassert([s.local.kind]); // still in flight: not again
    expect(s.local.calls.map((c) => [c.how, c.req.port, c.req.reason])).toEqual([['down', 'vm1', 'reassert']]);
    expect(s.esx.calls).toEqual([]); // not asked for that kind
    s.local.finish();
    await flush();
    expect(s.events.map((e) => [e.event, e.port, e.reason])).toEqual([['reassert', 'vm1', 'local: tripped cut again']]);
    expect(s.results).toEqual([]); // a reassert is not a breaker command
  });
});
