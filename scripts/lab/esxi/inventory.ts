// The stand-in ESXi host's configuration: inventory.json in the lab directory, written at build,
// read by every stand-in call and rewritten by the ones that change it (port group VLAN, vNIC
// connection; standin/esxi_standin/state.py, under a flock, by atomic rename).
//
// Configuration only. Counters and link states are never stored here: the stand-ins read them
// from the kernel on every call. Identity values a namespace cannot have (PCI addresses, World
// IDs, Vmids, uplink port IDs, vSwitch "Num Ports") are fixed lab values, named as such.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EsxiLabPlan } from './plan.js';

export interface EsxiInvNic {
  name: string;
  /** Linux interface in the esx namespace. */
  dev: string;
  driver: string;
  pci: string;
  /** Read from the device at build; `nic list` prints the live value. */
  mac: string;
  mtu: number;
  /** Mb/s the veth reports at build; `nic list` prints the live value. */
  speed: number;
  description: string;
  /** vSwitch port ID of this uplink (vm port list "Uplink Port ID", port stats get -p). */
  uplinkPortId: number;
}

export interface EsxiInvVswitch {
  name: string;
  /** Linux bridge playing it. */
  bridge: string;
  uplinks: string[];
  portgroups: string[];
  mtu: number;
  numPorts: number;
  configuredPorts: number;
  cdpStatus: string;
}

export interface EsxiInvSecurity {
  allowPromiscuous: boolean;
  allowForgedTransmits: boolean;
  allowMacChanges: boolean;
}

export interface EsxiInvPortgroup {
  name: string;
  vswitch: string;
  /** 0 untagged, 1-4094, 4095 guest tagging. */
  vlanId: number;
  security: EsxiInvSecurity;
  /** "Override Vswitch Allow ..." lines of `policy security get` (all false by default). */
  securityOverride?: Partial<EsxiInvSecurity>;
  activeUplinks: string[];
  standbyUplinks: string[];
  failover?: { loadBalancing?: string; failureDetection?: string; notifySwitches?: boolean; failback?: boolean; overrideUplinks?: boolean };
}

export interface EsxiInvVmNic {
  /** vim-cmd device key (4000, 4001, ...). */
  key: number;
  mac: string;
  portgroup: string;
  /** vSwitch port ID; a new one after every reconnect, as on ESXi. */
  portId: number;
  /** Host-side veth on the vSwitch bridge. */
  dev: string;
  connected: boolean;
  type: 'VirtualVmxnet3' | 'VirtualE1000';
  pciSlot: number;
}

export interface EsxiInvVm {
  name: string;
  vmid: number;
  worldId: number;
  guestId: string;
  hwVersion: string;
  datastore: string;
  hardware: { numCPU: number; numCoresPerSocket: number; memoryMB: number };
  nics: EsxiInvVmNic[];
}

export interface EsxiInvVmknic {
  name: string;
  dev: string;
  portgroup: string;
  portId: number;
  ip: string;
}

export interface EsxiInventory {
  version: 1;
  hostname: string;
  /** The stand-ins refuse to run in any other network namespace. */
  netns: string;
  nics: EsxiInvNic[];
  vswitches: EsxiInvVswitch[];
  portgroups: EsxiInvPortgroup[];
  vms: EsxiInvVm[];
  vmknics: EsxiInvVmknic[];
  advanced: { '/Net/BlockGuestBPDU': 0 | 1 };
  /** false: vsish/esxcli print 0 for rx/tx broadcast of the vmnics, as some real drivers do. */
  driverReportsBroadcast: boolean;
  /**
   * VLANs the physical switch trunks to the uplinks. No tags exist on the lab's wire (no 802.1Q in
   * this kernel): a trunked VLAN is merged with the untagged one on the uplinks; see vlan.py.
   */
  trunkVlans: number[];
  /** Next vSwitch port ID to hand out (vNIC reconnect). */
  nextPortId: number;
}

export const INVENTORY_FILE = 'inventory.json';
/** vSwitch1's port group in the split variant (plan.ts), named as on the captured host. */
export const SPLIT_PORTGROUP = 'VM Network1';

export interface InventoryOptions {
  driverReportsBroadcast?: boolean;
  trunkVlans?: readonly number[];
  blockGuestBpdu?: 0 | 1;
}

/** Live facts of the uplinks read at build (MAC, MTU, speed), keyed by vmnic name. */
export type UplinkFacts = Record<string, { mac: string; mtu: number; speed: number }>;

const SECURITY_DEFAULT: EsxiInvSecurity = {
  // vSphere 5.0 Networking defaults: promiscuous Reject, MAC changes and forged transmits Accept.
  // Forged transmits Accept is what lets a VM that bridges two vNICs loop at all.
  allowPromiscuous: false,
  allowForgedTransmits: true,
  allowMacChanges: true,
};

