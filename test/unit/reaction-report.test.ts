// The reaction benchmark's report and shape list (issue 11): a storm the bench had to end is
// counted, never timed; a shape whose near-limit poller stopped none has no reference (no ratio,
// no NaN in the JSON); the slow large-frame loops are bench shapes in the default list.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { reactionTable, shapeSummary, type RunFigures, type ShapeFigures } from '../../scripts/lab/reaction-report.js';
import { pollerMiss, POLLER_MS, shapeSpec, stoppedByBreaker, SHAPES } from '../../scripts/lab/shape-storms.js';
import { enslaveArgv } from '../../scripts/lab/shapes.js';
import { fullIntervalEndNs, loopStillClosed } from '../../scripts/lab/scenario.js';

const stopped = (ms: number, frames = 10): RunFigures => ({ msFromInject: ms, framesLeaked: frames, down: ['up1'], stoppedByBreaker: true });
const byHand: RunFigures = { msFromInject: NaN, framesLeaked: 70, down: [], stoppedByBreaker: false };

describe('reaction report', () => {
  it('a shape whose near-limit poller stopped none says "no reference", with no ratio and no NaN in its JSON', () => {
    const r: ShapeFigures = { shape: 'kvm-slow-1500', warm: [stopped(80), stopped(90)], idle: [], cold: [stopped(100)], near: [byHand, byHand], baseline: [] };
    const s = shapeSummary(r);
    expect(s.reference).toBe('none');
    expect(s.warm).toMatchObject({ runs: 2, stopped: 2, msP50: 80, msMax: 90, xNearLimit: null });
    expect(s.nearLimit).toMatchObject({ runs: 2, stopped: 0, msP50: null, xNearLimit: null });
    expect(JSON.stringify(s)).not.toMatch(/NaN/);
    const table = reactionTable([r], 400);
    const rows = table.split('\n').filter((l) => l.startsWith('kvm-slow-1500'));
    expect(rows.filter((l) => / warm | cold /.test(l)).every((l) => l.includes('no reference'))).toBe(true);
    expect(table).toMatch(/near-limit stopped none of 2 storms within 400 ms.*no reference/);
    expect(table).not.toMatch(/NaN|Infinity|\d+\.\d+x/);
  });

  it('a storm the bench ended is counted in runs, not in the times; the ratio is over stopped storms', () => {
    const r: ShapeFigures = { shape: 'kvm', warm: [stopped(4), stopped(6), byHand], idle: [], cold: [], near: [stopped(2), stopped(2)], baseline: [{ stats: { framesLeaked: 1000 } }] };
    const s = shapeSummary(r);
    expect(s.reference).toBe('near-limit');
    expect(s.warm).toMatchObject({ runs: 3, stopped: 2, msP50: 4, msMax: 6, xNearLimit: 2 });
    const warmRow = reactionTable([r], 400).split('\n').find((l) => / warm /.test(l))!;
    expect(warmRow).toMatch(/kvm\s+warm\s+3\s+2\s+4\.00 \/\s+6\.00 \/\s+6\.00\s+2\.00x/);
  });

  it('an idle column (same agent, sampler idle) has its own row and ratio, between warm and cold', () => {
    const r: ShapeFigures = { shape: 'kvm', warm: [stopped(3), stopped(5)], idle: [stopped(8), stopped(12), byHand], cold: [stopped(20)], near: [stopped(2)], baseline: [] };
    const s = shapeSummary(r);
    expect(s.idle).toMatchObject({ runs: 3, stopped: 2, msP50: 8, msMax: 12, xNearLimit: 4 });
    expect(s.warm.msP50).toBe(3);
    expect(s.cold.msP50).toBe(20);
    const rows = reactionTable([r], 400).split('\n').slice(1).map((l) => l.split(/\s+/)[1]);
    expect(rows).toEqual(['warm', 'idle', 'cold', 'near-limit']);
    expect(reactionTable([r], 400)).toMatch(/kvm\s+idle\s+3\s+2\s+8\.00 \/\s+12\.00 \/\s+12\.00\s+4\.00x/);
  });

  it('a storm-control run that shut nothing is counted, not in its frames p50', () => {
    const sc = (frames: number, shut: string[]) => ({ stats: { framesLeaked: frames }, shut });
    const r: ShapeFigures = { shape: 'kvm', warm: [stopped(4, 10)], idle: [], cold: [], near: [], baseline: [sc(1000, ['up1', 'up2']), sc(900000, []), sc(900000, [])] };
    const line = reactionTable([r], 400).split('\n').find((l) => l.includes('storm-control'))!;
    expect(line).toMatch(/storm-control 3 \(2 of them shut nothing: the bench opened the loop, not counted\): frames leaked p50 1000; the agent \(warm\) leaks 1\.00% of that/);
    const none: ShapeFigures = { ...r, baseline: [sc(900000, [])] };
    expect(reactionTable([none], 400)).toMatch(/storm-control 1 \(1 of them.*\): no figure/);
  });

  it('counts the stopped storms whose quiet at prod came before the stop call began (stalled), and says so on the row', () => {
    const at = (ms: number, stop: number): RunFigures => ({ ...stopped(ms), msStopStart: stop });
    const r: ShapeFigures = { shape: 'kvm-hotplug', warm: [at(5, 3), at(0.49, 1.83), at(3, 3.1), byHand], idle: [], cold: [stopped(7)], near: [at(2.7, 1.5)], baseline: [] };
    const s = shapeSummary(r);
    expect(s.warm.quietBeforeStop).toBe(2);
    expect(s.cold.quietBeforeStop).toBe(0);
    expect(s.nearLimit.quietBeforeStop).toBe(0);
    const rows = reactionTable([r], 400).split('\n');
    expect(rows.find((l) => / warm /.test(l))).toMatch(/\(2 quiet at prod before the stop began: stalled\)$/);
    expect(rows.find((l) => / cold /.test(l))).not.toMatch(/quiet at prod before/);
  });

  it('counts the storms whose quiet poll came > 1 ms after the poll before it (observer held off its core), with the earlier bound', () => {
    const lag = (ms: number, after: number): RunFigures => ({ ...stopped(ms), msQuietAfter: after });
    const r: ShapeFigures = { shape: 'kvm', warm: [lag(3, 2.8), lag(4, 3.9)], idle: [], cold: [lag(12, 5), lag(9, 8.5), lag(11, 4.5)], near: [lag(2, 1.9)], baseline: [] };
    const s = shapeSummary(r);
    expect(s.warm.observerLate).toBe(0);
    expect(s.cold).toMatchObject({ observerLate: 2, msP50: 11, msAfterP50: 5 });
    const rows = reactionTable([r], 400).split('\n');
    expect(rows.find((l) => / cold /.test(l))).toMatch(/\(2 polled > 1 ms late at the end: last frame after p50 5(\.00)? ms\)$/);
    expect(rows.find((l) => / warm /.test(l))).not.toMatch(/polled/);
  });

  it('no near-limit runs at all (--near 0) is "not run", not "no reference"', () => {
    const r: ShapeFigures = { shape: 'kvm', warm: [stopped(4)], idle: [], cold: [], near: [], baseline: [] };
    expect(shapeSummary(r).reference).toBe('not run');
    expect(reactionTable([r], 400)).not.toMatch(/no reference/);
  });
});

