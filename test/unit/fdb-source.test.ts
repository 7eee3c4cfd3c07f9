// The fdb source under a storm: more moves between two ticks than it buffers. It must keep the
// NEWEST moves (the detector judges the last tens of ms), dropping the oldest. A real child
// process stands in for `bridge monitor fdb` (bridgeBin), printing what the kernel would.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createFdbSource } from '../../agent/sources/fdb.js';

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
  let t = 0;
  const src = createFdbSource({ now: () => ++t, bridgeBin: bin });
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

it('reports the ports the bridge was seen learning on, and forgets them when the monitor exits', async () => {
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
    // Moves missed while it restarts must not read as "no flap": the ports are forgotten.
    for (let i = 0; i < 40 && src.learning().size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(src.learning().size).toBe(0);
  } finally {
    src.close();
  }
});
