// Reject, don't sanitise: names reach argv and sysfs paths only after this check.
const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

export function isValidIfName(name: string): boolean {
  return IFNAME.test(name) && name !== '.' && name !== '..';
}

export function assertIfName(name: string): string {
  if (!isValidIfName(name)) {
    throw Object.assign(new Error(`invalid interface name ${JSON.stringify(name)}`), { code: 'E_IFNAME' });
  }
  return name;
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
