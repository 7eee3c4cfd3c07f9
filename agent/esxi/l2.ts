// Which vNICs of one VM share an L2 domain on a standard vSwitch. Pure. Used twice: the preflight
// lint reports such a VM (a guest that bridges the vNICs closes a loop through the vSwitch), and
// the daemon watches such a VM's vNICs even when their port group is not watched, because a loop
// through a bridging guest is best broken at that guest's vNIC: with only the uplinks watched,
// shutting one uplink leaves the guest's loop inside the host, flooding out of the others.
import type { EsxInventory, EsxVm, EsxVmNic } from './inventory.js';
import type { Portgroup } from './portgroup.js';
import type { VmListEntry } from './vm-list.js';

/** VLAN 4095 on a standard port group trunks every VLAN to the guest (names.ts isVlanId). */
export const TRUNK_VLAN = 4095;

export interface L2 {
  vswitch: string;
  /** null when the port group is not in the host's list: only the same port group then compares. */
  vlanId: number | null;
  portgroup: string;
}

export function sameL2(a: L2, b: L2): boolean {
  if (a.vswitch === b.vswitch && a.portgroup === b.portgroup) return true;
  if (a.vswitch !== b.vswitch || a.vlanId === null || b.vlanId === null) return false;
  return a.vlanId === b.vlanId || a.vlanId === TRUNK_VLAN || b.vlanId === TRUNK_VLAN;
}

export function l2OfNic(inv: Pick<EsxInventory, 'portgroups'>, n: Pick<EsxVmNic, 'portgroup' | 'vswitch'>): L2 {
  const pg = inv.portgroups.find((p) => p.name === n.portgroup && p.vswitch === n.vswitch);
  return { vswitch: n.vswitch, vlanId: pg ? pg.vlanId : null, portgroup: n.portgroup };
}

/** Index groups (two or more members each, in input order) of the L2 domains that hold more than one item. */
export function sharedL2Groups(l2: readonly L2[]): number[][] {
  const parent = l2.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  for (let i = 0; i < l2.length; i++) {
    for (let j = i + 1; j < l2.length; j++) if (sameL2(l2[i]!, l2[j]!)) parent[find(j)] = find(i);
  }
  const groups = new Map<number, number[]>();
  l2.forEach((_, i) => groups.set(find(i), [...(groups.get(find(i)) ?? []), i]));
  return [...groups.values()].filter((g) => g.length >= 2);
}

/**
 * The vNICs of `vm` that share an L2 domain with another of its vNICs. Disconnected vNICs count:
 * a hand can connect them again, and a tripped one must stay listed so it can be restored.
 */
export function bridgingNics(inv: Pick<EsxInventory, 'portgroups'>, vm: EsxVm): EsxVmNic[] {
  const l2 = vm.nics.map((n) => l2OfNic(inv, n));
  return sharedL2Groups(l2).flat().sort((a, b) => a - b).map((i) => vm.nics[i]!);
}

/**
 * The other vNICs of `vm` when one of its vNICs is watched by port group (`watched`), on a vSwitch
 * with an uplink (or one the inventory does not list). A guest forwarding between a watched vNIC
 * and one on another vSwitch or VLAN closes a loop through the physical switch whenever both reach
 * it; each vSwitch then shows one VM port and its uplink circling, which alone is that VM's
 * exchange for ESXI_EXCHANGE_MS. With both vNICs read the detector tells the loop at once
 * (guestPeer: two member vNICs of one VM passing each other's frames).
 */
export function guestPeerNics(inv: Pick<EsxInventory, 'vswitches'>, vm: EsxVm, watched: (n: EsxVmNic) => boolean): EsxVmNic[] {
  if (!vm.nics.some(watched)) return [];
  const uplinked = (name: string): boolean => {
    const vs = inv.vswitches.find((v) => v.name === name);
    return vs === undefined || vs.uplinks.length > 0;
  };
  return vm.nics.filter((n) => !watched(n) && uplinked(n.vswitch));
}

/**
 * From `esxcli network vm list` alone (before any per-VM read): could this VM have two vNICs in
 * one L2? Its Networks column names one port group per port; the vSwitch and VLAN come from the
 * port group list. When the column cannot be mapped back per port, any VM with two ports might.
 */
export function mayBridge(v: VmListEntry, portgroups: readonly Portgroup[]): boolean {
  if (v.numPorts < 2) return false;
  if (!v.networksComplete) return true;
  const l2 = v.networks.map((name): L2 => {
    const pg = portgroups.find((p) => p.name === name);
    // A name the host does not list: compared by name only (same as the lint).
    return pg ? { vswitch: pg.vswitch, vlanId: pg.vlanId, portgroup: name } : { vswitch: `?${name}`, vlanId: null, portgroup: name };
  });
  return sharedL2Groups(l2).length > 0;
}
