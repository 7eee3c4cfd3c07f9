import { describe, expect, it } from 'vitest';
import { createJoinWatch, type Join } from '../../agent/daemon/ports.js';
import type { PortInfo } from '../../agent/types.js';

// The port rescan's half of issue 11's "cut the port that just joined": which watched ports
// joined a bridge while the agent ran, and when (the breaker reads PortPolicy.joinedNs).

const p = (name: string, ifindex: number, bridge: string | null): PortInfo => ({ name, ifindex, bridge });
const names = (infos: PortInfo[], more: string[] = []) => [...infos.map((i) => i.name), ...more];
/** The joins as [name, atNs, by] rows. */
const rows = (m: ReadonlyMap<string, Join> | null) => (m === null ? null : [...m].map(([n, j]) => [n, j.atNs, j.by]));

describe('createJoinWatch', () => {
  it('counts nothing at the first listing, then an enslave, stamped with the rescan time, kept while it stays', () => {
    const w = createJoinWatch();
    const before = [p('up1', 2, 'br0'), p('up2', 3, null)];
    expect(rows(w(before, names(before), 1000))).toEqual([]);
    const plugged = [p('up1', 2, 'br0'), p('up2', 3, 'br0')];
    expect(rows(w(plugged, names(plugged), 2000))).toEqual([['up2', 2000, 'bridge']]);
    expect(rows(w(plugged, names(plugged), 3000))).toEqual([['up2', 2000, 'bridge']]);
    // Freed, then enslaved again: a new join.
    expect(rows(w(before, names(before), 4000))).toEqual([]);
    expect(rows(w(plugged, names(plugged), 5000))).toEqual([['up2', 5000, 'bridge']]);
  });

  it('counts a new interface that appears already enslaved, and one recreated (new ifindex), and a move to another bridge', () => {
    const w = createJoinWatch();
    const a = [p('up1', 2, 'br0')];
    w(a, names(a), 0);
    const b = [p('up1', 2, 'br0'), p('up3', 9, 'br0')];
    expect(rows(w(b, names(b), 10))).toEqual([['up3', 10, 'bridge']]);
    const c = [p('up1', 7, 'br0'), p('up3', 9, 'br1')];
    expect(rows(w(c, names(c), 20))).toEqual([
      ['up1', 20, 'bridge'],
      ['up3', 20, 'bridge'],
    ]);
  });

  it('does not count a port that was on the host but not watched before (a reload named it): its history is unknown', () => {
    const w = createJoinWatch();
    const a = [p('up1', 2, 'br0')];
    w(a, names(a, ['eth5']), 0);
    const b = [p('up1', 2, 'br0'), p('eth5', 5, 'br0')];
    expect(rows(w(b, names(b), 10))).toEqual([]);
  });
});

describe('createJoinWatch and carrier', () => {
  it('an enslaved port whose carrier came up since the last listing joined then (a cable plugged into a NIC already in the bridge)', () => {
    const ups = new Map([
      ['up1', 4],
      ['up2', 1],
    ]);
    const read: string[] = [];
    const w = createJoinWatch((name) => (read.push(name), ups.get(name) ?? null));
    const a = [p('up1', 2, 'br0'), p('up2', 3, 'br0'), p('vm9', 8, null)];
    expect(rows(w(a, names(a), 0))).toEqual([]);
    expect(rows(w(a, names(a), 10))).toEqual([]);
    ups.set('up2', 2); // carrier down and up again between the listings
    expect(rows(w(a, names(a), 20))).toEqual([['up2', 20, 'carrier']]);
    expect(rows(w(a, names(a), 30))).toEqual([['up2', 20, 'carrier']]);
    // Only bridged ports are read: an unbridged one cannot close a loop by its carrier.
    expect(read.includes('vm9')).toBe(false);
  });

  it('an unknown count (an older kernel, a read that failed) is never a join, before or after', () => {
    const ups = new Map<string, number | null>([['up1', null]]);
    const w = createJoinWatch((name) => ups.get(name) ?? null);
    const a = [p('up1', 2, 'br0')];
    w(a, names(a), 0);
    ups.set('up1', 3);
    expect(rows(w(a, names(a), 10))).toEqual([]);
    ups.set('up1', null);
    expect(rows(w(a, names(a), 20))).toEqual([]);
  });
});

describe('createJoinWatch and renames', () => {
  it('a renamed port keeps what its interface had: not a join, and a join before the rename stays', () => {
    const w = createJoinWatch();
    const a = [p('up1', 2, 'br0'), p('up2', 3, null)];
    w(a, names(a), 0);
    const b = [p('up1', 2, 'br0'), p('up2', 3, 'br0')];
    w(b, names(b), 10);
    const c = [p('up1.100', 2, 'br0'), p('up2.100', 3, 'br0')];
    expect(rows(w(c, names(c), 20))).toEqual([['up2.100', 10, 'bridge']]);
  });
});
