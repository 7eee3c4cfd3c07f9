import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import type { OverlayInfo, PortInfo } from '../types.js';
import { isValidIfName } from './names.js';
import { pathPortFiles, readIntFile, type PortFiles } from './port-files.js';

/**
 * The host's interfaces as sysfs shows them (inside `ip netns exec`, the namespace's own).
 * Called on a slow timer (rescan), never per sample.
 */
export function listInterfaces(
  root = '/sys/class/net',
  wanted: (name: string) => boolean = () => true,
  /** The per-port mode files; the daemon keeps theirs open across listings (host/port-files.ts). */
  files: PortFiles = pathPortFiles(root),
): PortInfo[] {
  const out: PortInfo[] = [];
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return out;
  }
  const ageing = new Map<string, number | null>();
  const stp = new Map<string, number | null>();
  for (const name of names) {
    // Filter by name before touching the files: a host with hundreds of unwatched interfaces
    // would otherwise cost two reads each per rescan (12.7 ms/s at 514 links, bench-cost).
    if (!isValidIfName(name) || !wanted(name)) continue;
    // Read by path every listing: it ties the name to its interface now (a kept fd would follow
    // a renamed interface, not the name).
    const ifindex = readIntFile(`${root}/${name}/ifindex`);
    if (ifindex === null) continue; // vanished between readdir and read
    try {
      const master = masterOf(name, root);
      // A port of no bridge may still forward: a NIC with macvlan/macvtap devices on it.
      const domain = master === null ? macvlanDomainOf(name, root) : null;
      const bridge = master ?? domain;
      const overlay = master !== null ? overlayOf(name, ifindex, root) : null;
      out.push({
        name,
        ifindex,
        bridge,
        ...bridgePortModes(name, master, root, ageing, files, ifindex, stp),
        ...(domain !== null ? { macvlan: true } : {}),
        ...(overlay !== null ? { overlay } : {}),
      });
    } catch {
      // vanished between readdir and read
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

// What kind of device a bridge port is never changes for one interface, so it is read once per
// name and ifindex (a uevent read and, for a VXLAN device, a readdir), not at every listing: a
// host with hundreds of bridged taps would otherwise pay a file read per port per second.
const overlayCache = new Map<string, { ifindex: number; overlay: OverlayInfo | null }>();
/** The cache is cleared whole past this many entries (interfaces come and go on a busy host). */
const OVERLAY_CACHE_MAX = 4096;

/**
 * Is bridge port `name` a VXLAN device (uevent DEVTYPE=vxlan), and on which underlay device
 * (its one lower_ link: the `dev` it was created on; none when the route picks the way out)?
 * null for any other kind of port, or when its files cannot be read.
 */
export function overlayOf(name: string, ifindex: number, root = '/sys/class/net'): OverlayInfo | null {
  if (!isValidIfName(name)) return null;
  const key = `${root}\0${name}`;
  const c = overlayCache.get(key);
  if (c !== undefined && c.ifindex === ifindex) return c.overlay;
  let overlay: OverlayInfo | null = null;
  let uevent: string;
  try {
    uevent = readFileSync(`${root}/${name}/uevent`, 'latin1');
  } catch {
    return null; // vanished: nothing to remember
  }
  if (/^DEVTYPE=vxlan$/m.test(uevent)) {
    const lower = (dirEntries(`${root}/${name}`) ?? []).find((e) => e.startsWith('lower_'))?.slice('lower_'.length);
    overlay = { kind: 'vxlan', underlay: lower !== undefined && isValidIfName(lower) ? lower : null };
  }
  if (overlayCache.size >= OVERLAY_CACHE_MAX) overlayCache.clear();
  overlayCache.set(key, { ifindex, overlay });
  return overlay;
}

/**
 * How the bridge treats a port, as its loop evidence depends on it: learning off (brport/learning
 * 0, or the bridge's ageing_time 0: Linux then learns nothing, br_fdb_update), hairpin mode, and
 * whether STP holds it discarding (brport/state 1 listening or 4 blocking, on a bridge running STP:
 * the bridge neither learns nor forwards what arrives there, though the frames still arrive).
 * All false for a port of no bridge (a bond's, or none) or whose files cannot be read.
 */
export function bridgePortModes(
  name: string,
  bridge: string | null,
  root = '/sys/class/net',
  /** Each bridge's ageing_time, read once per listing (a bridge has many ports). */
  ageing = new Map<string, number | null>(),
  files: PortFiles = pathPortFiles(root),
  /** The port's ifindex as listed (kept fds are per interface); -1 when unknown. */
  ifindex = -1,
  /** Each bridge's stp_state, read once per listing. */
  stp = new Map<string, number | null>(),
): { noLearn: boolean; hairpin: boolean; stpDiscarding: boolean } {
  if (bridge === null || !isValidIfName(bridge)) return { noLearn: false, hairpin: false, stpDiscarding: false };
  if (!ageing.has(bridge)) ageing.set(bridge, readIntFile(`${root}/${bridge}/bridge/ageing_time`));
  if (!stp.has(bridge)) stp.set(bridge, readIntFile(`${root}/${bridge}/bridge/stp_state`));
  // Only where STP runs (kernel or user space): without it every port forwards, and a port the
  // agent itself stopped by its bridge state must keep showing the moves of a loop through it.
  const state = (stp.get(bridge) ?? 0) !== 0 ? readIntFile(`${root}/${name}/brport/state`) : null;
  return {
    noLearn: files.readInt(name, ifindex, 'brport/learning') === 0 || ageing.get(bridge) === 0,
    hairpin: files.readInt(name, ifindex, 'brport/hairpin_mode') === 1,
    stpDiscarding: state === BR_STATE_LISTENING || state === BR_STATE_BLOCKING,
  };
}

/** brport/state values (linux/if_bridge.h) in which STP discards what arrives. */
const BR_STATE_LISTENING = 1;
const BR_STATE_BLOCKING = 4;

/** The bridge (or bond) `name` is enslaved to, or null (one readlink, ~5 µs). */
export function masterOf(name: string, root = '/sys/class/net'): string | null {
  if (!isValidIfName(name)) return null;
  try {
    return basename(readlinkSync(`${root}/${name}/master`));
  } catch {
    return null;
  }
}

/**
 * The ports enslaved to `bridge` (one readdir of its brif directory); for a macvlan domain's key
 * (a NIC with macvlan/macvtap devices on it, see macvlanDomainOf) the NIC and those devices;
 * [] otherwise.
 */
export function bridgeMembers(bridge: string, root = '/sys/class/net'): string[] {
  if (!isValidIfName(bridge)) return [];
  try {
    return readdirSync(`${root}/${bridge}/brif`).filter(isValidIfName);
  } catch {
    const uppers = macvlanUppers(bridge, root);
    return uppers.length > 0 && masterOf(bridge, root) === null ? [bridge, ...uppers] : [];
  }
}

// A hypervisor without a bridge (libvirt's `<interface type='direct'>`: a macvtap on a host NIC
// for each guest NIC; containers' macvlans) forwards all the same: the macvlan driver delivers a
// broadcast arriving on the NIC (the "lower") to every macvlan/macvtap on it, and a guest's frames
// leave by the NIC. A guest bridging two such NICs on two uplinks into one switch closes a loop
// through the switch, and no port has a master: the detector, which judges ports of one bridge,
// saw no loop at all (lab, agent-macvtap: ~24k frames in 600 ms, nothing journaled). So the NIC
// and its macvlan-kind uppers are one forwarding domain, keyed by the NIC's name, where a bridge's
// name would be. A NIC with such uppers cannot be a bridge port (the macvlan driver holds its
// rx_handler), so the key never meets a real bridge's ports.

/**
 * Is `name` a macvlan-kind device: a macvtap (sysfs `macvtap/` directory), or a device with one
 * lower link, no master and no DEVTYPE in its uevent (a macvlan; an ipvlan looks the same, and in
 * its L2 mode forwards broadcasts the same way)? A VLAN device says DEVTYPE=vlan; a bridge or a
 * bond has its own directory and several lowers.
 */
export function isMacvlanKind(name: string, root = '/sys/class/net'): boolean {
  if (!isValidIfName(name)) return false;
  const entries = dirEntries(`${root}/${name}`);
  return entries !== null && macvlanKindOf(name, entries, root);
}

/** isMacvlanKind on the device directory's entries, already read. */
function macvlanKindOf(name: string, entries: readonly string[], root: string): boolean {
  if (entries.includes('macvtap')) return true;
  if (entries.filter((e) => e.startsWith('lower_')).length !== 1) return false;
  if (entries.includes('master') || entries.includes('bridge') || entries.includes('bonding')) return false;
  try {
    return !/^DEVTYPE=/m.test(readFileSync(`${root}/${name}/uevent`, 'latin1'));
  } catch {
    return false;
  }
}

/** The macvlan-kind devices on NIC `lower` (its upper_ links), by name. */
export function macvlanUppers(lower: string, root = '/sys/class/net'): string[] {
  if (!isValidIfName(lower)) return [];
  return uppersOf(dirEntries(`${root}/${lower}`) ?? [], root);
}

/** The macvlan-kind devices among a NIC directory's upper_ links, sorted. */
function uppersOf(entries: readonly string[], root: string): string[] {
  const out: string[] = [];
  for (const e of entries) {
    if (!e.startsWith('upper_')) continue;
    const up = e.slice('upper_'.length);
    if (isMacvlanKind(up, root)) out.push(up);
  }
  return out.sort();
}

/**
 * The macvlan domain of a port with no master, or null: its own name for a NIC with macvlan-kind
 * devices on it, the NIC's for such a device (itself without a master). Read at each listing
 * only, one readdir of the port's directory.
 */
export function macvlanDomainOf(name: string, root = '/sys/class/net'): string | null {
  if (!isValidIfName(name)) return null;
  const entries = dirEntries(`${root}/${name}`);
  if (entries === null) return null;
  if (macvlanKindOf(name, entries, root)) {
    const lower = entries.find((e) => e.startsWith('lower_'))?.slice('lower_'.length);
    return lower !== undefined && isValidIfName(lower) && masterOf(lower, root) === null ? lower : null;
  }
  return uppersOf(entries, root).length > 0 ? name : null;
}

/** A directory's entries, or null when it cannot be read (the interface vanished). */
function dirEntries(dir: string): string[] | null {
  try {
    return readdirSync(dir);
  } catch {
    return null;
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
  return isValidIfName(name) ? readIntFile(`${root}/${name}/carrier_up_count`) : null;
}
