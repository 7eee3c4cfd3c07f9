import { closeSync, openSync, readSync } from 'node:fs';
import { isValidIfName } from './names.js';

// The per-port sysfs files every listing (1 s, and each link change) reads: the bridge's modes
// for the port and the kernel's carrier-up count. Opened by path each time, three of them cost
// ~26 µs each through readFileSync(latin1) and ~10.6 µs through open+pread+close, against ~2.6 µs
// by pread on a kept-open fd (Node 20, this machine): 256 bridged ports were ~2% of a core at
// rest (bench-cost, session 17). A kept fd follows its interface, not its name (sysfs moves the
// node on a rename, and a read after the interface is gone fails with ENODEV), so fds are kept
// per name *and* ifindex: a name now on another interface opens afresh.

/** The per-port files read at each listing, relative to /sys/class/net/NAME. */
export type PortFile = 'brport/learning' | 'brport/hairpin_mode' | 'carrier_up_count';
const FILES: readonly PortFile[] = ['brport/learning', 'brport/hairpin_mode', 'carrier_up_count'];

/** One integer from a port's sysfs file, the port as listed now (name and ifindex); null when unreadable. */
export interface PortFiles {
  readInt(name: string, ifindex: number, file: PortFile): number | null;
}

/** The file operations the kept reader needs (node:fs by default; tests count or fail them). */
export interface FdOps {
  open(path: string): number;
  /** pread at offset 0 into buf; returns the byte count. */
  pread(fd: number, buf: Uint8Array): number;
  close(fd: number): void;
}

export const nodeFdOps: FdOps = {
  open: (path) => openSync(path, 'r'),
  pread: (fd, buf) => readSync(fd, buf, 0, buf.length, 0),
  close: (fd) => closeSync(fd),
};

/** Kept-open PortFiles, bounded by the listing: retain() closes what the listing no longer has. */
export interface KeptPortFiles extends PortFiles {
  /** Close the fds of every port not named here (call after each listing). */
  retain(names: ReadonlySet<string>): void;
  /** Open descriptors (for tests and status). */
  openFds(): number;
  close(): void;
}

interface Kept {
  ifindex: number;
  /** By FILES index; -1 while not open. */
  fds: number[];
}

const buf = Buffer.alloc(32);

/**
 * A sysfs integer file's text in buf[0..n) as an integer: ASCII digits with an optional sign and
 * surrounding whitespace (the kernel writes "1\n"); null for anything else. Pure; no allocation.
 */
export function parseSysInt(b: Uint8Array, n: number): number | null {
  let i = 0;
  while (i < n && isSpace(b[i]!)) i++;
  let sign = 1;
  if (i < n && b[i] === 45) {
    sign = -1;
    i++;
  }
  let v = 0;
  let digits = 0;
  while (i < n && b[i]! >= 48 && b[i]! <= 57) {
    v = v * 10 + (b[i]! - 48);
    digits++;
    i++;
  }
  while (i < n && isSpace(b[i]!)) i++;
  return digits > 0 && i === n && Number.isSafeInteger(v) ? sign * v : null;
}

function isSpace(c: number): boolean {
  return c === 10 || c === 32 || c === 9 || c === 13;
}

/** One integer file by path: open, pread, close (no fd kept); null when unreadable. */
export function readIntFile(path: string, ops: FdOps = nodeFdOps): number | null {
  let fd: number;
  try {
    fd = ops.open(path);
  } catch {
    return null;
  }
  try {
    return parseSysInt(buf, ops.pread(fd, buf));
  } catch {
    return null;
  } finally {
    try {
      ops.close(fd);
    } catch {
      // nothing to release
    }
  }
}

/** PortFiles that open each file by path every time (the CLI, preflight, tests: one-off listings). */
export function pathPortFiles(root = '/sys/class/net', ops: FdOps = nodeFdOps): PortFiles {
  return { readInt: (name, _ifindex, file) => (isValidIfName(name) ? readIntFile(`${root}/${name}/${file}`, ops) : null) };
}

/**
 * PortFiles through kept-open fds (the daemon's listings). A read that fails on a kept fd (ENODEV:
 * the interface, or its brport directory after it left the bridge, is gone; ESTALE) closes it and
 * opens the path once more, so a port that rejoined a bridge reads its new brport files. At most
 * three fds per port listed at the last retain(), plus those opened since, and never more than
 * maxFds() (host/fd-limit.ts keptFilesCap: what actions, counters and connections leave); past
 * it a file is read by path (open, pread, close), as before: slower, never short of descriptors.
 */
export function createKeptPortFiles(root = '/sys/class/net', ops: FdOps = nodeFdOps, maxFds: () => number = () => Infinity): KeptPortFiles {
  const kept = new Map<string, Kept>();
  let open = 0;

  function closeFd(k: Kept, i: number): void {
    const fd = k.fds[i]!;
    if (fd < 0) return;
    k.fds[i] = -1;
    open--;
    try {
      ops.close(fd);
    } catch {
      // already gone with its interface
    }
  }
  function drop(name: string, k: Kept): void {
    for (let i = 0; i < k.fds.length; i++) closeFd(k, i);
    kept.delete(name);
  }
  function openAndRead(name: string, k: Kept, i: number): number | null {
    if (open >= maxFds()) return readIntFile(`${root}/${name}/${FILES[i]!}`, ops);
    let fd: number;
    try {
      fd = ops.open(`${root}/${name}/${FILES[i]!}`);
    } catch {
      return null; // not bridged (no brport), or gone: nothing kept, asked again next listing
    }
    k.fds[i] = fd;
    open++;
    try {
      return parseSysInt(buf, ops.pread(fd, buf));
    } catch {
      closeFd(k, i);
      return null;
    }
  }

  return {
    readInt(name, ifindex, file) {
      if (!isValidIfName(name)) return null;
      const i = FILES.indexOf(file);
      let k = kept.get(name);
      if (k !== undefined && k.ifindex !== ifindex) {
        drop(name, k); // the name is on another interface now (recreated, or renamed onto)
        k = undefined;
      }
      if (k === undefined) {
        k = { ifindex, fds: [-1, -1, -1] };
        kept.set(name, k);
      }
      const fd = k.fds[i]!;
      if (fd < 0) return openAndRead(name, k, i);
      try {
        return parseSysInt(buf, ops.pread(fd, buf));
      } catch {
        closeFd(k, i);
        return openAndRead(name, k, i);
      }
    },
    retain(names) {
      for (const [name, k] of kept) if (!names.has(name)) drop(name, k);
    },
    openFds: () => open,
    close() {
      for (const [name, k] of kept) drop(name, k);
    },
  };
}
