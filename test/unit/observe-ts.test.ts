// The kernel-timed observer's series (scripts/lab/observe-ts.c, compiled here with cc and run in
// its --encode mode: frame times in, the series out, no sockets) read by the same analysis as the
// polling observer's: the first and last frames are exact, the last one bracketed by its
// predecessor, rates hold inside bursts, frames after the end are left out and counted. And the
// TS side: drop windows, the observer's argv, the report's instrument line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countAt, ppsBetween, ringDropsBetween, stormStats, type CounterSeries } from '../../scripts/lab/analyze.js';
import { instrumentText, observerArgv } from '../../scripts/lab/observer.js';
import { reactionTable, shapeSummary, type RunFigures } from '../../scripts/lab/reaction-report.js';

const SRC = fileURLToPath(new URL('../../scripts/lab/observe-ts.c', import.meta.url));
const MS = 1e6;
const US = 1e3;
let dir = '';
let bin = '';

type Out = CounterSeries & { frames: number; afterEnd: number; drops: number };

function encode(times: number[], startNs: number, endNs: number): Out {
  const r = spawnSync(bin, ['--encode', '--start-ns', String(startNs), '--end-ns', String(endNs)], { input: times.join('\n') + '\n', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`observe-ts --encode: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Record<string, Out>).x!;
}

function sortedSeries(s: CounterSeries): boolean {
  return s.t.every((t, i) => i === 0 || (t >= s.t[i - 1]! && s.c[i]! >= s.c[i - 1]!));
}

/** n frames every stepNs from t0. */
const burst = (t0: number, n: number, stepNs: number): number[] => Array.from({ length: n }, (_, k) => t0 + k * stepNs);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sb-observe-ts-'));
  bin = join(dir, 'observe-ts');
  const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, SRC], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed: ${r.stderr}`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('observe-ts series', () => {
  it('a 200 kframe/s storm: first and last frame exact, the last bracketed by its predecessor, the rate kept, few points', () => {
    const frames = burst(10 * MS, 4000, 5 * US); // 10 ms .. 29.995 ms
    const s = encode(frames, 1 * MS, 100 * MS);
    expect(sortedSeries(s)).toBe(true);
    expect(s).toMatchObject({ clock: 'kernel', frames: 4000, afterEnd: 0, drops: 0 });
    const st = stormStats(s, 5 * MS);
    expect(st).toMatchObject({ firstFrameNs: 10 * MS, quietAtNs: 29.995 * MS, quietAfterNs: 29.99 * MS, framesLeaked: 4000 });
    expect(ppsBetween(s, 10 * MS, 20 * MS)).toBeGreaterThan(198_000);
    expect(ppsBetween(s, 10 * MS, 20 * MS)).toBeLessThan(202_000);
    expect(s.t.length).toBeLessThan(250);
    // The start point, keepalives while quiet, the end.
    expect([s.t[0], s.c[0]]).toEqual([1 * MS, 0]);
    expect([s.t[s.t.length - 1], s.c[s.c.length - 1]]).toEqual([100 * MS, 4000]);
    expect(s.t.filter((t) => t > 30 * MS).length).toBeGreaterThanOrEqual(7);
  });

  it('frames out of ring order (two CPUs\' backlogs) are sorted: the same series as in order', () => {
    const frames = burst(10 * MS, 1000, 5 * US);
    const shuffled = [...frames.slice(500), ...frames.slice(0, 500)];
    expect(encode(shuffled, 0, 50 * MS)).toEqual(encode(frames, 0, 50 * MS));
  });

  it('a lone frame after a lull is its own exact step (1 ns bracket); after the end nothing counts', () => {
    const frames = [...burst(10 * MS, 100, 5 * US), 40 * MS, 120 * MS];
    const s = encode(frames, 0, 100 * MS);
    expect(s).toMatchObject({ frames: 101, afterEnd: 1 });
    expect(countAt(s, 40 * MS - 1)).toBe(100);
    expect(countAt(s, 40 * MS)).toBe(101);
    const st = stormStats(s, 5 * MS, 20, 0.5); // the burst's end is a lull, the lone frame the end
    expect(st).toMatchObject({ quietAtNs: 40 * MS, quietAfterNs: 40 * MS - 1, framesLeaked: 101 });
    // Without the final frame's quiet gap (the end 10 ms after it) quiet is not claimed.
    expect(stormStats(encode(frames, 0, 50 * MS), 5 * MS, 20, 0.5).quietAtNs).toBeNull();
  });

  it('frames before the start count in the start point; no frames is a flat line', () => {
    const s = encode([2 * MS, 3 * MS], 5 * MS, 30 * MS);
    expect(countAt(s, 5 * MS)).toBe(2);
    expect(sortedSeries(s)).toBe(true);
    const flat = encode([], 0, 30 * MS);
    expect(flat.t).toEqual([0, 10 * MS, 20 * MS, 30 * MS]);
    expect(flat.c).toEqual([0, 0, 0, 0]);
  });

  it('drop windows: only those overlapping the span count; a polled series has none', () => {
    const s: CounterSeries = { t: [], c: [], clock: 'kernel', drops: 7, dropWindows: [[10, 20, 3], [50, 60, 4]] };
    expect(ringDropsBetween(s, 0, 9)).toBe(0);
    expect(ringDropsBetween(s, 15, 55)).toBe(7);
    expect(ringDropsBetween(s, 21, 49)).toBe(0);
    expect(ringDropsBetween(s, 60, Infinity)).toBe(4);
    expect(ringDropsBetween({ t: [1], c: [1] }, 0, 10)).toBe(0);
  });

  it('argv: the C observer or node with observe.mjs; names are checked', () => {
    const paths = { node: '/n', mjs: '/o.mjs', ts: '/o-ts' };
    expect(observerArgv('kernel', ['eth0'], 400, 250, paths)).toEqual(['/o-ts', '--ifaces', 'eth0', '--duration-ms', '400']);
    expect(observerArgv('poll', ['a', 'b'], 400, 1000, paths)).toEqual(['/n', '/o.mjs', '--ifaces', 'a,b', '--duration-ms', '400', '--period-us', '1000']);
    expect(() => observerArgv('kernel', ['bad name'], 400, 250, paths)).toThrow(/invalid interface/);
    expect(() => observerArgv('kernel', [], 400, 250, paths)).toThrow(/no interfaces/);
  });

  it('the report names its instrument and counts storms whose ring lost frames', () => {
    const run = (ms: number, extra: Partial<RunFigures> = {}): RunFigures => ({ msFromInject: ms, framesLeaked: 10, down: ['up1'], stoppedByBreaker: true, ...extra });
    const r = { shape: 'kvm', warm: [run(3, { msQuietAfter: 2.99 }), run(4, { ringDrops: 12, msQuietAfter: 3.99 })], idle: [], cold: [], near: [run(2)], baseline: [] };
    expect(shapeSummary(r).warm).toMatchObject({ ringDropped: 1, observerLate: 0 });
    const table = reactionTable([r], 400, instrumentText('kernel'));
    expect(table.split('\n')[0]).toMatch(/kernel receive timestamp/);
    expect(table).toMatch(/1 with frames lost by the observer's ring/);
    expect(reactionTable([r], 400).split('\n')[0]).toMatch(/^shape/);
  });
});
