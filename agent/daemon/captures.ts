import type { Logger } from '../log.js';
import type { JournalEvent } from '../types.js';
import type { TripwireFrame } from '../sources/packet.js';
import { toPcapng } from '../evidence/pcapng.js';
import { captureName, DEFAULT_CAPTURE_LIMITS, saveCapture, type CaptureLimits } from '../evidence/store.js';
import { listInterfaces } from '../host/interfaces.js';
import { AUTO_RECOVERY } from '../breaker/state.js';

// Evidence of a storm: after an automatic trip of a local port (the link is down: the breaker
// journals a trip only once its link-down succeeded), the tripwire's rings (the storm's first
// frames, frozen when the flood began, and the last ones it received) are copied out and written as a pcapng into STATE_DIR/captures, then a `capture` event
// names the file for the journal and `why`. Nothing here runs in the tick but a hold of the head
// ring (one lock): the trip event only schedules the work, and the file is written on libuv's pool. While the breaker is still busy
// with the storm (a loop shut settling, an escalation in flight) the copy waits, polled every
// CAPTURE_POLL_MS, at most CAPTURE_WAIT_MAX_MS: under a three-uplink storm the copy and encode
// took the JS thread 8-20 ms right after the first trip (lab trace, 2026-12-05: the first sample
// after the trip's tick came 10-25 ms later with captures, 2-7 ms without), and those are the
// samples the escalation to the next member is judged on. The wait stays well under the 100 ms
// after which the tripwire's head ring rolls again (native/tripwire_ring.h). A capture that
// cannot be taken or written costs nothing but the capture: said once when it starts failing
// and once when captures are written again.

export interface CaptureDeps {
  stateDir: string;
  /** The tripwire's ring, oldest first; null when there is no tripwire (no addon, no socket). */
  frames(): TripwireFrame[] | null;
  /** Keep the tripwire's frames so far as the onset (called at the trip, in the tick: one lock, no copy). */
  hold?(): void;
  /** Is this port one of this host's interfaces (the tripwire sees only those)? */
  isLocal(port: string): boolean;
  record(e: JournalEvent): void;
  log: Logger;
  stopped(): boolean;
  limits?: CaptureLimits;
  /** ifindex -> interface name, read when a capture is written (default: this namespace's). */
  names?(): ReadonlyMap<number, string>;
  /** Is the breaker still busy with the storm (a shut settling or in flight)? Absent: never waits. */
  busy?(): boolean;
}

/** While the breaker is busy, a capture looks again this often... */
export const CAPTURE_POLL_MS = 5;
/** ...and waits at most this long after its trip. */
export const CAPTURE_WAIT_MAX_MS = 60;

export interface Captures {
  /** Every recorded event goes through here; automatic trips of local ports are captured. */
  onRecord(e: JournalEvent): void;
  /** Settles when the captures in flight are written (tests, stop). */
  idle(): Promise<void>;
}

const interfaceNames = (): ReadonlyMap<number, string> => new Map(listInterfaces().map((p) => [p.ifindex, p.name]));

/**
 * An automatic trip, link down: the breaker's own decision or a recovery probe's re-trip (an
 * operator's trip carries who asked in `by`).
 */
export function wantsCapture(e: JournalEvent, isLocal: (port: string) => boolean): boolean {
  return e.event === 'trip' && (e.by === undefined || e.by === AUTO_RECOVERY) && e.action?.ok === true && isLocal(e.port);
}

export function createCaptures(d: CaptureDeps): Captures {
  const inFlight = new Set<Promise<void>>();
  let failing = false;

  function problem(err: string, port: string): void {
    if (!failing) d.log.error({ component: 'evidence', port, err }, 'storm capture FAILED: trips go on, their frames are not saved (said once until a capture is written again)');
    failing = true;
  }

  async function capture(trip: JournalEvent): Promise<void> {
    if (d.stopped()) return;
    const frames = d.frames(); // first: the ring keeps turning while anything still floods
    if (frames === null) return problem('no tripwire (native addon or AF_PACKET socket unavailable)', trip.port);
    if (frames.length === 0) return void d.log.info({ component: 'evidence', port: trip.port }, 'no frames to save for this trip: the tripwire saw none');
    const tripMs = Date.parse(trip.ts);
    const names = (d.names ?? interfaceNames)();
    const bytes = toPcapng(frames, names, `stormbreaker trip of ${trip.port} at ${trip.ts}: ${trip.reason}`);
    const path = await saveCapture(d.stateDir, captureName(Number.isFinite(tripMs) ? tripMs : Date.now(), trip.port), bytes, d.limits ?? DEFAULT_CAPTURE_LIMITS);
    if (d.stopped()) return;
    if (failing) d.log.info({ component: 'evidence', path }, 'storm captures written again');
    failing = false;
    const ifaces = new Set(frames.map((f) => f.ifindex)).size;
    const onset = frames.filter((f) => f.onset === true).length;
    const kept = onset > 0 ? `the storm's first ${onset} broadcast/multicast frames and the last ${frames.length - onset} the tripwire saw` : `the last ${frames.length} broadcast/multicast frames the tripwire saw`;
    d.record({
      ts: new Date().toISOString(),
      event: 'capture',
      port: trip.port,
      reason: `storm frames saved: ${kept}, on ${ifaces} interface(s)`,
      policyHash: trip.policyHash,
      tripTs: trip.ts,
      capture: path,
      frames: frames.length,
      bytes: bytes.length,
    });
  }

  /** Resolves once the breaker is not busy (or stopping, or CAPTURE_WAIT_MAX_MS passed); never in the tick. */
  function calm(): Promise<void> {
    const until = performance.now() + CAPTURE_WAIT_MAX_MS;
    return new Promise<void>((resolve) => {
      const look = (): void => {
        if (d.stopped() || d.busy === undefined || !d.busy() || performance.now() >= until) resolve();
        else setTimeout(look, CAPTURE_POLL_MS);
      };
      setImmediate(look);
    });
  }

  return {
    onRecord(e) {
      if (!wantsCapture(e, d.isLocal)) return;
      // Now, not when the copy is taken (up to CAPTURE_WAIT_MAX_MS later): a storm cut before its
      // rate froze the head (a fast cut; a reader that missed frames on a loaded core) had its
      // first frames rolled out by what flooded meanwhile: a capture without the injected frame,
      // holding only a later burst's (clean-clone CI with one core busy, session 19).
      d.hold?.();
      const p = calm()
        .then(() => capture(e))
        .catch((err: unknown) => problem((err as Error).message, e.port))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    idle: async () => {
      await Promise.allSettled([...inFlight]);
    },
  };
}