/** Pure: the inventory of a freshly built lab. */
export function defaultInventory(plan: EsxiLabPlan, uplinks: UplinkFacts, opts: InventoryOptions = {}): EsxiInventory {
  const nics: EsxiInvNic[] = plan.uplinks.map((name, i) => {
    const f = uplinks[name];
    if (!f) throw new Error(`no facts for uplink ${name}`);
    return {
      name,
      dev: name,
      driver: 'veth',
      pci: `0000:0${3 + i}:00.0`,
      mac: f.mac,
      mtu: f.mtu,
      speed: f.speed,
      description: 'Linux veth pair (stormbreaker lab stand-in for a physical NIC)',
      uplinkPortId: 2214592514 + 2 * i,
    };
  });
  const vmNic = (n: EsxiLabPlan['vmNics'][number], i: number): EsxiInvVmNic => ({
    key: n.key,
    mac: n.mac,
    portgroup: n.vswitch === 'vSwitch1' ? SPLIT_PORTGROUP : 'VM Network',
    portId: n.portId,
    dev: n.dev,
    connected: true,
    type: n.type,
    pciSlot: n.type === 'VirtualE1000' ? 32 : 192 + 32 * i,
  });
  const vm = (name: 'vmA' | 'vm1', vmid: number, worldId: number): EsxiInvVm => ({
    name,
    vmid,
    worldId,
    guestId: 'debian12_64Guest',
    hwVersion: 'vmx-19',
    datastore: 'datastore1',
    hardware: { numCPU: 1, numCoresPerSocket: 1, memoryMB: 512 },
    nics: plan.vmNics.filter((n) => n.vm === name).map(vmNic),
  });
  const trunk = [...(opts.trunkVlans ?? [])];
  const vs0Uplinks = plan.uplinks.filter((u) => u !== plan.split?.uplink);
  for (const v of trunk) if (!Number.isInteger(v) || v < 1 || v > 4094) throw new Error(`trunk VLAN must be 1-4094, got ${v}`);
  return {
    version: 1,
    hostname: plan.ns.esx,
    netns: plan.ns.esx,
    nics,
    vswitches: [
      {
        name: 'vSwitch0',
        bridge: plan.bridge,
        uplinks: vs0Uplinks,
        portgroups: ['VM Network', 'Management Network'],
        mtu: 1500,
        // As in the captured `vswitch standard list` (elatov): 2816 ports, 128 configured.
        numPorts: 2816,
        configuredPorts: 128,
        cdpStatus: 'listen',
      },
      ...(plan.split
        ? [{ name: plan.split.bridge, bridge: plan.split.bridge, uplinks: [plan.split.uplink], portgroups: [SPLIT_PORTGROUP], mtu: 1500, numPorts: 2816, configuredPorts: 128, cdpStatus: 'listen' }]
        : []),
    ],
    portgroups: [
      { name: 'VM Network', vswitch: 'vSwitch0', vlanId: 0, security: { ...SECURITY_DEFAULT }, activeUplinks: [...vs0Uplinks], standbyUplinks: [] },
      { name: 'Management Network', vswitch: 'vSwitch0', vlanId: 0, security: { ...SECURITY_DEFAULT }, activeUplinks: [...vs0Uplinks], standbyUplinks: [] },
      ...(plan.split
        ? [{ name: SPLIT_PORTGROUP, vswitch: plan.split.bridge, vlanId: 0, security: { ...SECURITY_DEFAULT }, activeUplinks: [plan.split.uplink], standbyUplinks: [] }]
        : []),
    ],
    vms: [vm('vmA', 1, 2101001), vm('vm1', 2, 2101002)],
    vmknics: [{ name: 'vmk0', dev: plan.mgmt.dev, portgroup: 'Management Network', portId: 33554436, ip: plan.mgmt.esxIp }],
    advanced: { '/Net/BlockGuestBPDU': opts.blockGuestBpdu ?? 0 },
    driverReportsBroadcast: opts.driverReportsBroadcast ?? true,
    trunkVlans: trunk,
    nextPortId: plan.vmNics.reduce((m, n) => Math.max(m, n.portId), 0) + 1,
  };
}

export function inventoryPath(lab: { dir: string }): string {
  return join(lab.dir, INVENTORY_FILE);
}

export async function readInventory(lab: { dir: string }): Promise<EsxiInventory> {
  const inv = JSON.parse(await readFile(inventoryPath(lab), 'utf8')) as EsxiInventory;
  if (inv.version !== 1) throw new Error(`unsupported stand-in inventory version ${String(inv.version)}`);
  return inv;
}

/**
 * Replace the inventory by atomic rename, as the stand-ins do. It takes no lock: call it while
 * no stand-in is changing the inventory (tests set options between commands).
 */
export async function writeInventory(lab: { dir: string }, inv: EsxiInventory): Promise<void> {
  const tmp = join(lab.dir, `.${INVENTORY_FILE}.node-${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(inv, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, inventoryPath(lab));
}