describe('who stopped a storm', () => {
  const loop = { loopPorts: ['up1', 'up2'] };
  it('a loop: a new down port opening it is the breaker; nothing down is the bench', () => {
    expect(stoppedByBreaker(loop, [], ['up1'])).toBe(true);
    expect(stoppedByBreaker(loop, [], [])).toBe(false);
  });
  it('three uplinks: one shut leaves the loop closed', () => {
    expect(stoppedByBreaker({ loopPorts: ['up1', 'up2', 'up3'] }, [], ['up1'])).toBe(false);
    expect(stoppedByBreaker({ loopPorts: ['up1', 'up2', 'up3'] }, [], ['up1', 'up2'])).toBe(true);
  });
  it('a flood (up2 down before the storm): only a new down stops it', () => {
    expect(stoppedByBreaker({ loopPorts: ['up1'] }, ['up2'], ['up2'])).toBe(false);
    expect(stoppedByBreaker({ loopPorts: ['up1'] }, ['up2'], ['up2', 'vm1'])).toBe(true);
  });
  it('a hairpin port looping alone (loopMinMembers 1): only its own down stops it, and up it is still closed', () => {
    const hairpin = { loopPorts: ['up1'], loopMinMembers: 1 };
    expect(stoppedByBreaker(hairpin, [], ['vm1'])).toBe(false);
    expect(stoppedByBreaker(hairpin, [], ['up1'])).toBe(true);
    expect(loopStillClosed(hairpin, [])).toBe(true);
    expect(loopStillClosed({ loopPorts: ['up1'] }, [])).toBe(false);
  });
});

describe('the storm-control baseline waits for a whole interval of the storm', () => {
  const S = 5e9;
  const I = 1000;
  it('the first interval wholly after the frame: the one after the boundary that follows it', () => {
    expect(fullIntervalEndNs(S, I, S + 10e6)).toBe(S + 2000e6);
    expect(fullIntervalEndNs(S, I, S + 990e6)).toBe(S + 2000e6);
    // A frame that left 1.95 s in (a slow sender start) gets until 3 s: a fixed 2.6 s run had ended first.
    expect(fullIntervalEndNs(S, I, S + 1950e6)).toBe(S + 3000e6);
    expect(fullIntervalEndNs(S, I, S + 1000e6)).toBe(S + 3000e6);
    for (const t of [0, 1, 499e6, 999_999_999, 3456e6]) {
      const end = fullIntervalEndNs(S, I, S + t);
      expect(end - (S + t)).toBeGreaterThanOrEqual(I * 1e6);
      expect(end - (S + t)).toBeLessThanOrEqual(2 * I * 1e6);
      expect((end - S) % (I * 1e6)).toBe(0);
    }
  });
});

