import { describe, expect, it } from 'vitest';
import { slotPool, slotView, type CounterThreadAddon, type CounterThreadHandle, type SlotValue } from '../../agent/sources/packet-slots.js';
import { createPacketSource, type PacketAddon } from '../../agent/sources/packet.js';
import { computeRates } from '../../agent/sample/rates.js';
import { emptyCounters, type Counters, type PortRates } from '../../agent/types.js';

// The JS side of the addon's counter thread (native/counter_thread.c), with the shared memory
// written here the way the thread writes it: seq odd while a slot is written.

const SLOT_BYTES = 32;

function writer(buf: ArrayBuffer) {
  const i32 = new Int32Array(buf);
  const f64 = new Float64Array(buf);
  return {
    begin: (i: number) => void (i32[i * 8] = i32[i * 8]! + 1),
    fields(i: number, total: number, readNs: number, err = 0) {
      i32[i * 8 + 1] = err;
      f64[i * 4 + 1] = total;
      f64[i * 4 + 2] = readNs;
    },
    end: (i: number) => void (i32[i * 8] = i32[i * 8]! + 1),
    publish(i: number, total: number, readNs: number, err = 0) {
      this.begin(i);
      this.fields(i, total, readNs, err);
      this.end(i);
    },
  };
}

describe('slotView: the seqlock read of one slot', () => {
  it('reads a published slot', () => {
    const buf = new ArrayBuffer(4 * SLOT_BYTES);
    writer(buf).publish(2, 1234, 5e9);
    const out: SlotValue = { total: -1, readNs: -1, err: -1 };
    expect(slotView(buf).read(2, out)).toBe(true);
    expect(out).toEqual({ total: 1234, readNs: 5e9, err: 0 });
  });

  it('never returns a slot that is being written: the last value is kept', () => {
    const buf = new ArrayBuffer(SLOT_BYTES);
    const w = writer(buf);
    w.publish(0, 10, 1e9);
    const out: SlotValue = { total: 0, readNs: 0, err: 0 };
    const view = slotView(buf);
    expect(view.read(0, out)).toBe(true);
    // The thread stopped halfway through a write (seq odd, total new, time old): torn.
    w.begin(0);
    w.fields(0, 99, 1e9);
    expect(view.read(0, out)).toBe(false);
    expect(out).toEqual({ total: 10, readNs: 1e9, err: 0 });
    w.fields(0, 99, 2e9);
    w.end(0);
    expect(view.read(0, out)).toBe(true);
    expect(out).toEqual({ total: 99, readNs: 2e9, err: 0 });
  });

  it('retries a read that a write overlapped (seq changed between its two loads)', () => {
    const buf = new ArrayBuffer(SLOT_BYTES);
    const w = writer(buf);
    w.publish(0, 10, 1e9);
    // Atomics.load is the seq read: the first load of the first try sees seq 2, then a whole
    // write (seq 2 -> 4) lands before the second load; the second try reads the new value.
    const load = Atomics.load;
    let loads = 0;
    (Atomics as { load: typeof Atomics.load }).load = ((a: Int32Array, i: number) => {
      const v = load(a, i);
      if (a.buffer === buf && ++loads === 1) w.publish(0, 20, 3e9);
      return v;
    }) as typeof Atomics.load;
    try {
      const out: SlotValue = { total: 0, readNs: 0, err: 0 };
      expect(slotView(buf).read(0, out)).toBe(true);
      expect(out).toEqual({ total: 20, readNs: 3e9, err: 0 });
      expect(loads).toBe(4);
    } finally {
      (Atomics as { load: typeof Atomics.load }).load = load;
    }
  });

  it('pool hands out each slot once until given back', () => {
    const p = slotPool(2);
    expect([p.take(), p.take(), p.take()]).toEqual([0, 1, -1]);
    p.give(1);
    expect(p.take()).toBe(1);
  });
});

describe('rates from counters read at their own times', () => {
  const counters = (rx: number, b: number, m: number, bNs: number, mNs: number): Counters => ({ ...emptyCounters(), ok: true, rxPackets: rx, rxBroadcast: b, rxMulticast: m, bcastReadNs: bNs, mcastReadNs: mNs });
  const out = (): PortRates => ({ port: '', bridge: null, dtMs: 0, rxPps: 0, txPps: 0, rxBps: 0, floodPps: NaN, bcastPps: NaN, valid: false });

  it('divides each count by the interval between its reads, not the tick interval', () => {
    // Tick 1 ms apart; the broadcast counter was read 4 ms apart (a sweep lagged), multicast 2 ms.
    const r = computeRates(counters(0, 0, 0, 10e6, 12e6), counters(1000, 4000, 200, 14e6, 14e6), 1e6, 'p', null, out());
    expect(r.rxPps).toBeCloseTo(1_000_000);
    expect(r.bcastPps).toBeCloseTo(1_000_000);
    expect(r.floodPps).toBeCloseTo(1_100_000);
  });

  it('a tick with no new packet-counter read is no sample (invalid), and the next read is measured over its own interval', () => {
    const o = out();
    computeRates(counters(0, 0, 0, 10e6, 10e6), counters(100, 500, 0, 11e6, 11e6), 1e6, 'p', null, o);
    expect(o.floodPps).toBeCloseTo(500_000);
    // Next tick: the sweep did not finish, the slots still hold the 11 ms read. Holding 500k
    // would let the detector count that one measurement twice.
    computeRates(counters(100, 500, 0, 11e6, 11e6), counters(300, 500, 0, 11e6, 11e6), 1e6, 'p', null, o);
    expect(o.valid).toBe(false);
    // The tick after: the 13 ms read, over the 2 ms since the 11 ms one.
    computeRates(counters(300, 500, 0, 11e6, 11e6), counters(400, 900, 0, 13e6, 13e6), 1e6, 'p', null, o);
    expect(o.valid).toBe(true);
    expect(o.floodPps).toBeCloseTo(200_000);
  });

  it('uses the tick interval when the reader gives no read times', () => {
    const r = computeRates(counters(0, 0, 0, NaN, NaN), counters(10, 30, 0, NaN, NaN), 1e6, 'p', null, out());
    expect(r.floodPps).toBeCloseTo(30_000);
  });
});

