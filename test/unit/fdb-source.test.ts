// The fdb source under a storm: more moves between two ticks than it buffers. It must keep the
// NEWEST moves (the detector judges the last tens of ms), dropping the oldest. A real child
// process stands in for `bridge monitor fdb` (bridgeBin), printing what the kernel would.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createFdbSource, LINE_BURST, warmUpFdbParsing } from '../../agent/sources/fdb.js';
import { deliverLines } from '../../agent/host/line-child.js';

const dir = mkdtempSync(join(tmpdir(), 'sbt-fdb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('keeps the newest moves when more arrive between two drains than it buffers', async () => {
  // 5000 lines: one MAC alternating between up1 and up2 (4999 moves after the first learn),
  // the last line on up2; then the stand-in idles so the source does not restart it.
  const bin = join(dir, 'bridge');
  writeFileSync(
    bin,
    `#!/bin/sh\ni=0\nwhile [ $i -lt 5000 ]; do\n  if [ $((i % 2)) -eq 0 ]; then d=up1; else d=up2; fi\n  echo "02:00:00:00:00:01 dev $d master br0"\n  i=$((i + 1))\ndone\nexec sleep 5\n`,
  );
  chmodSync(bin, 0o755);
  // No line budget here (the next case is about that): every line is parsed.
  let t = 0;
  const src = createFdbSource({ now: () => ++t, bridgeBin: bin, lineBudget: { perMs: Infinity, burst: Infinity } });
  try {
    for (let i = 0; i < 25; i++) await new Promise((r) => setTimeout(r, 20));
    const moves = src.drain();
    expect(moves.length + src.dropped).toBe(4999);
    expect(src.dropped).toBeGreaterThan(0);
    // The newest survived: the last move is the last line's (up2), at the latest time stamp.
    expect(moves.at(-1)).toMatchObject({ port: 'up2', mac: '02:00:00:00:00:01', bridge: 'br0' });
    expect(moves.at(-1)!.tNs).toBe(t);
  } finally {
    src.close();
  }
});

it('parses at most LINE_BURST lines plus LINES_PER_MS per ms: a storm of lines is thinned, not queued on the JS thread', async () => {
  // 20000 lines in one go (one MAC flapping), then, 300 ms later, one line for another MAC.
  const bin = join(dir, 'bridge-storm');
  writeFileSync(
    bin,
    `#!/bin/sh\nawk 'BEGIN { for (i = 0; i < 20000; i++) printf "02:00:00:00:00:01 dev up%d master br0\\n", 1 + i % 2 }'\nsleep 0.3\necho "02:00:00:00:00:09 dev vm1 master br0"\necho "02:00:00:00:00:09 dev up1 master br0"\nexec sleep 5\n`,
  );
  chmodSync(bin, 0o755);
  let t = 0;
  const src = createFdbSource({ now: () => t, bridgeBin: bin });
  try {
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 20));
    const storm = src.drain().length;
    // The clock stood still: the burst budget only (the first line is a learn, not a move).
    expect(storm).toBeGreaterThan(LINE_BURST / 2);
    expect(storm).toBeLessThan(LINE_BURST);
    t = 1e9; // time passes: the budget refills, and the next lines are read whole
    const later: object[] = [];
    for (let i = 0; i < 40 && later.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      later.push(...src.drain());
    }
    expect(later).toMatchObject([{ mac: '02:00:00:00:00:09', port: 'up1' }]);
  } finally {
    src.close();
  }
});

