import type { FdbMove } from '../types.js';

// `bridge monitor fdb` lines and the moves they make: parsing and tracking, pure.

export interface FdbLine {
  mac: string;
  dev: string;
  master: string | null;
  deleted: boolean;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Parse one line of `bridge monitor fdb` output; null for lines that are not fdb entries. Pure. */
export function parseFdbLine(line: string): FdbLine | null {
  let s = line.trim();
  let deleted = false;
  if (s.startsWith('Deleted ')) {
    deleted = true;
    s = s.slice(8);
  }
  const parts = s.split(/\s+/);
  const mac = parts[0];
  if (!mac || !MAC.test(mac)) return null;
  let dev: string | null = null;
  let master: string | null = null;
  for (let i = 1; i < parts.length - 1; i++) {
    if (parts[i] === 'dev') dev = parts[i + 1]!;
    else if (parts[i] === 'master') master = parts[i + 1]!;
  }
  // Entries without "master" are the port's own (self) entries, not learned by the bridge.
  if (!dev || !master) return null;
  return { mac, dev, master, deleted };
}

/** Tracks where each MAC was last learned and reports moves. Pure apart from its own map. */
export function createMoveTracker(maxMacs = 65536) {
  const where = new Map<string, string>();
  return (e: FdbLine, tNs: number): FdbMove | null => {
    const key = `${e.master}|${e.mac}`;
    if (e.deleted) {
      where.delete(key);
      return null;
    }
    const prev = where.get(key);
    if (prev === e.dev) return null;
    if (where.size >= maxMacs && prev === undefined) where.clear(); // bounded memory under a random-MAC flood
    where.set(key, e.dev);
    return prev === undefined ? null : { tNs, bridge: e.master, mac: e.mac, port: e.dev };
  };
}
