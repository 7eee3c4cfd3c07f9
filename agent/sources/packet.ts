import type { CounterReader, Counters, PortInfo } from '../types.js';
import { isValidIfName } from '../host/names.js';
import { addonPath, loadAddon } from '../host/addon.js';
import { constants } from 'node:os';
import { slotPool, slotView, type CounterThreadAddon, type CounterThreadHandle, type SlotPool, type SlotValue, type SlotView } from './packet-slots.js';

// Incoming broadcast and multicast frames per port. sysfs and netlink have no broadcast
// counter and `multicast` stays 0 on veth (LAB-FACTS), so the native addon
// (native/packet_stats.c) lets the kernel count: one AF_PACKET socket per port and kind
// with a BPF filter on skb->pkt_type, read with getsockopt(PACKET_STATISTICS) (~0.5 µs,
// no frame ever reaches user space). The addon turns the kernel's clear-on-read
// statistics into running totals, so values here are ordinary monotonic counters that
// restart at 0 only when a port's sockets are reopened.
// The reads run on the addon's counter thread, not the tick's (packet-slots.ts says why): each
// count comes with the monotonic time it was read at (Counters.bcastReadNs/mcastReadNs).

export type PacketKind = 'broadcast' | 'multicast';

/** The native addon's API (build/Release/packet_stats.node). */
export interface PacketAddon extends Partial<CounterThreadAddon> {
  /** Opens a counter on ifname; throws Error with `code` = errno name (ENODEV, EPERM, ...). */
  open(ifname: string, kind: PacketKind): number;
  /** Frames matched since open. Throws ENODEV once the interface was deleted (or left the namespace). */
  read(fd: number): number;
  close(fd: number): void;
  /**
   * Forgets every fd at once and closes them on native threads, resolving when all are closed.
   * Each AF_PACKET close waits for an RCU grace period (~12 ms without rcu_expedited): closed in
   * parallel those waits overlap, and the JS thread never waits for them (native/packet_stats.c).
   */
  closeMany(fds: readonly number[]): Promise<void>;
  /** Start the tripwire thread (SCHED_FIFO at rtPriority when > 0); onFrame runs on the JS thread once per arm. */
  startTripwire(onFrame: () => void, rtPriority: number): TripwireHandle;
  armTripwire(h: TripwireHandle): void;
  /** Broadcast/multicast frames the tripwire's filter matched since start, on all interfaces. */
  readTripwire(h: TripwireHandle): number;
  stopTripwire(h: TripwireHandle): void;
  /**
   * The tripwire's evidence (first bytes of each frame), oldest first: the storm's onset (the
   * frames that froze its head ring, `onset: true`) then the latest frames; without a storm, the
   * last frames it received. Reading re-opens the head for the next storm.
   */
  tripwireFrames(h: TripwireHandle): TripwireFrame[];
  /** SCHED_FIFO for the calling thread, reset on fork (children run at normal priority). */
  setRealtime(priority: number): void;
}

/** One frame the tripwire kept: wall-clock time, interface, original length, first bytes. */
export interface TripwireFrame {
  sec: number;
  nsec: number;
  ifindex: number;
  /** Length on the wire; data holds at most the first 128 bytes. */
  len: number;
  /** PACKET_BROADCAST (1) or PACKET_MULTICAST (2). */
  pktType: number;
  /** One of the storm's first frames (the frozen head), not one of the latest. */
  onset?: boolean;
  data: Buffer;
}

/** Opaque native handle. */
export type TripwireHandle = { readonly __tripwire: unique symbol };


export interface PacketLog {
  warn(obj: object, msg: string): void;
}

/** Loads the addon, or says why not, so the daemon can run without broadcast counts. */
export function loadPacketAddon(): PacketAddon | { error: string } {
  const addon = loadAddon();
  if ('error' in addon) return { error: String(addon.error) };
  if (typeof addon.open !== 'function' || typeof addon.read !== 'function' || typeof addon.closeMany !== 'function') {
    return { error: `${addonPath()}: not the packet_stats addon (open/read/closeMany missing)` };
  }
  return addon as unknown as PacketAddon;
}

interface Watched {
  name: string;
  ifindex: number;
  /** -1 when the port could not be opened: its broadcast/multicast counts are unknown (NaN). */
  bcast: number;
  mcast: number;
  /** Slots on the counter thread (-1: read on this thread), and their last consistent values. */
  bSlot: number;
  mSlot: number;
  bv: SlotValue;
  mv: SlotValue;
  /** A read failed (interface deleted): report not ok until watch() reopens it. */
  dead: boolean;
}

