import type { CounterReader, Counters, PortInfo } from '../types.js';
import { isValidIfName } from '../host/names.js';
import { addonPath, loadAddon } from '../host/addon.js';

// Incoming broadcast and multicast frames per port. sysfs and netlink have no broadcast
// counter and `multicast` stays 0 on veth (LAB-FACTS), so the native addon
// (native/packet_stats.c) lets the kernel count: one AF_PACKET socket per port and kind
// with a BPF filter on skb->pkt_type, read with getsockopt(PACKET_STATISTICS) (~0.5 µs,
// no frame ever reaches user space). The addon turns the kernel's clear-on-read
// statistics into running totals, so values here are ordinary monotonic counters that
// restart at 0 only when a port's sockets are reopened.

/** txflood / txforeign: a guest's device's outgoing broadcast+multicast, all / not from its own MAC. */
export type PacketKind = 'broadcast' | 'multicast' | 'txflood' | 'txforeign';

/** The native addon's API (build/Release/packet_stats.node). */
export interface PacketAddon {
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
  /** Fire once, on the first minFrames frames that arrive within windowNs of each other (the thread counts them). */
  armTripwire(h: TripwireHandle, minFrames: number, windowNs: number): void;
  stopTripwire(h: TripwireHandle): void;
  /**
   * The tripwire's evidence (first bytes of each frame), oldest first: the storm's onset (the
   * frames that froze its head ring, `onset: true`) then the latest frames; without a storm, the
   * last frames it received. Reading re-opens the head for the next storm.
   */
  tripwireFrames(h: TripwireHandle): TripwireFrame[];
  /**
   * Freeze the evidence's head as it is (a trip: its capture is taken later, off the tick): a
   * storm cut before its rate froze the head keeps its first frames. Returns whether it is frozen.
   */
  tripwireHold(h: TripwireHandle): boolean;
  /**
   * Source MACs seen arriving on another interface than their previous frame since the last call,
   * oldest first, flat: [monoNs, ifindex, mac, ...] (the bridge's FDB moves, ~2 ms sooner); undefined
   * when there are none (read every tick: no empty array each time).
   */
  readTripwireMoves(h: TripwireHandle): Array<number | string> | undefined;
  /**
   * Per interface, the frames the tripwire read since the last call that came back (the same
   * first bytes and length received again by that interface within 100 ms): flat [ifindex,
   * count, ...]; undefined when none did (read every tick).
   */
  tripwireReturns(h: TripwireHandle): number[] | undefined;
  /**
   * Watch these interfaces' unknown unicast (PACKET_OTHERHOST) for source MACs moving between
   * them: each move joins readTripwireMoves', the first fires the armed tripwire (a loop circling
   * unknown unicast through ports the bridge learns nothing on). [] stops; returns how many are
   * watched (at most 128, the first ones). Throws Error with `code` = errno name.
   */
  tripwireUnicast(h: TripwireHandle, ifindexes: readonly number[]): number;
  /** SCHED_FIFO for the calling thread, reset on fork (children run at normal priority). */
  setRealtime(priority: number): void;
  /** Many kept sysfs fds read at offset 0 as integers (sources/sysfs.ts SysfsOptions.preadInts); absent from builds before it. */
  preadInts?(fds: Int32Array, out: Float64Array, n: number): void;
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
  /**
   * A guest's macvtap/macvlan device (guestDevice): its outgoing flood frames, all and those not
   * from its own MAC (-1: not counted). Its transmit is what its guest sends, which the incoming
   * counters above never see; a guest flooding through it showed nowhere (session 17).
   */
  txFlood: number;
  txForeign: number;
  /** Opened as a guest's device (txFlood wanted). */
  guest: boolean;
  /** A read failed (interface deleted): report not ok until watch() reopens it. */
  dead: boolean;
  /** The totals of the last read, and the port's rx packets (this tick's other reader) then; -1 before one. */
  lastB: number;
  lastM: number;
  lastRx: number;
  /** Reads skipped in a row (quiet port). */
  skipped: number;
  /**
   * The last read found rx packets as at the read before it: any frames the addon deferred were
   * counted by it (the first quiet read counts them), so from here a quiet port's counts hold.
   */
  settled: boolean;
  /** Frames counted here that rx_packets did not count: this port is read every tick. */
  rxUncounted: boolean;
}

/**
 * A port whose rx packets did not move since the last read received no frame, so its broadcast
 * and multicast counts cannot have moved either: it is not read (two getsockopt calls and two
 * calls into the addon, ~1.1 us each). Profiled on a bridge with 128 ports in a storm (the
 * kvm-many bench shape, session 18), these reads were the agent's largest cost: the guest NICs
 * only send the storm, never receive it. A port is still read at least every QUIET_READ_EVERY
 * ticks, and every tick once a read found frames its rx packets had not counted (a driver that
 * does not count them). A port is skipped only after one read with its rx packets unchanged: the
 * frame or two the addon defers to a quiet read (see native/packet_stats.c) are counted by it.
 */
const QUIET_READ_EVERY = 64;

export interface PacketSourceOptions {
  /**
   * Skip quiet ports (QUIET_READ_EVERY): only where another reader fills each port's rxPackets
   * earlier in the same tick (the daemon's /proc/net/dev or sysfs reader runs first).
   */
  skipQuiet?: boolean;
}

