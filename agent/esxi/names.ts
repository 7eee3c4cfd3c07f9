// Identifiers that reach ESXi argv. Reject, don't sanitise: a name either passes these checks and
// (where the host can tell us) appears in what the host itself lists, or nothing runs.
import { fail, ok, show, type Result } from './result.js';

/** Physical NIC names as ESXi prints them (vmnic0 ... vmnic9999). */
const VMNIC = /^vmnic[0-9]{1,4}$/;

export function isVmnic(name: unknown): name is string {
  return typeof name === 'string' && VMNIC.test(name);
}

/**
 * Port group and vSwitch names ("network labels").
 *
 * What ESXi allows is not documented as a character set. What is known:
 * - spaces are normal ("VM Network", "Management Network" are ESXi defaults; every fixture here);
 * - parentheses, '%', '\', '[ ]' and '/' occur in real vCenter labels (nsidc/vagrant-vsphere#200,
 *   ansible-collections/community.vmware#1361, vmware/terraform-provider-vsphere#330,
 *   hashicorp/terraform#16111), but ESXi 7.0.2 refuses '/' in a vSwitch name
 *   (ansible-collections/community.vmware#889, #950).
 *
 * What this agent accepts, and why:
 * - printable ASCII only (0x20-0x7E): control characters (newline above all) would split one name
 *   into two lines of a table or a log; non-ASCII is refused because esxcli pads table columns and
 *   nothing here verifies whether it counts bytes or characters (a multi-byte name could shift the
 *   columns we slice by), and look-alike characters would make the journal lie;
 * - no quote, backquote, backslash or '$': the agent reaches ESXi over SSH, whose remote side is a
 *   shell command line. The SSH layer must quote every argv element anyway; refusing the characters
 *   that break quoting when it is done wrong costs nothing on real hosts (none of the public
 *   outputs we have uses them) and removes the injection class entirely;
 * - no ',': `esxcli network vswitch standard list` joins port groups with ", " and
 *   `esxcli network vm list` does the same, so a name with a comma cannot be mapped back;
 * - no leading or trailing space (table cells are trimmed, so such a name cannot round-trip), no
 *   leading '-' (would read as an option if ever passed as a separate argv element);
 * - at most 255 characters: no documented limit was found; the bound only keeps garbage out.
 * A name refused here makes the agent refuse to act on that port group and say why: the safe
 * direction (an operator renames or lists it as protected), never a silent wrong target.
 */
const LABEL_FORBIDDEN = /['"`\\$,]/;

export function checkPortgroupName(name: unknown): string | null {
  if (typeof name !== 'string') return 'not a string';
  if (name.length === 0) return 'empty';
  if (name.length > 255) return 'longer than 255 characters';
  if (!/^[\x20-\x7e]+$/.test(name)) return 'contains a control or non-ASCII character';
  if (LABEL_FORBIDDEN.test(name)) return 'contains one of \' " ` \\ $ ,';
  if (name !== name.trim()) return 'has leading or trailing spaces';
  if (name.startsWith('-')) return "starts with '-'";
  return null;
}

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
