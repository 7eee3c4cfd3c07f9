// What the agent knows about one ESXi host's virtual network, assembled from the parsers in this
// folder (nic list, vswitch/portgroup lists, vm port lists, vim-cmd device lists, policies).
// Plain data: the SSH edge fills it at connect and on a refresh; actions validate every target
// against it, and the ESXi preflight lint judges it. Fields a host did not answer stay null,
// so "unknown" is never mistaken for "safe".
import type { NicInfo } from './nic-list.js';
import type { Portgroup } from './portgroup.js';
import type { VSwitch } from './vswitch.js';

export interface PortgroupSecurity {
  allowPromiscuous: boolean;
  allowForgedTransmits: boolean;
  allowMacChanges: boolean;
}

export interface PortgroupFailover {
  activeUplinks: string[];
  standbyUplinks: string[];
}

export interface EsxPortgroup extends Portgroup {
  /** Effective security policy (`portgroup policy security get`), null when not read. */
  security: PortgroupSecurity | null;
  /** Effective teaming (`portgroup policy failover get`), null when not read. */
  failover: PortgroupFailover | null;
}

/** One virtual NIC of a running VM, joined from `vm port list` and `vim-cmd device.getdevices`. */
export interface EsxVmNic {
  /** vSwitch port ID (changes when the VM powers on again or the vNIC reconnects). */
  portId: number | null;
  /** Lower-case MAC: the stable identity of a vNIC (port names use it). */
  mac: string;
  portgroup: string;
  vswitch: string;
  teamUplink: string | null;
  /** vim-cmd device key (4000, 4001, ...), null when device.getdevices was not read. */
  deviceKey: number | null;
  /** Connected per vim-cmd, null when unknown. */
  connected: boolean | null;
}

export interface EsxVm {
  name: string;
  /** `esxcli network vm list` World ID (running VMs only). */
  worldId: string | null;
  /** `vim-cmd vmsvc/getallvms` Vmid (what device.connection takes). */
  vmid: string | null;
  nics: EsxVmNic[];
}

export interface EsxInventory {
  /** The policy's name for the host (esxi.hosts[].name), used as the port-name prefix. */
  host: string;
  nics: NicInfo[];
  vswitches: VSwitch[];
  portgroups: EsxPortgroup[];
  vms: EsxVm[];
  /** /Net/BlockGuestBPDU (1 = guest BPDUs dropped), null when not read. */
  blockGuestBpdu: boolean | null;
  /** Monotonic ms when it was read; an action never relies on an inventory older than policy allows. */
  readAtMs: number;
  /**
   * Every registered VM by vim-cmd id (`vmsvc/getallvms`), also those with no vSwitch port now (a
   * VM whose only vNIC was disconnected is not in `vm list`, but must be reconnectable). Names held
   * by two VMs are left out. Absent when not read.
   */
  vimVms?: Array<{ name: string; vmid: string }>;
}
