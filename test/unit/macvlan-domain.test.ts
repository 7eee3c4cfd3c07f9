// A host without a bridge whose guests have macvtap/macvlan NICs (session 17): discovery of the
// NIC + macvlan-devices forwarding domain from sysfs, and the detector's judgement on it.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bridgeMembers, listInterfaces, macvlanDomainOf } from '../../agent/host/interfaces.js';
import { initialDetectorState, MACVLAN_ECHO_MS, RING_MIN_RETURNS, step } from '../../agent/detect/signature.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import { buildTrace, type LoadFn } from '../../agent/testing/traces.js';
import type { Tick, Verdict } from '../../agent/types.js';

// A fake /sys/class/net: up1 with macvtap0 (a macvtap), mv0 (a macvlan) and up1.100 (a VLAN) on
// it; up2 with macvtap1; up3 with nothing; br0 with port vnet0.
const root = mkdtempSync(join(tmpdir(), 'sbt-macvlan-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function dev(name: string, ifindex: number, o: { lower?: string; master?: string; devtype?: string; macvtap?: boolean; bridge?: boolean } = {}): void {
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(join(root, name, 'ifindex'), `${ifindex}\n`);
  writeFileSync(join(root, name, 'uevent'), `INTERFACE=${name}\nIFINDEX=${ifindex}\n${o.devtype ? `DEVTYPE=${o.devtype}\n` : ''}`);
  if (o.macvtap) mkdirSync(join(root, name, 'macvtap'));
  if (o.bridge) mkdirSync(join(root, name, 'bridge'));
  if (o.lower) {
    symlinkSync(join(root, o.lower), join(root, name, `lower_${o.lower}`));
    symlinkSync(join(root, name), join(root, o.lower, `upper_${name}`));
  }
  if (o.master) {
    symlinkSync(join(root, o.master), join(root, name, 'master'));
    symlinkSync(join(root, o.master), join(root, name, `upper_${o.master}`));
    symlinkSync(join(root, name), join(root, o.master, `lower_${name}`));
  }
}
dev('up1', 2);
dev('up2', 3);
dev('up3', 4);
dev('br0', 5, { bridge: true, devtype: 'bridge' });
dev('macvtap0', 10, { lower: 'up1', macvtap: true });
dev('mv0', 11, { lower: 'up1' });
dev('up1.100', 12, { lower: 'up1', devtype: 'vlan' });
dev('macvtap1', 13, { lower: 'up2', macvtap: true });
dev('vnet0', 14, { master: 'br0' });
mkdirSync(join(root, 'br0', 'brif'));
symlinkSync(join(root, 'vnet0'), join(root, 'br0', 'brif', 'vnet0'));

describe('a macvlan forwarding domain from sysfs', () => {
  it('a NIC with macvlan/macvtap devices and those devices share the NIC as their bridge; a VLAN, a plain NIC and bridge ports do not', () => {
    const byName = new Map(listInterfaces(root).map((p) => [p.name, p]));
    for (const n of ['up1', 'macvtap0', 'mv0']) expect(byName.get(n)).toMatchObject({ bridge: 'up1', macvlan: true });
    for (const n of ['up2', 'macvtap1']) expect(byName.get(n)).toMatchObject({ bridge: 'up2', macvlan: true });
    expect(byName.get('up1.100')).toMatchObject({ bridge: null });
    expect(byName.get('up3')).toMatchObject({ bridge: null });
    expect(byName.get('vnet0')).toMatchObject({ bridge: 'br0' });
    for (const n of ['up1.100', 'up3', 'vnet0', 'br0']) expect(byName.get(n)!.macvlan).toBeUndefined();
    expect(bridgeMembers('up1', root)).toEqual(['up1', 'macvtap0', 'mv0']);
    expect(bridgeMembers('up3', root)).toEqual([]);
    expect(bridgeMembers('br0', root)).toEqual(['vnet0']);
    expect(macvlanDomainOf('gone0', root)).toBeNull();
    expect(macvlanDomainOf('bad/name', root)).toBeNull();
  });
});

// The detector on the lab's host: up1 + macvtap0 (domain up1), up2 + macvtap1 (domain up2).
const policy = testPolicy();
const names = ['up1', 'macvtap0', 'up2', 'macvtap1'];
const ports = testPorts({ up1: 'uplink', up2: 'uplink', macvtap0: 'vm', macvtap1: 'vm' }, policy);
const domainOf = (p: string) => (p === 'up1' || p === 'macvtap0' ? 'up1' : 'up2');

/** What a guest sends by its macvtap (its transmit, as the packet source counts it on guests' devices, session 18). */
type GuestTx = (port: string, tMs: number) => { flood: number; fwd: number } | null;

function trace(load: LoadFn, ms = 400, macvlan = true, tx?: GuestTx): Tick[] {
  const ticks = buildTrace({ name: 'custom', ports: names.map((port) => ({ port, bridge: domainOf(port) })), load }, ms);
  const t0 = ticks[0]!.tNs;
  return ticks.map((t) => ({
    ...t,
    ports: t.ports.map((r) => {
      const g = tx && r.port.startsWith('macvtap') ? tx(r.port, (t.tNs - t0) / 1e6) : null;
      return { ...r, macvlan, ...(g === null ? {} : { txFloodPps: g.flood, txFwdPps: g.fwd }) };
    }),
  }));
}

function run(ticks: Tick[]): { all: Verdict[]; firstLoopMs: number } {
  const state = initialDetectorState();
  const perTick = ticks.map((t) => step(state, t, ports, policy).verdicts);
  const i = perTick.findIndex((v) => v.some((x) => x.kind === 'loop'));
  return { all: perTick.flat(), firstLoopMs: i < 0 ? Infinity : (ticks[i]!.tNs - ticks[0]!.tNs) / 1e6 - 100 };
}

const quiet = { rxPps: 300, txPps: 300, bcastPps: 10 };

describe('the detector on macvlan domains', () => {
  it('a loop circling both ways (every port rx ≈ tx) is a loop of each domain, within a few samples', () => {
    const r = run(trace((_p, t) => (t < 100 ? quiet : { rxPps: 60_000, txPps: 60_000, bcastPps: 60_000 })));
    expect(r.firstLoopMs).toBeLessThan(5);
    const loops = r.all.filter((v) => v.kind === 'loop');
    expect(new Set(loops.map((v) => v.kind === 'loop' && v.bridge))).toEqual(new Set(['up1', 'up2']));
    expect(loops[0]!.evidence.clues.join(' | ')).toMatch(/2 such NICs circle at once/);
  });

  it('one domain alone at rx ≈ tx (a guest answering broadcasts through its NIC), fast or sustained: no verdict', () => {
    for (const pps of [60_000, 5_000]) {
      const one: LoadFn = (p, t) => (t < 100 || domainOf(p) !== 'up1' ? quiet : { rxPps: pps, txPps: pps, bcastPps: pps });
      expect(run(trace(one, 600)).all).toEqual([]);
    }
  });

  it('a one-way ring (macvtap1 receives, macvtap0 re-sends it) is a loop of both macvtaps after MACVLAN_ECHO_MS; no flood verdict names a macvtap', () => {
    const ring: LoadFn = (p, t) => {
      if (t < 100) return quiet;
      if (p === 'macvtap1' || p === 'up2') return { rxPps: 60_000, txPps: 0, bcastPps: 60_000 };
      return { rxPps: 0, txPps: 60_000, bcastPps: 0 };
    };
    const r = run(trace(ring));
    expect(r.firstLoopMs).toBeGreaterThanOrEqual(MACVLAN_ECHO_MS);
    expect(r.firstLoopMs).toBeLessThan(MACVLAN_ECHO_MS + 15);
    const v = r.all.find((x) => x.kind === 'loop')!;
    expect(v).toMatchObject({ bridge: 'up1', members: ['macvtap0', 'macvtap1'] });
    expect(v.evidence.clues[0]).toMatch(/macvtap0 \(on up1\) sends what macvtap1 \(on up2\) receives/);
    expect(r.all.filter((x) => x.kind === 'flood' && x.port.startsWith('macvtap'))).toEqual([]);
  });

  it("a flood from elsewhere reaching the guests (victim host): no verdict names a guest's macvtap (the same counters on bridge ports: a flood from each)", () => {
    const victim: LoadFn = (_p, t) => (t < 100 ? quiet : { rxPps: 60_000, txPps: 0, bcastPps: 60_000 });
    const r = run(trace(victim, 600));
    expect(r.all.filter((x) => x.kind === 'loop')).toEqual([]);
    expect(r.all.filter((x) => x.kind === 'flood' && x.port.startsWith('macvtap'))).toEqual([]);
    // Control: on a bridge the same rx with no tx is a flood from those ports.
    const bridged = run(trace(victim, 600, false));
    expect(bridged.all.some((x) => x.kind === 'flood' && x.port === 'macvtap0')).toBe(true);
  });

  describe("with the guests' transmit counted (txFloodPps, txFwdPps: session 18)", () => {
    /** A guest on up1 sending `pps` of broadcast by macvtap0 from its own MAC (fwd 0) from 100 ms on for `forMs`; macvtap1 receives it through the switch. */
    const sending = (pps: number, forMs: number): { load: LoadFn; tx: GuestTx } => {
      const on = (t: number) => t >= 100 && t < 100 + forMs;
      return {
        load: (p, t) => {
          if (!on(t)) return quiet;
          if (p === 'macvtap0' || p === 'up1') return { rxPps: 0, txPps: pps, bcastPps: 0 };
          return { rxPps: pps, txPps: 0, bcastPps: pps };
        },
        tx: (p, t) => (p === 'macvtap0' && on(t) ? { flood: pps, fwd: 0 } : { flood: 0, fwd: 0 }),
      };
    };

    it('a one-way ring whose sender forwards (frames not from its MAC) is a loop within a few samples, no hold', () => {
      const ring: LoadFn = (p, t) => {
        if (t < 100) return quiet;
        if (p === 'macvtap1' || p === 'up2') return { rxPps: 60_000, txPps: 0, bcastPps: 60_000 };
        return { rxPps: 0, txPps: 60_000, bcastPps: 0 };
      };
      const r = run(trace(ring, 400, true, (p, t) => (p === 'macvtap0' && t >= 100 ? { flood: 60_000, fwd: 60_000 } : { flood: 0, fwd: 0 })));
      expect(r.firstLoopMs).toBeLessThan(5);
      const v = r.all.find((x) => x.kind === 'loop')!;
      expect(v).toMatchObject({ bridge: 'up1', members: ['macvtap0', 'macvtap1'] });
      expect(v.evidence.clues[0]).toMatch(/macvtap0 \(on up1\) forwards what macvtap1 \(on up2\) receives/);
      expect(r.all.filter((x) => x.kind === 'flood' && x.port.startsWith('macvtap'))).toEqual([]);
    });

    it('a guest streaming 25k/s of its own broadcast for 200 ms to a guest on the other NIC: nothing (without the counts: a ring after 30 ms)', () => {
      const s = sending(25_000, 200);
      expect(run(trace(s.load, 600, true, s.tx)).all).toEqual([]);
      // The same counters without the guest's transmit counted: the old rule's one-way ring.
      expect(run(trace(s.load, 600)).all.some((v) => v.kind === 'loop')).toBe(true);
    });

    it('a guest flooding by its macvtap is cut as a flood from it, by the flood budget: sooner the bigger', () => {
      const at = (pps: number): number => {
        const s = sending(pps, 500);
        const ticks = trace(s.load, 700, true, s.tx);
        const state = initialDetectorState();
        for (const t of ticks) {
          const v = step(state, t, ports, policy).verdicts;
          expect(v.filter((x) => x.kind === 'loop')).toEqual([]);
          // up2 receives the flood from the switch: a flood on an uplink, which is never cut for one.
          expect(v.filter((x) => x.kind === 'flood' && x.port === 'macvtap1')).toEqual([]);
          const f = v.find((x) => x.kind === 'flood' && x.port.startsWith('macvtap'));
          if (f !== undefined) {
            expect(f).toMatchObject({ kind: 'flood', port: 'macvtap0' });
            expect(f.evidence.clues[0]).toMatch(/sent by the guest of macvtap0/);
            return (t.tNs - ticks[0]!.tNs) / 1e6 - 100;
          }
        }
        return Infinity;
      };
      const fast = at(175_000);
      const slow = at(60_000);
      // 2000 frames over 20k/s: ~13 ms at 175k/s, ~50 ms at 60k/s.
      expect(fast).toBeGreaterThan(10);
      expect(fast).toBeLessThan(16);
      expect(slow).toBeGreaterThan(45);
      expect(slow).toBeLessThan(56);
    });
  });

  describe('with frames that come back counted (rxRetPps, the tripwire: session 19)', () => {
    /** A one-way ring (or a guest bridging two LANs: the same rates) at `pps` from 100 ms: up2/macvtap1 receive, macvtap0 forwards it out by up1. */
    const oneWay = (pps: number): LoadFn => (p, t) => {
      if (t < 100) return quiet;
      if (p === 'macvtap1' || p === 'up2') return { rxPps: pps, txPps: 0, bcastPps: pps };
      return { rxPps: 0, txPps: pps, bcastPps: 0 };
    };
    const forwards = (pps: number): GuestTx => (p, t) => (p === 'macvtap0' && t >= 100 ? { flood: pps, fwd: pps } : { flood: 0, fwd: 0 });
    /** Frames that come back per second on up2 and macvtap1 (NaN: not counted, no tripwire) from 100 ms on. */
    function withReturns(ticks: Tick[], ret: number): Tick[] {
      const t0 = ticks[0]!.tNs;
      return ticks.map((t) => ({
        ...t,
        ports: t.ports.map((r) => ({ ...r, rxRetPps: Number.isNaN(ret) ? NaN : (r.port === 'up2' || r.port === 'macvtap1') && (t.tNs - t0) / 1e6 >= 100 ? ret : 0 })),
      }));
    }

    it('a ring at 5k frames/s, under floodPps, whose frames come back: a loop of both macvtaps within a few samples', () => {
      const r = run(withReturns(trace(oneWay(5000), 400, true, forwards(5000)), 2000));
      expect(r.firstLoopMs).toBeLessThan(5);
      const v = r.all.find((x) => x.kind === 'loop')!;
      expect(v).toMatchObject({ bridge: 'up1', members: ['macvtap0', 'macvtap1'] });
      const clues = v.evidence.clues.join(' | ');
      expect(clues).toMatch(/macvtap0 \(on up1\) forwards what macvtap1 \(on up2\) receives/);
      expect(clues).toMatch(/macvtap1 not hot/);
      expect(clues).toMatch(/frames came back to macvtap1 or up2/);
      expect(v.evidence.thresholds.ringMinReturns).toBe(RING_MIN_RETURNS);
    });

    it('the same rates with no frame coming back (a guest bridging two separate LANs), at 5k/s and at 60k/s: nothing', () => {
      for (const pps of [5000, 60_000]) {
        expect(run(withReturns(trace(oneWay(pps), 400, true, forwards(pps)), 0)).all.filter((v) => v.kind === 'loop')).toEqual([]);
      }
      // Without returns counted (no tripwire) the rates decide as before: 60k/s a ring, 5k/s nothing.
      expect(run(withReturns(trace(oneWay(60_000), 400, true, forwards(60_000)), NaN)).firstLoopMs).toBeLessThan(5);
      expect(run(withReturns(trace(oneWay(5000), 400, true, forwards(5000)), NaN)).all).toEqual([]);
    });

    it('frames coming back to a guest that forwards nothing (a host repeating one frame into the LAN): no loop', () => {
      const r = run(withReturns(trace(oneWay(5000), 400, true, () => ({ flood: 0, fwd: 0 })), 2000));
      expect(r.all.filter((v) => v.kind === 'loop')).toEqual([]);
    });

    it('a few returns (under RING_MIN_RETURNS within the window: a frame sent twice now and then) are no ring', () => {
      // One return every 20 ms: ~2 within the 50 ms window.
      const r = run(withReturns(trace(oneWay(5000), 400, true, forwards(5000)), 50));
      expect(r.all.filter((v) => v.kind === 'loop')).toEqual([]);
    });
  });
});
