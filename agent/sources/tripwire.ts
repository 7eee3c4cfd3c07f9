import { read as fsRead } from 'node:fs';
import type { PacketAddon } from './packet.js';

// The tripwire wakes an idle sampler on the first broadcast/multicast frame instead of up to
// one idle period later. One blocking AF_PACKET socket for the whole namespace; one read
// outstanding on libuv's thread pool while armed; disarmed by the frame that fires it, and
// re-armed by the daemon at most every REARM_MS, so chatty but legitimate broadcast costs a
// bounded number of extra samples. It never counts anything and never decides anything.

export interface Tripwire {
  /** Drain stale frames and wait for the next one (no-op while armed). */
  arm(): void;
  readonly armed: boolean;
  close(): void;
}

export function createTripwire(addon: PacketAddon, onFrame: () => void, warn?: (obj: object, msg: string) => void): Tripwire {
  const fd = addon.openTripwire();
  const buf = Buffer.alloc(64);
  let armed = false;
  let reading = false;
  let closed = false;

  function issue(): void {
    reading = true;
    fsRead(fd, buf, 0, buf.length, null, (err) => {
      reading = false;
      if (closed) {
        // Closed only once no read is pending, so the fd number is never reused under a read.
        addon.close(fd);
        return;
      }
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') {
          warn?.({ err: err.message }, 'tripwire read failed; sampling continues at the idle rate');
          armed = false;
          return;
        }
        if (armed) issue(); // the 500 ms receive timeout: keep waiting
        return;
      }
      if (!armed) return;
      armed = false;
      onFrame();
    });
  }

  return {
    arm() {
      if (armed || closed) return;
      armed = true;
      addon.drain(fd);
      if (!reading) issue();
    },
    get armed() {
      return armed;
    },
    close() {
      if (closed) return;
      closed = true;
      armed = false;
      if (!reading) addon.close(fd);
    },
  };
}
