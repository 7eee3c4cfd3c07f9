// Identifiers that reach ESXi argv. Reject, don't sanitise: a name either passes these checks and
// (where the host can tell us) appears in what the host itself lists, or nothing runs.
import { fail, ok, show, type Result } from './result.js';
import { checkPortgroupName } from '../host/names.js';

/** Physical NIC names as ESXi prints them (vmnic0 ... vmnic9999). */
const VMNIC = /^vmnic[0-9]{1,4}$/;

export function isVmnic(name: unknown): name is string {
  return typeof name === 'string' && VMNIC.test(name);
}

// Port group and vSwitch labels: the rules live in host/names.ts (the policy checks them too).
export { checkPortgroupName };

export function isPortgroupName(name: unknown): name is string {
  return checkPortgroupName(name) === null;
}

/** vSwitch names: port group rules plus no '/', which ESXi 7.0.2 itself refuses (community.vmware#889). */
export function checkVswitchName(name: unknown): string | null {
  const why = checkPortgroupName(name);
  if (why) return why;
  return (name as string).includes('/') ? "contains '/'" : null;
}

export function isVswitchName(name: unknown): name is string {
  return checkVswitchName(name) === null;
}

/**
 * A port group name from config or an operator, checked against what the host lists
 * (`esxcli network vswitch standard portgroup list`, see portgroup.ts). Exact, case-sensitive
 * match: a near miss is reported, never corrected.
 */
export function validatePortgroup(name: unknown, hostList: readonly string[]): Result<string> {
  const why = checkPortgroupName(name);
  if (why) return fail(`invalid port group name ${show(String(name))}: ${why}`);
  const n = name as string;
  if (hostList.includes(n)) return ok(n);
  const near = hostList.find((h) => h.toLowerCase() === n.toLowerCase());
  return fail(
    near !== undefined
      ? `port group ${show(n)} is not on this host (did you mean ${show(near)}? names are matched exactly)`
      : `port group ${show(n)} is not on this host (${hostList.length} listed)`,
  );
}

/** A vmnic name checked against the host's `esxcli network nic list`. */
export function validateVmnic(name: unknown, hostNics: readonly string[]): Result<string> {
  if (!isVmnic(name)) return fail(`invalid NIC name ${show(String(name))}: expected vmnic<N>`);
  return hostNics.includes(name) ? ok(name) : fail(`NIC ${show(name)} is not on this host`);
}

/**
 * VLAN IDs on a standard port group: 0 = untagged, 1-4094 = that VLAN, 4095 = trunk (guest
 * tagging, all VLANs). vSphere API HostPortGroupSpec.vlanId and HostNetworkSystem.UpdatePortGroup
 * (developer.broadcom.com, virtual-infrastructure-json-api).
 */
export function isVlanId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 4095;
}

/**
 * A quarantine VLAN must isolate: 0 would put the port group on the untagged native VLAN and 4095
 * would trunk every VLAN to the guests, the opposite of quarantine.
 */
export function isQuarantineVlan(v: unknown): v is number {
  return isVlanId(v) && v >= 1 && v <= 4094;
}

/**
 * World IDs (`esxcli network vm list`, first column) and vim-cmd VM IDs (`vim-cmd vmsvc/getallvms`,
 * "Vmid") are both positive decimals but are NOT the same number for one VM (e.g. World ID
 * 2270066 vs Vmid 130 in the same host's outputs); keep them apart by name.
 */
const POSITIVE_ID = /^[1-9][0-9]{0,9}$/;

export function isWorldId(id: unknown): id is string {
  return typeof id === 'string' && POSITIVE_ID.test(id) && Number(id) <= 0xffffffff;
}

export function isVmid(id: unknown): id is string {
  return typeof id === 'string' && POSITIVE_ID.test(id) && Number(id) <= 0x7fffffff;
}

/** Virtual device keys are int32 in the vSphere API (VirtualDevice.key); virtual NICs usually 4000+. */
export function isDeviceKey(key: unknown): key is number {
  return typeof key === 'number' && Number.isInteger(key) && key > 0 && key <= 0x7fffffff;
}
