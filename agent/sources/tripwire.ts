import type { PacketAddon, TripwireFrame } from './packet.js';

// The tripwire wakes an idle sampler on the first burst of broadcast/multicast frames instead of
// up to one idle period later. One AF_PACKET socket for the whole namespace, read by a dedicated
// native thread (SCHED_FIFO when the policy asks for it: a normal-priority waker is what a
// storm starves). It fires once per arm(), when the thread has received minFrames frames within
// windowNs: chatter below that rate never reaches the JS thread. It decides nothing about ports.
// It also notes source MACs that arrive on another interface than their last frame (moves), which
// the FDB source takes in beside `bridge monitor fdb`'s (sources/fdb.ts). On ports the bridge
// learns nothing on, a second native thread does the same for unknown unicast and fires on the
// first move (watchUnicast; native/packet_stats.c says why). And it counts, per interface, the
// frames it reads that come back (the same bytes received again: a frame circling a ring), which
// sources/returns.ts hands to the detector as a counter.

export interface Tripwire {
  /** Discard stale frames and fire on the next burst of minFrames within windowNs (no-op while armed). */
  arm(minFrames: number, windowNs: number): void;
  readonly armed: boolean;
  readonly fired: number;
  /** The last frames the tripwire received (evidence for a trip; read after the shut, allocates). */
  frames(): TripwireFrame[];
  /** Keep the frames received so far as the storm's onset (at a trip; see PacketAddon.tripwireHold). */
  hold(): void;
  /** Source MACs moved between interfaces since the last call: [monoNs, ifindex, mac, ...] (see PacketAddon). */
  moves(): ReadonlyArray<number | string>;
  /** Frames that came back per interface since the last call: [ifindex, count, ...], or undefined (see PacketAddon.tripwireReturns). */
  returns(): ReadonlyArray<number> | undefined;
  /** Watch these ports' unknown unicast for moves (see PacketAddon.tripwireUnicast); returns how many are watched. */
  watchUnicast(ifindexes: readonly number[]): number;
  close(): void;
}

const NO_MOVES: ReadonlyArray<number | string> = Object.freeze([]);

export function createTripwire(addon: PacketAddon, onFrame: () => void, realtimePriority: number): Tripwire {
  let armed = false;
  let fired = 0;
  let closed = false;
  const handle = addon.startTripwire(() => {
    if (!armed || closed) return;
    armed = false;
    fired++;
    onFrame();
  }, realtimePriority);
  return {
    arm(minFrames, windowNs) {
      if (armed || closed) return;
      armed = true;
      addon.armTripwire(handle, minFrames, windowNs);
    },
    get armed() {
      return armed;
    },
    get fired() {
      return fired;
    },
    frames() {
      return closed ? [] : addon.tripwireFrames(handle);
    },
    hold() {
      if (!closed) addon.tripwireHold(handle);
    },
    moves() {
      return closed ? NO_MOVES : (addon.readTripwireMoves(handle) ?? NO_MOVES);
    },
    returns() {
      return closed ? undefined : addon.tripwireReturns(handle);
    },
    watchUnicast(ifindexes) {
      return closed ? 0 : addon.tripwireUnicast(handle, ifindexes);
    },
    close() {
      if (closed) return;
      closed = true;
      armed = false;
      addon.stopTripwire(handle);
    },
  };
}
