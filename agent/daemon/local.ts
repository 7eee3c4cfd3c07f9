import type { Logger } from '../log.js';
import type { CounterReader, Policy, PortInfo, TickSource } from '../types.js';
import { createSysfsSource, type PreadInts } from '../sources/sysfs.js';
import { createNetDevSource } from '../sources/net-dev.js';
import { createPacketSource, loadPacketAddon, type PacketAddon } from '../sources/packet.js';
import { createLocalSource, type LocalSource } from '../sources/local.js';
import { createFdbSource, type FdbSource } from '../sources/fdb.js';
import { createTripwire, type Tripwire } from '../sources/tripwire.js';
import { createReturnsReader } from '../sources/returns.js';
import { createRenameWatch } from './ports.js';

// What this host measures itself: sysfs counters always; broadcast counting and the tripwire
// when the native addon loads (without it the agent still runs, on total rx rates, idle capped
// at 10 ms); the FDB monitor while the policy asks for it.

export interface LocalSampling {
  local: LocalSource;
  broadcastCounting: boolean;
  /** Start or stop the FDB monitor as the policy says, in the registry `into`. */
  followPolicy(p: Policy, into: { add(s: TickSource): void; remove(s: TickSource): void }): void;
  /** SCHED_FIFO for this thread and the tripwire's, as the policy asks; the tripwire or null. */
  startTripwire(onFrame: () => void, realtimePriority: number): Tripwire | null;
  /**
   * The watched ports as listed at each rescan: a port renamed since restarts the FDB monitor (see
   * FdbSource.restart); the ports the bridge learns nothing on are the tripwire's unicast watch.
   */
  portsListed(infos: readonly PortInfo[]): void;
  /** What measures here, for status (sysfs, packet, fdb, tripwire). */
  ids(): string[];
  /** The tripwire and the FDB monitor (the registry closes the rest). */
  close(): void;
}

const NO_MOVES: ReadonlyArray<number | string> = Object.freeze([]);

/** Pure: the bridge ports the bridge learns nothing on, by ifindex, ascending (the tripwire's unicast watch). */
export function noLearnIfindexes(infos: readonly PortInfo[]): number[] {
  return infos.filter((p) => p.noLearn === true && p.bridge !== null).map((p) => p.ifindex).sort((a, b) => a - b);
}

/**
 * Packet and byte counters of every port: one read of /proc/net/dev a tick (sources/net-dev.ts),
 * or, where that file cannot be opened, three sysfs files per port (the addon's batch read).
 */
function packetsAndBytes(log: Logger, preadInts: PreadInts | undefined): CounterReader {
  try {
    return createNetDevSource();
  } catch (err) {
    log.warn({ component: 'net-dev', err: (err as Error).message }, '/proc/net/dev unreadable: port counters read from sysfs, three files per port');
    return createSysfsSource({ warn: (obj, msg) => log.warn({ component: 'sysfs', ...obj }, msg), ...(preadInts ? { preadInts } : {}) });
  }
}

/** onMove: the FDB monitor (or the tripwire's thread, byThread) saw a MAC move (wakes the sampler; see daemon/scheduler.ts). */
export function startLocalSampling(log: Logger, startNs: number, now: () => number, onMove?: (byThread: boolean) => void): LocalSampling {
  const warn = (component: string) => (obj: object, msg: string) => log.warn({ component, ...obj }, msg);
  const addon: PacketAddon | { error: string } = loadPacketAddon();
  // The addon's batch read of the sysfs counters when this build has it (one call per tick, not three per port).
  const preadInts = !('error' in addon) && typeof addon.preadInts === 'function' ? addon.preadInts.bind(addon) : undefined;
  const readers: CounterReader[] = [packetsAndBytes(log, preadInts)];
  if ('error' in addon) {
    log.warn({ component: 'packet', err: addon.error }, 'broadcast counting unavailable: falling back to total rx rates');
  } else {
    // After packetsAndBytes: this tick's rx packets tell the packet source which ports were quiet.
    readers.push(createPacketSource({ warn: warn('packet') }, addon, { skipQuiet: true }));
  }
  let fdb: FdbSource | null = null;
  let tripwire: Tripwire | null = null;
  // Frames that came back, per port (the tripwire's count; NaN while it does not run).
  if (!('error' in addon)) readers.push(createReturnsReader(() => tripwire?.returns(), () => tripwire !== null));
  const renames = createRenameWatch();
  // Ports whose unknown unicast the tripwire watches for moves (see sources/tripwire.ts), as a key.
  let unicast: number[] = [];
  let unicastKey = '';
  let unicastApplied = false;
  function watchUnicast(): void {
    if (!tripwire || unicastApplied) return;
    unicastApplied = true;
    try {
      const n = tripwire.watchUnicast(unicast);
      if (n < unicast.length) log.warn({ component: 'tripwire', ports: unicast.length, watched: n }, 'too many learning-off ports: unknown unicast watched on the first ones only');
    } catch (err) {
      log.warn({ component: 'tripwire', err: (err as Error).message }, 'unknown-unicast watch unavailable: loops through learning-off ports are judged at the sampling rate');
    }
  }
  const local = createLocalSource(readers, startNs);
  // The tripwire's moves, for the FDB source: only while both run (see sources/tripwire-moves.ts).
  // Ports by ifindex, rebuilt when the local source's list changes (a storm brings many moves).
  let listed: readonly PortInfo[] | null = null;
  let byIndex = new Map<number, PortInfo>();
  const tripwireMoves = {
    read: () => tripwire?.moves() ?? NO_MOVES,
    portAt(ifindex: number): PortInfo | undefined {
      const now = local.infos();
      if (now !== listed) {
        listed = now;
        byIndex = new Map(now.map((p) => [p.ifindex, p]));
      }
      return byIndex.get(ifindex);
    },
  };
  return {
    local,
    broadcastCounting: !('error' in addon),
    followPolicy(p, into) {
      if (p.fdb.enabled && !fdb) into.add((fdb = createFdbSource({ now, warn: warn('fdb'), realtimePriority: p.sampling.realtimePriority, tripwire: tripwireMoves, ...(onMove ? { onMove } : {}) })));
      else if (!p.fdb.enabled && fdb) (into.remove(fdb), fdb.close(), (fdb = null));
    },
    portsListed(infos) {
      const next = noLearnIfindexes(infos);
      const key = next.join(',');
      if (key !== unicastKey) {
        unicast = next;
        unicastKey = key;
        unicastApplied = false;
        watchUnicast();
      }
      const renamed = renames(infos);
      if (renamed.length === 0 || !fdb) return;
      log.info({ component: 'fdb', renamed }, 'ports renamed: restarting bridge monitor fdb (it keeps the names it started with)');
      fdb.restart();
    },
    startTripwire(onFrame, prio) {
      if ('error' in addon) return null;
      if (prio > 0) {
        try {
          addon.setRealtime(prio);
          log.info({ component: 'daemon', realtimePriority: prio }, 'sampling thread runs SCHED_FIFO');
        } catch (err) {
          log.warn({ component: 'daemon', err: (err as Error).message }, 'cannot raise scheduling priority; a storm that pegs a core may delay the agent');
        }
      }
      try {
        tripwire = createTripwire(addon, onFrame, prio);
        watchUnicast();
      } catch (err) {
        log.warn({ component: 'tripwire', err: (err as Error).message }, 'tripwire unavailable; idle sampling capped at 10 ms');
      }
      return tripwire;
    },
    ids: () => readers.map((r) => r.id).concat(fdb ? ['fdb'] : [], tripwire ? ['tripwire'] : []),
    close() {
      tripwire?.close();
    },
  };
}
