import { describe, expect, it } from 'vitest';
import { createPacketSource, type PacketAddon } from '../../agent/sources/packet.js';
import { emptyCounters, type Counters } from '../../agent/types.js';

// The packet source reads a port's broadcast/multicast counters only when its rx packets moved
// (agent/sources/packet.ts, QUIET_READ_EVERY): a fake addon whose counts the test sets, and the
// rx packets the packets-and-bytes reader would have put in this tick's counters.

function fakeAddon() {
  const counts = new Map<number, number>(); // fd -> running total
  const reads: number[] = [];
  let next = 10;
  const addon = {
    open: () => {
      const fd = next++;
      counts.set(fd, 0);
      return fd;
    },
    read: (fd: number) => {
      reads.push(fd);
      return counts.get(fd)!;
    },
    close: () => {},
    closeMany: async () => {},
  } as unknown as PacketAddon;
  return { addon, counts, reads };
}

function setup() {
  const f = fakeAddon();
  const warns: string[] = [];
  const src = createPacketSource({ warn: (_o, msg) => warns.push(msg) }, f.addon, { skipQuiet: true });
  src.watch([{ name: 'up1', ifindex: 3, bridge: 'br0' }]);
  const bcastFd = 10;
  /** One tick with rx packets `rx`: the counters the source left, and whether it read the addon. */
  const tick = (rx: number, ok = true): { c: Counters; read: boolean } => {
    const before = f.reads.length;
    const c: Counters = { ...emptyCounters(), ok, rxPackets: rx };
    src.read(new Map([['up1', c]]));
    return { c, read: f.reads.length > before };
  };
  return { ...f, warns, tick, bcastFd };
}

describe('packet source: quiet ports are not read', () => {
  it('reads while rx moves; once rx held still across a read, skips and carries the last totals', () => {
    const t = setup();
    t.counts.set(t.bcastFd, 5);
    expect(t.tick(100).read).toBe(true);
    t.counts.set(t.bcastFd, 9);
    expect(t.tick(110)).toMatchObject({ read: true, c: { rxBroadcast: 9, rxMulticast: 0 } });
    // rx unchanged: one settling read (it would collect frames the addon deferred), then skips.
    expect(t.tick(110).read).toBe(true);
    const s = t.tick(110);
    expect(s.read).toBe(false);
    expect(s.c).toMatchObject({ rxBroadcast: 9, rxMulticast: 0, ok: true });
    // rx moves again: read at once.
    t.counts.set(t.bcastFd, 12);
    expect(t.tick(111)).toMatchObject({ read: true, c: { rxBroadcast: 12 } });
  });

  it('a quiet port is still read every 64th tick', () => {
    const t = setup();
    t.tick(1);
    t.tick(1); // settled
    const readsAt: number[] = [];
    for (let i = 0; i < 200; i++) if (t.tick(1).read) readsAt.push(i);
    expect(readsAt).toEqual([63, 127, 191]);
  });

  it('frames the addon deferred to the settling read are not taken for uncounted frames', () => {
    const t = setup();
    t.tick(50);
    t.counts.set(t.bcastFd, 3); // the deferred frames, counted by the first quiet read
    expect(t.tick(50)).toMatchObject({ read: true, c: { rxBroadcast: 3 } });
    expect(t.warns).toEqual([]);
    expect(t.tick(50).read).toBe(false);
  });

  it('frames counted while rx packets stood still across two reads: that port is read every tick from then on', () => {
    const t = setup();
    t.tick(7);
    t.tick(7); // settled
    for (let i = 0; i < 63; i++) t.tick(7);
    t.counts.set(t.bcastFd, 40); // a driver that does not count rx: only the forced read sees it
    expect(t.tick(7)).toMatchObject({ read: true, c: { rxBroadcast: 40 } });
    expect(t.warns).toEqual(['rx packets do not count every frame received: broadcast counters read every tick']);
    expect([t.tick(7).read, t.tick(7).read, t.tick(7).read]).toEqual([true, true, true]);
    expect(t.warns).toHaveLength(1);
  });

  it('without skipQuiet (no reader fills rx packets before it) every port is read every tick', () => {
    const f = fakeAddon();
    const src = createPacketSource(undefined, f.addon);
    src.watch([{ name: 'up1', ifindex: 3, bridge: 'br0' }]);
    for (let i = 0; i < 10; i++) src.read(new Map([['up1', { ...emptyCounters(), ok: true, rxPackets: 0 }]]));
    expect(f.reads).toHaveLength(20);
  });

  it('a port the other reader found missing (ok false) is read, not skipped', () => {
    const t = setup();
    t.tick(5);
    t.tick(5); // settled
    expect(t.tick(5).read).toBe(false);
    expect(t.tick(5, false).read).toBe(true);
  });
});