export function createPacketSource(log?: PacketLog, addon?: PacketAddon, opts: PacketSourceOptions = {}): CounterReader {
  const skipQuiet = opts.skipQuiet === true;
  let native: PacketAddon;
  if (addon) {
    native = addon;
  } else {
    const loaded = loadPacketAddon();
    if ('error' in loaded) {
      throw Object.assign(new Error(`packet source unavailable: ${loaded.error}`), { code: 'E_PACKET_ADDON' });
    }
    native = loaded;
  }
  // An array, not a Map: read() walks it by index, with no iterator allocated per tick.
  let watched: Watched[] = [];

  // Sockets being closed off the JS thread; close() waits for them so a stop ends only when the
  // kernel has released them all (an exit with sockets left would release them one by one).
  const closing = new Set<Promise<void>>();

  /** Close the ports' sockets (txOnly: their guest transmit counters only). */
  function closePorts(ws: readonly Watched[], txOnly = false): void {
    const fds: number[] = [];
    for (const w of ws) {
      for (const fd of txOnly ? [w.txFlood, w.txForeign] : [w.bcast, w.mcast, w.txFlood, w.txForeign]) if (fd >= 0) fds.push(fd);
      if (!txOnly) w.bcast = w.mcast = -1;
      w.txFlood = w.txForeign = -1;
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
    const w = unopened(p);
    try {
      w.bcast = native.open(p.name, 'broadcast');
      w.mcast = native.open(p.name, 'multicast');
    } catch (err) {
      closePorts([w]);
      const e = err as NodeJS.ErrnoException;
      log?.warn({ port: p.name, code: e.code, err: e.message }, 'packet counters unavailable for port');
      return w;
    }
    if (w.guest && !openGuestTx(native, w, log)) closePorts([w], true);
    return w;
  }

  return {
    id: 'packet',

    watch(ports: readonly PortInfo[]): void {
      const old = new Map(watched.map((w) => [w.name, w]));
      const next: Watched[] = [];
      for (const p of ports) {
        if (!isValidIfName(p.name)) {
          log?.warn({ port: p.name }, 'invalid interface name: not counted');
          continue;
        }
        const prev = old.get(p.name);
        // Keep open sockets of ports still watched so their counts run on without a
        // reset; reopen only a port that is a different interface now (new ifindex),
        // vanished, or failed to open before.
        if (prev && prev.ifindex === p.ifindex && !prev.dead && prev.bcast >= 0 && prev.guest === guestDevice(p)) {
          old.delete(p.name);
          next.push(prev);
          continue;
        }
        next.push(openPort(p));
      }
      closePorts([...old.values()]);
      watched = next;
    },

    read(out: Map<string, Counters>): void {
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
          c.txFlood = NaN;
          c.txForeign = NaN;
          continue;
        }
        readPort(native, w, c, skipQuiet, log);
      }
    },

    async close(): Promise<void> {
      closePorts(watched);
      watched = [];
      await Promise.all([...closing]);
    },
  };
}

/** A port's entry before its counters are opened (one literal: one hidden class for every port). */
function unopened(p: PortInfo): Watched {
  return {
    name: p.name,
    ifindex: p.ifindex,
    bcast: -1,
    mcast: -1,
    txFlood: -1,
    txForeign: -1,
    guest: guestDevice(p),
    dead: false,
    lastB: -1,
    lastM: -1,
    lastRx: -1,
    skipped: 0,
    settled: false,
    rxUncounted: false,
  };
}

/** One port's counters into c: read, or (a quiet port, see QUIET_READ_EVERY) the last read's totals carried. */
function readPort(native: PacketAddon, w: Watched, c: Counters, skipQuiet: boolean, log?: PacketLog): void {
  // This tick's rx packets (the packets-and-bytes reader ran first) as at the last read: quiet.
  const rx = skipQuiet && c.ok ? c.rxPackets : -1;
  const quiet = rx >= 0 && rx === w.lastRx;
  // (A guest device's transmit counters move without its rx: never skipped.)
  if (quiet && w.settled && w.txFlood < 0 && !w.rxUncounted && w.skipped < QUIET_READ_EVERY - 1) {
    w.skipped++;
    c.rxBroadcast = w.lastB;
    c.rxMulticast = w.lastM;
    c.txFlood = NaN;
    c.txForeign = NaN;
    return;
  }
  try {
    const b = native.read(w.bcast);
    const m = native.read(w.mcast);
    if (quiet && w.settled && (b > w.lastB || m > w.lastM) && !w.rxUncounted) {
      w.rxUncounted = true;
      log?.warn({ port: w.name }, 'rx packets do not count every frame received: broadcast counters read every tick');
    }
    c.rxBroadcast = w.lastB = b;
    c.rxMulticast = w.lastM = m;
    c.txFlood = w.txFlood >= 0 ? native.read(w.txFlood) : NaN;
    c.txForeign = w.txForeign >= 0 ? native.read(w.txForeign) : NaN;
    w.settled = quiet;
    w.lastRx = rx;
    w.skipped = 0;
  } catch (err) {
    // The interface was deleted or moved: this sample is dropped, and so is every
    // later one until the daemon's rescan calls watch() again. Logged once per port.
    c.ok = false;
    w.dead = true;
    const e = err as NodeJS.ErrnoException;
    log?.warn({ port: w.name, code: e.code, err: e.message }, 'packet counter read failed: port not ok until rescan');
  }
}

/** A guest's macvtap/macvlan device (not its NIC): its transmit is what the guest sends. */
function guestDevice(p: PortInfo): boolean {
  return p.macvlan === true && p.bridge !== p.name;
}

/**
 * A guest device's transmit counters into w (txFlood, txForeign). false: they could not be
 * opened (logged; w keeps the fds that did open, for the caller to close with the rest). The
 * guest's floods then go unseen, as before session 18.
 */
function openGuestTx(native: PacketAddon, w: Watched, log?: PacketLog): boolean {
  try {
    w.txFlood = native.open(w.name, 'txflood');
    w.txForeign = native.open(w.name, 'txforeign');
    return true;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    log?.warn({ port: w.name, code: e.code, err: e.message }, 'guest transmit counters unavailable for macvtap/macvlan port');
    return false;
  }
}
