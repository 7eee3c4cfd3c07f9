// link-down of a bridge port (issue 11, three uplinks): bridge state disabled first, then the
// admin-down off the event loop; the kernel's refusal (kernel STP: EBUSY) and non-bridge ports keep
// the sysfs flags route. A sysfs tree in a temp dir; the rtnetlink setter injected (it writes the
// state file as the kernel would). The real kernel path: test/integration/bridge-state-stop.test.ts.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { executeLinkAction, VIA_BRIDGE_STATE } from '../../agent/actions/link.js';
import { bridgePortOf, nativeBridgeState, type BridgeStateSetter } from '../../agent/host/bridge-port.js';

const root = mkdtempSync(join(tmpdir(), 'sbt-link-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function port(name: string, ifindex: number, brState: number | null): void {
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(join(root, name, 'flags'), '0x1003\n');
  writeFileSync(join(root, name, 'ifindex'), `${ifindex}\n`);
  if (brState !== null) {
    mkdirSync(join(root, name, 'brport'), { recursive: true });
    writeFileSync(join(root, name, 'brport', 'state'), `${brState}\n`);
  }
}

const flags = (name: string): number => Number.parseInt(readFileSync(join(root, name, 'flags'), 'utf8'), 16);
const calls: Array<[number, number]> = [];
/** As the kernel: writes brport/state of the port with that ifindex, or refuses with `refuse`. */
const kernel = (names: Record<number, string>, refuse = 0): BridgeStateSetter => (ifindex, state) => {
  calls.push([ifindex, state]);
  if (refuse !== 0) return refuse;
  writeFileSync(join(root, names[ifindex]!, 'brport', 'state'), `${state}\n`);
  return 0;
};
const opts = (setBridgeState: BridgeStateSetter | null) => ({ timeoutMs: 2000, retries: 0, sysRoot: root, setBridgeState });

beforeEach(() => {
  calls.length = 0;
  port('up1', 7, 3);
  port('eth0', 2, null);
});

describe('link-down of a bridge port', () => {
  it('stops forwarding by the bridge state, then takes the link admin-down, and says both', async () => {
    const before = process.hrtime.bigint();
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, opts(kernel({ 7: 'up1' })));
    expect(calls).toEqual([[7, 0]]);
    expect(r).toMatchObject({ ok: true, verified: true, via: VIA_BRIDGE_STATE, adminDownVia: 'sysfs-flags', attempts: 1 });
    expect(bridgePortOf('up1', root)?.state).toBe(0);
    expect(flags('up1') & 1).toBe(0);
    expect(flags('up1')).toBe(0x1002);
    // When forwarding stopped: on the daemon's clock, inside the action, before its end.
    expect(BigInt(r.stoppedNs!) >= before && BigInt(r.stoppedNs!) <= process.hrtime.bigint()).toBe(true);
    expect(r.forwardingStoppedMs!).toBeLessThanOrEqual(r.durationMs);
    expect(r.fallback).toBeUndefined();
  });

  it('in stages: says the stop once the state reads back disabled, waits for the gate, then the admin-down (and how long it waited)', async () => {
    const stages: string[] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const p = executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, {
      ...opts(kernel({ 7: 'up1' })),
      onStopped: (s) => stages.push(`${s.stage}:${s.ok}:${s.verified}:${bridgePortOf('up1', root)?.state}:${flags('up1') & 1}:${typeof s.stoppedNs}`),
      adminDownGate: () => gate,
    });
    await new Promise((r) => setTimeout(r, 20));
    // Stopped (state 0, read back) but still admin-up: the gate holds the admin-down.
    expect(stages).toEqual(['stopped:true:true:0:1:number']);
    expect(flags('up1') & 1).toBe(1);
    open();
    const r = await p;
    expect(r).toMatchObject({ ok: true, verified: true, via: VIA_BRIDGE_STATE, adminDownVia: 'sysfs-flags' });
    expect(r.stage).toBeUndefined();
    expect(r.adminDownDeferredMs!).toBeGreaterThanOrEqual(15);
    expect(flags('up1') & 1).toBe(0);
  });

  it('in stages: no stop is said when the state does not read back disabled', async () => {
    const stages: unknown[] = [];
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, { ...opts(() => 0), onStopped: (s) => stages.push(s), adminDownGate: async () => {} });
    expect(r.ok).toBe(false);
    expect(stages).toEqual([]);
  });

  it('falls back to the sysfs flags when the kernel refuses the state (kernel STP: EBUSY)', async () => {
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, opts(kernel({ 7: 'up1' }, 16)));
    expect(calls).toEqual([[7, 0]]);
    expect(r).toMatchObject({ ok: true, verified: true, via: 'sysfs-flags', fallback: 'bridge state refused: EBUSY' });
    expect(r.stoppedNs).toBeUndefined();
    expect(bridgePortOf('up1', root)?.state).toBe(3);
    expect(flags('up1') & 1).toBe(0);
  });

  it('is not ok when the state does not read back disabled (and then does not claim the port stopped)', async () => {
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, opts(() => 0));
    expect(r.ok).toBe(false);
    expect(r.verified).toBe(false);
    expect(r.error).toBe('bridge state of up1 reads 3 after setting it disabled');
  });

  it('with the ifindex the local source knows, sets the state at once and reads back that the name still has it', async () => {
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, { ...opts(kernel({ 7: 'up1' })), ifindexHint: 7 });
    expect(calls).toEqual([[7, 0]]);
    expect(r).toMatchObject({ ok: true, verified: true, via: VIA_BRIDGE_STATE, adminDownVia: 'sysfs-flags' });
  });

  it('a stale ifindex (the port re-created since) is not trusted: the stop is done again by name', async () => {
    port('up1', 9, 3); // up1 is now ifindex 9
    // Old index gone: the kernel says ENODEV, and the name's own index is used.
    const gone: BridgeStateSetter = (ifindex, state) => (ifindex === 7 ? (calls.push([ifindex, state]), 19) : kernel({ 9: 'up1' })(ifindex, state));
    const r = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, { ...opts(gone), ifindexHint: 7 });
    expect(calls).toEqual([[7, 0], [9, 0]]);
    expect(r).toMatchObject({ ok: true, verified: true, via: VIA_BRIDGE_STATE });
    // Old index taken by another port (the kernel does not do that before its counter wraps):
    // the read-back sees the name's index differ and does it again by name all the same.
    calls.length = 0;
    port('up1', 9, 3);
    port('other', 7, 3);
    const r2 = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, { ...opts(kernel({ 7: 'other', 9: 'up1' })), ifindexHint: 7 });
    expect(calls).toEqual([[7, 0], [9, 0]]);
    expect(r2).toMatchObject({ ok: true, verified: true, via: VIA_BRIDGE_STATE });
    expect(bridgePortOf('up1', root)?.state).toBe(0);
  });

  it('keeps the sysfs route for a port that is no bridge port, or without the addon', async () => {
    const r = await executeLinkAction({ kind: 'link-down', port: 'eth0', reason: 't' }, opts(kernel({})));
    expect(calls).toEqual([]);
    expect(r).toMatchObject({ ok: true, via: 'sysfs-flags' });
    const r2 = await executeLinkAction({ kind: 'link-down', port: 'up1', reason: 't' }, opts(null));
    expect(r2).toMatchObject({ ok: true, via: 'sysfs-flags' });
    expect(bridgePortOf('up1', root)?.state).toBe(3);
  });
});

describe('the addon setter', () => {
  it('refuses bad arguments before any syscall, and returns the kernel errno (no throw) for a missing port', () => {
    const set = nativeBridgeState();
    expect(set).not.toBeNull();
    expect(() => set!(0, 0)).toThrow(/ifindex: positive integer, state: 0..4/);
    expect(() => set!(1, 5)).toThrow(TypeError);
    expect(() => set!(-3, 0)).toThrow(TypeError);
    // No interface has this index: ENODEV from rtnl_bridge_setlink, nothing is touched.
    expect(set!(2147483647, 0)).toBe(19);
    expect(set!(2147483647, 3)).toBe(19); // the socket is reused
  });
});