/** A fake addon whose "thread" is this test: a sweep is published when the test says so. */
function fakeAddon() {
  let buf: ArrayBuffer | null = null;
  const slots = new Map<number, number>(); // slot -> fd
  const totals = new Map<number, number>(); // fd -> frames
  let kicks = 0;
  let stopped = false;
  const fds = new Set<number>();
  let nextFd = 10;
  const api: PacketAddon & CounterThreadAddon = {
    open: () => (fds.add(nextFd), nextFd++),
    read: () => {
      throw new Error('read on the JS thread: the counter thread should read');
    },
    close: () => {},
    closeMany: async (list) => void list.forEach((fd) => fds.delete(fd)),
    startTripwire: () => {
      throw new Error('unused');
    },
    armTripwire: () => {},
    readTripwire: () => 0,
    stopTripwire: () => {},
    tripwireFrames: () => [],
    setRealtime: () => {},
    countersStart: (n) => ((buf = new ArrayBuffer(n * SLOT_BYTES)), {} as CounterThreadHandle),
    countersBuffer: () => buf!,
    countersWatch: (_h, slot, fd) => {
      if (fd < 0) slots.delete(slot);
      else {
        slots.set(slot, fd);
        totals.set(fd, 0);
        writer(buf!).publish(slot, 0, 0);
      }
    },
    countersKick: () => ++kicks,
    countersWait: () => false, // the sweep never finishes in time: the tick takes what is there
    countersRealtime: () => {},
    countersStop: () => void (stopped = true),
  };
  return {
    api,
    sweep(readNs: number, err = 0) {
      for (const [slot, fd] of slots) writer(buf!).publish(slot, totals.get(fd)!, readNs, err);
    },
    frames: (fd: number, n: number) => totals.set(fd, totals.get(fd)! + n),
    watchedFds: () => [...slots.values()],
    kicks: () => kicks,
    stopped: () => stopped,
    openFds: () => fds.size,
  };
}

describe('packet source on the counter thread (fake addon)', () => {
  it('reads published totals with their read times, never on the JS thread', async () => {
    const f = fakeAddon();
    const src = createPacketSource(undefined, f.api, { slots: 8 });
    expect(src.threaded()).toBe(true);
    src.watch([{ name: 'p0', ifindex: 3, bridge: 'br0' }]);
    const [b, m] = f.watchedFds();
    f.frames(b!, 70);
    f.frames(m!, 5);
    f.sweep(2e6);
    const out = new Map([['p0', emptyCounters()]]);
    out.get('p0')!.ok = true;
    src.prepare!();
    src.read(out);
    expect(f.kicks()).toBe(1);
    expect(out.get('p0')).toMatchObject({ rxBroadcast: 70, rxMulticast: 5, bcastReadNs: 2e6, mcastReadNs: 2e6, ok: true });
    await src.close();
    expect(f.stopped()).toBe(true);
    expect(f.watchedFds()).toEqual([]);
    expect(f.openFds()).toBe(0);
  });

  it('a failed read on the thread marks the port not ok, logged once', () => {
    const f = fakeAddon();
    const warned: Array<{ code?: string }> = [];
    const src = createPacketSource({ warn: (o) => warned.push(o as { code?: string }) }, f.api, { slots: 8 });
    src.watch([{ name: 'p0', ifindex: 3, bridge: 'br0' }]);
    f.sweep(1e6, 19); // ENODEV
    const out = new Map([['p0', { ...emptyCounters(), ok: true }]]);
    src.read(out);
    expect(out.get('p0')!.ok).toBe(false);
    out.get('p0')!.ok = true;
    src.read(out);
    expect(out.get('p0')!.ok).toBe(false);
    expect(warned.map((w) => w.code)).toEqual(['ENODEV']);
  });

  it('frees a dropped port\'s slots before its sockets close, and reuses them', () => {
    const f = fakeAddon();
    const src = createPacketSource(undefined, f.api, { slots: 2 });
    src.watch([{ name: 'p0', ifindex: 3, bridge: 'br0' }]);
    src.watch([{ name: 'p1', ifindex: 4, bridge: 'br0' }]);
    expect(f.watchedFds()).toHaveLength(2);
    f.sweep(1e6);
    const out = new Map([['p1', { ...emptyCounters(), ok: true }]]);
    src.read(out);
    expect(out.get('p1')).toMatchObject({ rxBroadcast: 0, ok: true, bcastReadNs: 1e6 });
  });
});