/** The packet source: a CounterReader whose reads run on the addon's counter thread. */
export interface PacketSource extends CounterReader {
  /** SCHED_FIFO for the counter thread, as the sampler's (0: leave it). Throws when refused. */
  realtime(prio: number): void;
  /** Whether reads run on the counter thread (false: on the caller's, as a fallback). */
  threaded(): boolean;
}

export interface PacketSourceOptions {
  /**
   * How long read() waits for the sweep prepare() asked for before it takes the values already
   * published (older, each with its own read time). At rest a sweep is done within tens of µs,
   * overlapped by the sysfs read; in a storm it can take ms, which is what the tick must not wait.
   */
  sweepWaitUs?: number;
  /** Slots on the counter thread (two per port). */
  slots?: number;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));

interface CounterThread {
  h: CounterThreadHandle;
  api: CounterThreadAddon;
  view: SlotView;
  pool: SlotPool;
}

/** Start the addon's counter thread, or null when this addon has none or it cannot start. */
function startCounterThread(native: PacketAddon, slots: number, log?: PacketLog): CounterThread | null {
  const api = native as CounterThreadAddon;
  if (typeof native.countersStart !== 'function') return null;
  try {
    const h = api.countersStart(slots);
    return { h, api, view: slotView(api.countersBuffer(h)), pool: slotPool(slots) };
  } catch (err) {
    log?.warn({ err: (err as Error).message }, 'counter thread unavailable: packet counters read on the sampling thread');
    return null;
  }
}

/** Take a port's sockets off the counter thread (before they are closed) and free the slots. */
function unslot(thread: CounterThread | null, w: Watched): void {
  for (const slot of [w.bSlot, w.mSlot]) {
    if (slot < 0 || !thread) continue;
    thread.api.countersWatch(thread.h, slot, -1);
    thread.pool.give(slot);
  }
  w.bSlot = -1;
  w.mSlot = -1;
}

/** Hand both sockets to the counter thread; without two free slots they are read here. */
function slotIn(thread: CounterThread | null, w: Watched): void {
  if (!thread) return;
  const b = thread.pool.take();
  const m = b >= 0 ? thread.pool.take() : -1;
  if (m < 0) {
    if (b >= 0) thread.pool.give(b);
    return;
  }
  thread.api.countersWatch(thread.h, b, w.bcast);
  thread.api.countersWatch(thread.h, m, w.mcast);
  w.bSlot = b;
  w.mSlot = m;
  w.bv.total = 0;
  w.mv.total = 0;
  w.bv.err = 0;
  w.mv.err = 0;
  w.bv.readNs = NaN;
  w.mv.readNs = NaN;
}

/** The interface was deleted or moved: this sample is dropped, and so is every later one until
 * the daemon's rescan calls watch() again. Logged once per port. */
function died(log: PacketLog | undefined, w: Watched, c: Counters, code: string | undefined, msg: string): void {
  c.ok = false;
  w.dead = true;
  log?.warn({ port: w.name, code, err: msg }, 'packet counter read failed: port not ok until rescan');
}

/** The counter thread's latest values; a slot caught mid-write keeps its previous value and time. */
function readSlots(thread: CounterThread, log: PacketLog | undefined, w: Watched, c: Counters): void {
  thread.view.read(w.bSlot, w.bv);
  thread.view.read(w.mSlot, w.mv);
  const err = w.bv.err || w.mv.err;
  if (err !== 0) {
    const code = ERRNO_NAMES.get(err) ?? `errno ${err}`;
    return died(log, w, c, code, `packet_stats read ${w.name}: ${code} (interface was deleted or moved)`);
  }
  c.rxBroadcast = w.bv.total;
  c.rxMulticast = w.mv.total;
  c.bcastReadNs = w.bv.readNs;
  c.mcastReadNs = w.mv.readNs;
}

/** Fallback without the counter thread: read on this thread, at the tick's time. */
function readHere(native: PacketAddon, log: PacketLog | undefined, w: Watched, c: Counters): void {
  try {
    c.rxBroadcast = native.read(w.bcast);
    c.rxMulticast = native.read(w.mcast);
    c.bcastReadNs = NaN;
    c.mcastReadNs = NaN;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    died(log, w, c, e.code, e.message);
  }
}

function requireAddon(): PacketAddon {
  const loaded = loadPacketAddon();
  if ('error' in loaded) throw Object.assign(new Error(`packet source unavailable: ${loaded.error}`), { code: 'E_PACKET_ADDON' });
  return loaded;
}

