import { closeSync, openSync, readSync } from 'node:fs';
import type { CounterReader, Counters, PortInfo } from '../types.js';
import { isValidIfName } from '../host/names.js';

// Every watched port's packet and byte counters from one read of /proc/net/dev (the agent's
// network namespace), through a kept-open fd. The sysfs route (sources/sysfs.ts) reads three
// files per port, and each of those reads gathers the device's whole statistics (dev_get_stats)
// to print one field: at 128 bridge ports its batch read took ~0.56-0.88 ms a tick, at 256 ports
// ~1.6 ms (lab, session 18, an idle namespace), the largest part of a tick on a full host.
// /proc/net/dev gathers each device's statistics once and prints them all: ~0.24 ms read and
// parsed at 128 devices, ~0.49 ms at 256. Like sysfs it walks the devices under RCU and takes no
// rtnl lock, so a link-down holding rtnl (tens of ms under a storm) never stalls the sampler.
//
// A port is found by name: a port absent from the read (deleted, renamed, moved to another
// namespace) gives no sample (ok false) until the next listing says what it is now.

/** Line fields after "name:", 0-based: rx bytes, rx packets, ..., tx bytes (8), tx packets (9). */
const RX_BYTES = 0;
const RX_PACKETS = 1;
const TX_PACKETS = 9;
const FIELDS_NEEDED = TX_PACKETS + 1;

interface Slot {
  name: string;
  bytes: Buffer;
  /** The read generation that last found this port. */
  seen: number;
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
}

export interface NetDevOptions {
  /** For tests: a file laid out like /proc/net/dev. */
  path?: string;
}

/** FNV-1a over buf[start, end): the name's key, computed without allocating. */
function nameHash(b: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

function sameName(b: Uint8Array, start: number, end: number, name: Buffer): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (b[start + i] !== name[i]) return false;
  return true;
}

/**
 * The /proc/net/dev reader. Throws when the file cannot be opened (the caller falls back to
 * sysfs); after that a failed read marks every port not ok for that tick, never throws.
 */
export function createNetDevSource(opts: NetDevOptions = {}): CounterReader {
  const path = opts.path ?? '/proc/net/dev';
  let fd: number | null = openSync(path, 'r');
  let buf = Buffer.alloc(64 * 1024);
  const byHash = new Map<number, Slot>();
  let slots: Slot[] = [];
  let gen = 0;
  const nums = new Float64Array(FIELDS_NEEDED);

  /** The whole file into buf (grown when it filled it); its length, or -1 when the read failed. */
  function readAll(): number {
    let off = 0;
    try {
      for (;;) {
        if (off === buf.length) {
          const bigger = Buffer.alloc(buf.length * 2);
          buf.copy(bigger, 0, 0, off);
          buf = bigger;
        }
        const n = readSync(fd!, buf, off, buf.length - off, off);
        if (n <= 0) return off;
        off += n;
      }
    } catch {
      return -1;
    }
  }

  /** The slot named by buf[start, end), or undefined. */
  function slotOf(start: number, end: number): Slot | undefined {
    const s = byHash.get(nameHash(buf, start, end));
    if (s !== undefined && sameName(buf, start, end, s.bytes)) return s;
    if (s === undefined) return undefined;
    // Two names with one hash: rare enough for a walk.
    for (const t of slots) if (sameName(buf, start, end, t.bytes)) return t;
    return undefined;
  }

  /** One device line buf[i, e): its counters into its slot when it is watched. */
  function parseLine(i: number, e: number): void {
    while (i < e && buf[i] === 32) i++;
    const start = i;
    while (i < e && buf[i] !== 58) i++; // ':'
    if (i >= e) return;
    const s = slotOf(start, i);
    if (s === undefined) return;
    let field = 0;
    let v = 0;
    let digits = 0;
    for (i++; i <= e && field < FIELDS_NEEDED; i++) {
      const c = i < e ? buf[i]! : 32;
      if (c >= 48 && c <= 57) {
        v = v * 10 + (c - 48);
        digits++;
      } else if (digits > 0) {
        nums[field++] = v;
        v = 0;
        digits = 0;
      }
    }
    if (field < FIELDS_NEEDED) return; // a line cut short: no sample rather than a wrong one
    s.rxBytes = nums[RX_BYTES]!;
    s.rxPackets = nums[RX_PACKETS]!;
    s.txPackets = nums[TX_PACKETS]!;
    s.seen = gen;
  }

  return {
    id: 'net-dev',
    watch(ports: readonly PortInfo[]): void {
      const keep = new Map(slots.map((s) => [s.name, s]));
      slots = [];
      byHash.clear();
      for (const { name } of ports) {
        if (!isValidIfName(name)) continue;
        const s = keep.get(name) ?? { name, bytes: Buffer.from(name), seen: -1, rxPackets: 0, txPackets: 0, rxBytes: 0 };
        slots.push(s);
        const h = nameHash(s.bytes, 0, s.bytes.length);
        if (!byHash.has(h)) byHash.set(h, s);
      }
    },
    read(out: Map<string, Counters>): void {
      gen++;
      const n = fd === null ? -1 : readAll();
      // Two header lines, then one line per device.
      let line = 0;
      for (let i = 0; i < n; ) {
        let e = buf.indexOf(10, i);
        if (e < 0 || e > n) e = n;
        if (line >= 2) parseLine(i, e);
        line++;
        i = e + 1;
      }
      for (let k = 0; k < slots.length; k++) {
        const s = slots[k]!;
        const c = out.get(s.name);
        if (c === undefined) continue;
        if (s.seen !== gen) {
          c.ok = false;
          continue;
        }
        c.rxPackets = s.rxPackets;
        c.txPackets = s.txPackets;
        c.rxBytes = s.rxBytes;
      }
    },
    close(): void {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}