describe('the near-limit poller', () => {
  it('outlives any start-up delay between it and the frame (it once ran observeMs + 1000 from its own start)', () => {
    // 400 ms of observation plus an observer and a sender start of up to several seconds on a busy machine.
    expect(POLLER_MS).toBeGreaterThanOrEqual(400 + 1500 + 10_000);
    expect(POLLER_MS).toBeLessThanOrEqual(60_000); // near-limit-run's own bound
  });
  it('a storm it did not stop says why', () => {
    expect(pollerMiss({})).toBe('the poller gave no result');
    expect(pollerMiss({ pollerWindow: { startMs: -1700, endMs: -300 }, pollerCuts: [] })).toBe('the poller ended 300.00 ms before the frame');
    expect(pollerMiss({ pollerWindow: { startMs: -500, endMs: 420 }, pollerCuts: [] })).toBe('the poller cut nothing in 420 ms after the frame');
    expect(pollerMiss({ pollerWindow: { startMs: -500, endMs: 420 }, pollerCuts: [{ port: 'up1', ms: 2, ok: false, error: 'EACCES' }] })).toMatch(/cut failed: up1 at 2\.00 ms \(EACCES\)/);
  });
});

describe('bench shapes', () => {
  it('the slow large-frame loops run by default: 1500-byte and 9000-byte broadcasts, cut at up1, no storm-control baseline', () => {
    expect(SHAPES).toContain('kvm-slow-1500');
    expect(SHAPES).toContain('kvm-jumbo');
    expect(shapeSpec('kvm-slow-1500')).toMatchObject({ base: 'kvm', kind: 'broadcast', size: 1500, flood: false, cut: ['up1'], baseline: false });
    expect(shapeSpec('kvm-jumbo')).toMatchObject({ base: 'kvm', kind: 'broadcast', size: 9000, flood: false, cut: ['up1'], baseline: false });
    expect(SHAPES.filter((s) => shapeSpec(s).baseline)).toEqual(['kvm', 'esx', 'kvm-vxlan']);
  });

  it('kvm-hotplug runs by default: up2 freed at prepare and every reset, enslaved by plug; the poller may cut both uplinks', () => {
    expect(SHAPES).toContain('kvm-hotplug');
    const s = shapeSpec('kvm-hotplug');
    expect(s).toMatchObject({ base: 'kvm', kind: 'broadcast', flood: false, cut: ['up1', 'up2'], baseline: false });
    expect(typeof s.plug).toBe('function');
    expect(SHAPES.filter((x) => shapeSpec(x).plug)).toEqual(['kvm-hotplug', 'kvm-carrier']);
    expect(shapeSpec('kvm-carrier')).toMatchObject({ base: 'kvm', kind: 'broadcast', flood: false, cut: ['up1', 'up2'], baseline: false });
    const lab = { ns: { host: 'sbx-host' }, bridge: 'br0' } as const;
    expect(enslaveArgv(lab as never, 'up2', true)).toEqual(['ip', '-n', 'sbx-host', 'link', 'set', 'dev', 'up2', 'master', 'br0']);
    expect(enslaveArgv(lab as never, 'up2', false)).toEqual(['ip', '-n', 'sbx-host', 'link', 'set', 'dev', 'up2', 'nomaster']);
    expect(() => enslaveArgv(lab as never, 'up2;x', true)).toThrow();
  });

  it('kvm-macvtap runs by default: a bridgeless host, one broadcast, the poller cuts the guest NIC macvtap1 (the receiving side); lab-bench.yaml names macvtap* as vm', () => {
    expect(SHAPES).toContain('kvm-macvtap');
    expect(shapeSpec('kvm-macvtap')).toMatchObject({ base: 'kvm', kind: 'broadcast', flood: false, cut: ['macvtap1'], baseline: false });
    expect(readFileSync(new URL('../../policies/lab-bench.yaml', import.meta.url), 'utf8')).toMatch(/match: "macvtap\*".*\n\s+role: vm/);
  });

  it('kvm-vxlan runs by default: the overlay loop, one broadcast, the poller cuts the tunnel port; storm-control applies; lab-bench.yaml names vxlan-* as uplink', () => {
    expect(SHAPES).toContain('kvm-vxlan');
    expect(shapeSpec('kvm-vxlan')).toMatchObject({ base: 'kvm', kind: 'broadcast', flood: false, cut: ['vxlan-5'], baseline: true });
    expect(readFileSync(new URL('../../policies/lab-bench.yaml', import.meta.url), 'utf8')).toMatch(/match: "vxlan-\*".*\n\s+role: uplink/);
  });
});
