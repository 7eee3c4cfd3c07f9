import { describe, expect, it } from 'vitest';
import { cpuShare, parseHostCpu, parseProcStat, parseProcStatus, type CpuSnapshot } from '../../scripts/lab/proc.js';

// Captured on the lab machine (Debian 12, kernel 6.18): `cat /proc/self/stat`, with the comm
// swapped for one that holds a space and a ')' to check field counting from the last ')'.
const STAT =
  '7395 (cat) R 7393 7393 5693 0 -1 4194304 101 0 0 0 7 3 2 1 20 0 1 0 293944 3133440 417 18446744073709551615 94153928278016 94153928297897 140727413997488 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94153928313904 94153928315520 94154869493760 140727414000352 140727414000372 140727414000372 140727414001643 0';

describe('parseProcStat', () => {
  it('reads utime, stime, cutime, cstime and threads', () => {
    expect(parseProcStat(STAT)).toEqual({ pid: 7395, comm: 'cat', state: 'R', ppid: 7393, utime: 7, stime: 3, cutime: 2, cstime: 1, numThreads: 1 });
  });
  it('counts fields from the last parenthesis', () => {
    const s = parseProcStat(STAT.replace('(cat)', '(a b) c)'));
    expect(s.comm).toBe('a b) c');
    expect(s.utime).toBe(7);
    expect(s.numThreads).toBe(1);
  });
  it('rejects text that is not a stat line', () => {
    expect(() => parseProcStat('no parens here')).toThrow(/not a \/proc\/PID\/stat/);
  });
});

describe('parseProcStatus', () => {
  it('reads VmRSS and VmHWM in KiB', () => {
    expect(parseProcStatus('Name:\tcat\nVmPeak:\t    3896 kB\nVmHWM:\t    2172 kB\nVmRSS:\t    2100 kB\n')).toEqual({ rssKb: 2100, hwmKb: 2172 });
  });
  it('gives NaN for a zombie (no Vm lines)', () => {
    const m = parseProcStatus('Name:\tx\nState:\tZ (zombie)\n');
    expect(m.rssKb).toBeNaN();
    expect(m.hwmKb).toBeNaN();
  });
});

describe('parseHostCpu', () => {
  it('sums user..steal and treats idle+iowait as not busy', () => {
    expect(parseHostCpu('cpu  134420 0 103016 332580 497 0 10229 67 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n')).toEqual({
      busy: 134420 + 103016 + 10229 + 67,
      total: 134420 + 103016 + 332580 + 497 + 10229 + 67,
    });
  });
});

describe('cpuShare', () => {
  const snap = (tNs: number, self: number, reaped: number, kids: Array<[number, number]>, threads: Array<[number, number]>): CpuSnapshot => ({
    pid: 10,
    comm: 'node',
    tNs,
    self,
    reaped,
    kids: new Map(kids),
    threads: new Map(threads.map(([tid, ticks]) => [tid, { comm: 'node', ticks }])),
  });
  it('turns tick deltas into percent of one core, children and threads apart', () => {
    // 2 s at 100 ticks/s: 10 ticks = 5% of a core.
    const a = snap(0, 100, 0, [[20, 50]], [[10, 80], [11, 20]]);
    const b = snap(2e9, 110, 1, [[20, 52], [21, 1]], [[10, 88], [11, 22]]);
    const s = cpuShare(a, b, 100);
    expect(s.seconds).toBe(2);
    expect(s.selfPct).toBeCloseTo(5);
    // reaped +1, child 20 +2, child 21 new (counts from 0) +1 = 4 ticks = 2%.
    expect(s.childrenPct).toBeCloseTo(2);
    expect(s.byThread.main).toBeCloseTo(4);
    expect(s.byThread.other).toBeCloseTo(1);
  });
});