export function createPacketSource(log?: PacketLog, addon?: PacketAddon, opts: PacketSourceOptions = {}): PacketSource {
  const native = addon ?? requireAddon();
  // An array, not a Map: read() walks it by index, with no iterator allocated per tick.
  let watched: Watched[] = [];
  const thread = startCounterThread(native, opts.slots ?? 1024, log);
  const sweepWaitUs = opts.sweepWaitUs ?? 300;
  /** The sweep prepare() asked for and read() has not waited for yet (0: none). */
  let pending = 0;

  // Sockets being closed off the JS thread; close() waits for them so a stop ends only when the
  // kernel has released them all (an exit with sockets left would release them one by one).
  const closing = new Set<Promise<void>>();

  function closePorts(ws: readonly Watched[]): void {
    const fds: number[] = [];
    for (const w of ws) {
      unslot(thread, w);
      if (w.bcast >= 0) fds.push(w.bcast);
      if (w.mcast >= 0) fds.push(w.mcast);
      w.bcast = -1;
      w.mcast = -1;
    }
    if (fds.length === 0) return;
    let p: Promise<void>;
    try {
      p = native.closeMany(fds);
    } catch {
      // Only EBADF (an fd never opened by the addon) can land here; nothing left to release.
      return;
    }
    closing.add(p);
    void p.finally(() => closing.delete(p));
  }

  function openPort(p: PortInfo): Watched {
    const w: Watched = { name: p.name, ifindex: p.ifindex, bcast: -1, mcast: -1, bSlot: -1, mSlot: -1, bv: { total: 0, readNs: NaN, err: 0 }, mv: { total: 0, readNs: NaN, err: 0 }, dead: false };
    try {
      w.bcast = native.open(p.name, 'broadcast');
      w.mcast = native.open(p.name, 'multicast');
      slotIn(thread, w);
    } catch (err) {
      closePorts([w]);
      const e = err as NodeJS.ErrnoException;
      log?.warn({ port: p.name, code: e.code, err: e.message }, 'packet counters unavailable for port');
    }
    return w;
  }

  return {
    id: 'packet',

    watch(ports: readonly PortInfo[]): void {
      const old = new Map(watched.map((w) => [w.name, w]));
      const next: Array<Watched | PortInfo> = [];
      for (const p of ports) {
        if (!isValidIfName(p.name)) {
          log?.warn({ port: p.name }, 'invalid interface name: not counted');
          continue;
        }
        const prev = old.get(p.name);
        // Keep open sockets of ports still watched so their counts run on without a
        // reset; reopen only a port that is a different interface now (new ifindex),
        // vanished, or failed to open before.
        if (prev && prev.ifindex === p.ifindex && !prev.dead && prev.bcast >= 0) {
          old.delete(p.name);
          next.push(prev);
          continue;
        }
        next.push(p);
      }
      // Dropped ports first: their counter-thread slots are free for the ports opened next.
      closePorts([...old.values()]);
      watched = next.map((x) => ('bv' in x ? x : openPort(x)));
    },

    prepare(): void {
      if (thread && watched.length > 0) pending = thread.api.countersKick(thread.h);
    },

    read(out: Map<string, Counters>): void {
      if (thread && watched.length > 0) {
        // A read without a prepare() (a caller that is not the tick) asks for its own sweep.
        const id = pending || thread.api.countersKick(thread.h);
        thread.api.countersWait(thread.h, id, sweepWaitUs);
        pending = 0;
      }
      for (let i = 0; i < watched.length; i++) {
        const w = watched[i]!;
        const c = out.get(w.name);
        if (c === undefined) continue;
        if (w.dead) {
          c.ok = false;
          continue;
        }
        if (w.bcast < 0) {
          // Could not open: unknown, not zero. Other sources' rx counts still protect it.
          c.rxBroadcast = NaN;
          c.rxMulticast = NaN;
          continue;
        }
        if (thread && w.bSlot >= 0) readSlots(thread, log, w, c);
        else readHere(native, log, w, c);
      }
    },

    realtime(prio: number): void {
      if (thread && prio > 0) thread.api.countersRealtime(thread.h, prio);
    },

    threaded: () => thread !== null,

    async close(): Promise<void> {
      closePorts(watched);
      watched = [];
      if (thread) thread.api.countersStop(thread.h);
      await Promise.all([...closing]);
    },
  };
}