it('reports the ports and bridges seen learning, and forgets them when the monitor exits', async () => {
  const bin = join(dir, 'bridge-learn');
  // Two learns and a self entry (no master: not learned by the bridge), then the child exits.
  writeFileSync(bin, `#!/bin/sh\necho "02:00:00:00:00:01 dev up1 master br0"\necho "02:00:00:00:00:02 dev vm1 master br0"\necho "02:00:00:00:00:03 dev up2 self permanent"\nsleep 0.3\n`);
  chmodSync(bin, 0o755);
  const src = createFdbSource({ now: () => 0, bridgeBin: bin });
  try {
    for (let i = 0; i < 10 && src.learning().size < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect([...src.learning()].sort()).toEqual(['up1', 'vm1']);
    const f = { tNs: 0, fdbMoves: [], warm: false } as import('../../agent/types.js').TickFrame;
    src.collect(f);
    expect([...f.fdbPorts!].sort()).toEqual(['up1', 'vm1']);
    // ...and their bridge (a port of it whose MACs predate the monitor has a view too); the self entry names none.
    expect([...f.fdbBridges!]).toEqual(['br0']);
    // Moves missed while it restarts must not read as "no flap": the ports are forgotten.
    for (let i = 0; i < 40 && src.learning().size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(src.learning().size).toBe(0);
    expect(src.learningBridges().size).toBe(0);
  } finally {
    src.close();
  }
});

/** SCHED_FIFO priority of a process, from /proc/PID/stat (policy field 41: 1 is SCHED_FIFO; rt_priority field 40). */
function fifoPriority(pid: number): number | null {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 on
  return Number(f[41 - 3]) === 1 ? Number(f[40 - 3]) : null;
}

it('runs the monitor at the sampling thread SCHED_FIFO priority (a storm must not delay its MAC moves)', async () => {
  // Needs CAP_SYS_NICE (root, as the agent and CI run); the stand-in idles.
  const bin = join(dir, 'bridge-prio');
  writeFileSync(bin, `#!/bin/sh\necho "pid $$"\nsleep 5\n`); // not exec: its command line names it
  chmodSync(bin, 0o755);
  const warns: string[] = [];
  let pid = 0;
  const src = createFdbSource({ now: () => 0, bridgeBin: bin, realtimePriority: 7, warn: (_o, m) => warns.push(m) });
  const plain = createFdbSource({ now: () => 0, bridgeBin: bin });
  try {
    const pids = (): number[] => {
      try {
        return execFileSync('pgrep', ['-f', `${bin} monitor fdb`], { encoding: 'utf8' }).trim().split('\n').map(Number);
      } catch {
        return []; // not started yet
      }
    };
    for (let i = 0; i < 100 && (pids().length < 2 || !pids().map(fifoPriority).includes(7)); i++) await new Promise((r) => setTimeout(r, 20));
    const prios = pids().map(fifoPriority).sort();
    pid = pids()[0]!;
    expect(warns).toEqual([]);
    expect(prios).toEqual([7, null]); // the one asked for FIFO 7 has it; the other stays normal
  } finally {
    src.close();
    plain.close();
  }
  expect(pid).toBeGreaterThan(0);
});

it('the start-up warm-up runs the parser and a move tracker on flapping MACs (every path: learns, moves, deletes, self entries)', () => {
  // Moves seen: a warm-up that saw none compiled nothing of the move path.
  const moves = warmUpFdbParsing();
  expect(moves).toBeGreaterThan(300);
  // Pure: the same again (its tracker is its own, not a module-level one).
  expect(warmUpFdbParsing()).toBe(moves);
  expect(warmUpFdbParsing(2)).toBeGreaterThan(0);
});

it('deliverLines hands over at most max complete lines and keeps the unfinished one, skipped lines never split', () => {
  const got: string[] = [];
  expect(deliverLines('a\nb\nc\npart', 2, (l) => got.push(l))).toBe('part');
  expect(got).toEqual(['a', 'b']);
  expect(deliverLines('a\nb\npart', Infinity, (l) => got.push(l))).toBe('part');
  expect(got).toEqual(['a', 'b', 'a', 'b']);
  expect(deliverLines('x\ny\n', 0, (l) => got.push(l))).toBe('');
  expect(deliverLines('no newline yet', 5, (l) => got.push(l))).toBe('no newline yet');
  expect(got.length).toBe(4);
});

it('takes in the tripwire\'s moves beside the monitor\'s, and a monitor line for a move the thread already saw is not counted again', async () => {
  // The monitor prints, after a pause, the two moves the thread saw at once, then one of its own.
  const bin = join(dir, 'bridge-late');
  writeFileSync(
    bin,
    `#!/bin/sh\nsleep 0.2\necho "02:00:00:00:00:0a dev up1 master br0"\necho "02:00:00:00:00:0a dev up2 master br0"\necho "02:00:00:00:00:0b dev up1 master br0"\necho "02:00:00:00:00:0b dev up2 master br0"\nexec sleep 5\n`,
  );
  chmodSync(bin, 0o755);
  const X = '02:00:00:00:00:0a';
  let pending: Array<number | string> = [];
  let t = 1e9;
  const src = createFdbSource({
    now: () => t,
    bridgeBin: bin,
    tripwire: {
      read: () => {
        const out = pending;
        pending = [];
        return out;
      },
      portAt: (i) => ({ 2: { name: 'up1', bridge: 'br0' }, 3: { name: 'up2', bridge: 'br0' } })[i],
    },
  });
  try {
    pending = [t, 2, X, t + 1e5, 3, X];
    const frame = { tNs: t, fdbMoves: [] as readonly unknown[], fdbPorts: new Set<string>(), warm: false };
    src.collect(frame as never);
    expect(frame.fdbMoves).toEqual([{ tNs: t + 1e5, bridge: 'br0', mac: X, port: 'up2' }]);
    t += 3e6;
    const later: unknown[] = [];
    for (let i = 0; i < 30 && later.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      later.push(...src.drain().map((m) => ({ ...m })));
    }
    // Only the monitor's own move (0b); its 0a move to up2 was the thread's, ~3 ms earlier.
    expect(later).toEqual([{ tNs: t, bridge: 'br0', mac: '02:00:00:00:00:0b', port: 'up2' }]);
  } finally {
    src.close();
  }
});

it('wakes the sampler on the thread\'s moves too: a chunk whose lines are only moves the thread saw first still wakes it, once', async () => {
  // A broadcast loop: the thread sees every flap before the monitor prints it, so the monitor's
  // lines are all "seen". The wake once came only from a line's own move, and a loop too slow for
  // the tripwire's burst lost the active rate until the next idle tick (lab, kvm-many, session 21).
  const bin = join(dir, 'bridge-seen');
  writeFileSync(bin, `#!/bin/sh\nsleep 0.2\necho "02:00:00:00:00:0c dev up1 master br0"\necho "02:00:00:00:00:0c dev up2 master br0"\nexec sleep 5\n`);
  chmodSync(bin, 0o755);
  const X = '02:00:00:00:00:0c';
  const t = 1e9;
  let pending: Array<number | string> = [t, 2, X, t + 1e5, 3, X];
  const wakes: boolean[] = [];
  const quietWakes: boolean[] = [];
  const tripwire = {
    read: () => {
      const out = pending;
      pending = [];
      return out;
    },
    portAt: (i: number) => ({ 2: { name: 'up1', bridge: 'br0' }, 3: { name: 'up2', bridge: 'br0' } })[i],
  };
  const src = createFdbSource({ now: () => t, bridgeBin: bin, tripwire, onMove: (byThread) => wakes.push(byThread) });
  // Control: the same lines with nothing from the thread are a move of the monitor's own, which woke it before too.
  const plain = createFdbSource({ now: () => t, bridgeBin: bin, onMove: (byThread) => quietWakes.push(byThread) });
  try {
    let moves: unknown[] = [];
    for (let i = 0; i < 30 && (moves.length === 0 || quietWakes.length === 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
      moves = moves.concat(src.drain().map((m) => ({ ...m })));
    }
    // The one move is the thread's (the monitor's line for it was not counted again)...
    expect(moves).toEqual([{ tNs: t + 1e5, bridge: 'br0', mac: X, port: 'up2' }]);
    // ...and it woke the sampler, said to be the thread's (the scheduler lets those only continue a wake),
    // once: the chunk that took it in; the monitor's own move wakes as before.
    expect(wakes).toEqual([true]);
    expect(quietWakes).toEqual([false]);
  } finally {
    src.close();
    plain.close();
  }
});
