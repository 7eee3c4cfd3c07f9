import { readFileSync } from 'node:fs';

// File descriptors: what protects needs them (a sysfs flags file per link-down, `ip` children's
// pipes, kept-open counters, AF_PACKET sockets) and so does every control connection. 21,000 idle
// connections once made `spawn ip` fail with EMFILE on both loop members during a storm. So the
// control socket's cap comes from the real limit: what is left after the ports' descriptors and a
// reserve for actions, never more than MAX_CONNECTIONS, never fewer than MIN_CONNECTIONS (an
// operator must still get in; with a limit that low the log says so at start).

/** Descriptors each watched port keeps open: rx, tx and bytes counters in sysfs, two AF_PACKET sockets. */
export const FDS_PER_PORT = 5;
/**
 * Kept free for actions and everything else the agent opens: a link-down opens the sysfs flags
 * file, an `ip` child takes 3 pipes, hooks and notifiers theirs, Node and the journal a few dozen.
 */
export const ACTION_RESERVE = 128;
/** A control connection is its socket, and an `events` answer's open journal. */
export const FDS_PER_CONNECTION = 2;
export const MAX_CONNECTIONS = 64;
export const MIN_CONNECTIONS = 4;

/** The soft "Max open files" of /proc/<pid>/limits text, or null (unlimited or unreadable). Pure. */
export function parseNofile(limitsText: string): number | null {
  const m = /^Max open files\s+(\S+)/m.exec(limitsText);
  if (!m || m[1] === 'unlimited') return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** This process's soft RLIMIT_NOFILE (Node raised it to the hard limit at start), or null. */
export function readNofile(path = '/proc/self/limits'): number | null {
  try {
    return parseNofile(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/** Control connections allowed with this limit and this many watched ports. Pure. */
export function connectionCap(nofile: number | null, ports: number): number {
  if (nofile === null) return MAX_CONNECTIONS;
  const left = nofile - ACTION_RESERVE - FDS_PER_PORT * ports;
  return Math.max(MIN_CONNECTIONS, Math.min(MAX_CONNECTIONS, Math.floor(left / FDS_PER_CONNECTION)));
}

/**
 * Descriptors the kept port files (up to three per bridged port: host/port-files.ts) may hold:
 * what is left once the ports' own, the action reserve and the most control connections are
 * counted. They only make listings cheaper (a file past the cap is read by path), so they come
 * last and never shrink the connection cap. Pure.
 */
export function keptFilesCap(nofile: number | null, ports: number): number {
  if (nofile === null) return Infinity;
  return Math.max(0, nofile - ACTION_RESERVE - FDS_PER_PORT * ports - FDS_PER_CONNECTION * MAX_CONNECTIONS);
}
