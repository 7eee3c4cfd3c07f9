import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import type { PortInfo } from '../types.js';
import { isValidIfName } from './names.js';

/**
 * The host's interfaces as sysfs shows them (inside `ip netns exec`, the namespace's own).
 * Called on a slow timer (rescan), never per sample.
 */
export function listInterfaces(root = '/sys/class/net', wanted: (name: string) => boolean = () => true): PortInfo[] {
  const out: PortInfo[] = [];
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return out;
  }
  const ageing = new Map<string, number | null>();
  for (const name of names) {
    // Filter by name before touching the files: a host with hundreds of unwatched interfaces
    // would otherwise cost two reads each per rescan (12.7 ms/s at 514 links, bench-cost).
    if (!isValidIfName(name) || !wanted(name)) continue;
    try {
      const ifindex = Number(readFileSync(`${root}/${name}/ifindex`, 'utf8').trim());
      const bridge = masterOf(name, root);
      out.push({ name, ifindex, bridge, ...bridgePortModes(name, bridge, root, ageing) });
    } catch {
      // vanished between readdir and read
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * How the bridge treats a port, as its loop evidence depends on it: learning off (brport/learning
 * 0, or the bridge's ageing_time 0: Linux then learns nothing, br_fdb_update) and hairpin mode.
 * Both false for a port of no bridge (a bond's, or none) or whose files cannot be read.
 */
export function bridgePortModes(
  name: string,
  bridge: string | null,
  root = '/sys/class/net',
  /** Each bridge's ageing_time, read once per listing (a bridge has many ports). */
  ageing = new Map<string, number | null>(),
): { noLearn: boolean; hairpin: boolean } {
  if (bridge === null || !isValidIfName(bridge)) return { noLearn: false, hairpin: false };
  if (!ageing.has(bridge)) ageing.set(bridge, readSysInt(`${root}/${bridge}/bridge/ageing_time`));
  return {
    noLearn: readSysInt(`${root}/${name}/brport/learning`) === 0 || ageing.get(bridge) === 0,
    hairpin: readSysInt(`${root}/${name}/brport/hairpin_mode`) === 1,
  };
}

/** A sysfs file holding one integer, or null (unreadable, empty, not an integer). */
function readSysInt(path: string): number | null {
  try {
    const txt = readFileSync(path, 'latin1').trim();
    const n = Number(txt);
    return txt !== '' && Number.isInteger(n) ? n : null;
  } catch {
    return null;
  }
}

/** The bridge (or bond) `name` is enslaved to, or null (one readlink, ~5 µs). */
export function masterOf(name: string, root = '/sys/class/net'): string | null {
  if (!isValidIfName(name)) return null;
  try {
    return basename(readlinkSync(`${root}/${name}/master`));
  } catch {
    return null;
  }
}

/** The ports enslaved to `bridge` (one readdir of its brif directory); [] when it is not a bridge. */
export function bridgeMembers(bridge: string, root = '/sys/class/net'): string[] {
  if (!isValidIfName(bridge)) return [];
  try {
    return readdirSync(`${root}/${bridge}/brif`).filter(isValidIfName);
  } catch {
    return [];
  }
}

/** Interface names only (one readdir), to match against the policy before reading anything. */
export function listInterfaceNames(root = '/sys/class/net'): string[] {
  try {
    return readdirSync(root).filter(isValidIfName);
  } catch {
    return [];
  }
}

const IFF_UP = 0x1;

/** Administrative state from the flags file (IFF_UP), or null when the port is gone. */
export function isAdminUp(name: string, root = '/sys/class/net'): boolean | null {
  try {
    const flags = Number.parseInt(readFileSync(`${root}/${name}/flags`, 'utf8').trim(), 16);
    return (flags & IFF_UP) !== 0;
  } catch {
    return null;
  }
}

/** /sys/class/net/NAME/carrier_up_count (Linux >= 4.16): carrier-up transitions since the link was created; null if unreadable. */
export function readCarrierUps(name: string, root = '/sys/class/net'): number | null {
  return isValidIfName(name) ? readSysInt(`${root}/${name}/carrier_up_count`) : null;
}
