import type { FdbMove } from '../types.js';
import { createMoveTracker } from './fdb-lines.js';

// The tripwire's moves (a source MAC arriving on another interface than its last frame, seen by
// its native thread within ~1 ms of a loop's first frames) as FDB moves beside `bridge monitor
// fdb`'s, whose lines came ~2.9 ms after a loop's first frame, cold or warm (lab probes, kvm
// loop, session 13). The same flap evidence, sooner: a MAC re-learned on alternating ports of
// one bridge. Only moves between ports of one bridge count (the thread sees every interface,
// the bridge device too when a frame goes up to the host).
//
// One physical move may come twice, from the thread and later from the monitor; counted twice,
// a NIC failing over and back (two moves) would look like the three a flap needs. So a monitor
// move to where the thread already saw that MAC go within SAME_MOVE_NS is the same move.

/** A monitor move this close after the thread's to the same port is that move again (the flap window). */
export const SAME_MOVE_NS = 50e6;
const MAX_SEEN = 4096;

export interface NativeMoves {
  /** Take in the thread's moves since the last call; push each that is a move between ports of one bridge. */
  pull(push: (mv: FdbMove) => void): void;
  /** Was this monitor move already taken in from the thread (see SAME_MOVE_NS)? */
  seen(mv: FdbMove): boolean;
}

export function createNativeMoves(
  read: () => ReadonlyArray<number | string>,
  portAt: (ifindex: number) => { name: string; bridge: string | null; macvlan?: boolean; stpDiscarding?: boolean } | undefined,
): NativeMoves {
  const track = createMoveTracker();
  const last = new Map<string, number>();
  let newest = -Infinity;
  return {
    pull(push) {
      const flat = read();
      for (let i = 0; i + 2 < flat.length; i += 3) {
        const p = portAt(flat[i + 1] as number);
        // In a macvlan domain every broadcast arrives on the NIC and then on each macvlan on it:
        // the same MAC "moves" with every frame, which is no flap (see host/interfaces.ts).
        if (p === undefined || p.bridge === null || p.macvlan === true) continue;
        // A port STP holds blocking still receives the switch's copies of every broadcast (the
        // thread sees them), but its bridge learns nothing there: each such frame "moved" its
        // MAC between the forwarding and the blocking uplink, a flap that lent a legitimate
        // exchange's one hot sample a loop verdict (lab, agent-more-shapes STP case under load).
        if (p.stpDiscarding === true) continue;
        // In time order with what was pushed before (the detector prunes moves from the oldest).
        newest = Math.max(newest, flat[i] as number);
        const mv = track({ mac: flat[i + 2] as string, dev: p.name, master: p.bridge, deleted: false }, newest);
        if (mv === null) continue;
        if (last.size >= MAX_SEEN) last.clear();
        last.set(`${mv.bridge}|${mv.mac}|${mv.port}`, mv.tNs);
        push(mv);
      }
    },
    seen(mv) {
      const t = last.get(`${mv.bridge}|${mv.mac}|${mv.port}`);
      return t !== undefined && mv.tNs - t <= SAME_MOVE_NS;
    },
  };
}
