import { describe, expect, it } from 'vitest';
import { createNativeMoves, SAME_MOVE_NS } from '../../agent/sources/tripwire-moves.js';
import type { FdbMove } from '../../agent/types.js';

// The tripwire's moves as FDB moves: between ports of one bridge only, in time order, and a
// monitor move the thread already reported is not counted twice.

const PORTS: Record<number, { name: string; bridge: string | null; stpDiscarding?: boolean }> = {
  2: { name: 'up1', bridge: 'br0' },
  3: { name: 'up2', bridge: 'br0' },
  4: { name: 'br0', bridge: null }, // the bridge device: frames going up to the host
  5: { name: 'eth9', bridge: null },
  6: { name: 'up3', bridge: 'br0', stpDiscarding: true }, // STP holds it blocking
};
const X = '02:00:00:00:00:0a';

function setup() {
  let next: Array<number | string> = [];
  const moves = createNativeMoves(
    () => {
      const out = next;
      next = [];
      return out;
    },
    (i) => PORTS[i],
  );
  const got: FdbMove[] = [];
  return {
    feed: (...flat: Array<number | string>) => {
      next = flat;
      moves.pull((mv) => got.push({ ...mv }));
    },
    got,
    moves,
  };
}

describe('tripwire moves', () => {
  it('keeps moves between ports of one bridge: the bridge device and unbridged interfaces in between change nothing', () => {
    const { feed, got } = setup();
    // up1 (learn), br0, up2 (move), br0, eth9, up1 (move), up1 again (nothing).
    feed(1e9, 2, X, 1e9 + 10, 4, X, 1e9 + 20, 3, X, 1e9 + 30, 4, X, 1e9 + 35, 5, X, 1e9 + 40, 2, X);
    feed(1e9 + 50, 4, X, 1e9 + 60, 2, X);
    expect(got).toEqual([
      { tNs: 1e9 + 20, bridge: 'br0', mac: X, port: 'up2' },
      { tNs: 1e9 + 40, bridge: 'br0', mac: X, port: 'up1' },
    ]);
  });

  it('a port STP holds blocking is no place a MAC moves to: the switch returns every broadcast there, and the bridge learns nothing there', () => {
    const { feed, got } = setup();
    // up1 (learn), up3 (blocking: nothing), up1 (nothing), up3, up2 (move): one move only.
    feed(1e9, 2, X, 1e9 + 10, 6, X, 1e9 + 20, 2, X, 1e9 + 30, 6, X, 1e9 + 40, 3, X);
    expect(got).toEqual([{ tNs: 1e9 + 40, bridge: 'br0', mac: X, port: 'up2' }]);
  });

  it('a monitor move to where the thread saw the MAC go within the flap window is the same move (a failover and back stays two moves)', () => {
    const { feed, got, moves } = setup();
    feed(1e9, 2, X, 2e9, 3, X, 2e9 + 20e6, 2, X);
    expect(got.map((m) => m.port)).toEqual(['up2', 'up1']);
    // The monitor's lines for the same two moves, ~3 ms later each.
    expect(moves.seen({ tNs: 2e9 + 3e6, bridge: 'br0', mac: X, port: 'up2' })).toBe(true);
    expect(moves.seen({ tNs: 2e9 + 23e6, bridge: 'br0', mac: X, port: 'up1' })).toBe(true);
    // Another MAC, another bridge, or later than the window: the monitor's own.
    expect(moves.seen({ tNs: 2e9 + 3e6, bridge: 'br0', mac: '02:00:00:00:00:0b', port: 'up2' })).toBe(false);
    expect(moves.seen({ tNs: 2e9 + 3e6, bridge: 'br1', mac: X, port: 'up2' })).toBe(false);
    expect(moves.seen({ tNs: 2e9 + SAME_MOVE_NS + 1, bridge: 'br0', mac: X, port: 'up2' })).toBe(false);
  });

  it('stamps moves in time order with what came before (the detector prunes from the oldest)', () => {
    const { feed, got } = setup();
    feed(5e9, 2, X, 5e9 + 10, 3, X);
    feed(5e9 + 5, 2, X); // read late, older than the last one pushed
    expect(got.map((m) => m.tNs)).toEqual([5e9 + 10, 5e9 + 10]);
  });
});
