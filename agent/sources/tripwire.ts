import type { PacketAddon, TripwireFrame } from './packet.js';

// The tripwire wakes an idle sampler on the first broadcast/multicast frame instead of up to
// one idle period later. One AF_PACKET socket for the whole namespace, read by a dedicated
// native thread (SCHED_FIFO when the policy asks for it: a normal-priority waker is what a
// storm starves). It fires once per arm(); the daemon re-arms it at most every REARM_MS while
// idle, so chatty but legitimate broadcast costs a bounded number of extra samples. It never
// counts anything and never decides anything.

export interface Tripwire {
  /** Discard stale frames and fire on the next one (no-op while armed). */
  arm(): void;
  readonly armed: boolean;
  readonly fired: number;
  /** Flood frames seen on any interface since start: a namespace-wide counter costing one syscall. */
  count(): number;
  /** The last frames the tripwire received (evidence for a trip; read after the shut, allocates). */
  frames(): TripwireFrame[];
  close(): void;
}

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
    arm() {
      if (armed || closed) return;
      armed = true;
      addon.armTripwire(handle);
    },
    get armed() {
      return armed;
    },
    get fired() {
      return fired;
    },
    count() {
      return addon.readTripwire(handle);
    },
    frames() {
      return closed ? [] : addon.tripwireFrames(handle);
    },
    close() {
      if (closed) return;
      closed = true;
      armed = false;
      addon.stopTripwire(handle);
    },
  };
}
