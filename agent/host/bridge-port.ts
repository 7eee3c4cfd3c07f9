import { readFileSync } from 'node:fs';
import { loadAddon } from './addon.js';
import { assertIfName } from './names.js';

// A port's bridge membership and STP state as sysfs shows them, and the addon's rtnetlink setter
// for that state (agent/actions/link.ts: the fast stop of a looping bridge port).

/** include/uapi/linux/if_bridge.h */
export const BR_STATE_DISABLED = 0;
export const BR_STATE_FORWARDING = 3;

/** Sets a bridge port's state; returns 0 or the kernel's errno (EBUSY under kernel STP). */
export type BridgeStateSetter = (ifindex: number, state: number) => number;

export interface BridgePort {
  ifindex: number;
  /** BR_STATE_*, from /sys/class/net/X/brport/state. */
  state: number;
}

/** The port's ifindex and bridge state, or null when it is no bridge port (or is gone). */
export function bridgePortOf(port: string, root = '/sys/class/net'): BridgePort | null {
  assertIfName(port);
  try {
    const state = Number(readFileSync(`${root}/${port}/brport/state`, 'latin1').trim());
    const ifindex = Number(readFileSync(`${root}/${port}/ifindex`, 'latin1').trim());
    return Number.isInteger(state) && Number.isInteger(ifindex) && ifindex > 0 ? { ifindex, state } : null;
  } catch {
    return null;
  }
}

/** The addon's setter, or null when the addon (or this function of it) is missing: sysfs then. */
export function nativeBridgeState(): BridgeStateSetter | null {
  const addon = loadAddon();
  const fn = (addon as Record<string, unknown>).setBridgePortState;
  return typeof fn === 'function' ? (fn as BridgeStateSetter) : null;
}

/** No link has this ifindex (the kernel allocates from 1 upwards). */
const NO_IFINDEX = 0x7fffffff;

/**
 * Run the setter once on an ifindex no link has: its socket opens and its kernel path runs, and
 * nothing changes. Returns the errno (ENODEV where the fast stop works), or null without a setter.
 */
export function probeBridgeState(setter: BridgeStateSetter | null = nativeBridgeState()): number | null {
  return setter ? setter(NO_IFINDEX, BR_STATE_FORWARDING) : null;
}
