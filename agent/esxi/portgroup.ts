// `esxcli network vswitch standard portgroup list`: the host's standard port groups, their vSwitch
// and VLAN. Command as in VMware "vSphere Command-Line Interface Concepts and Examples" (ESXi 5.0,
// "List port groups currently associated with a virtual switch"); table layout from the captured
// outputs in test/fixtures/esxcli/portgroup-list_*.txt:
//
//   Name                Virtual Switch  Active Clients  VLAN ID
//   ------------------  --------------  --------------  -------
//   Management Network  vSwitch0                     1        0
//
// Names contain spaces and the numbers are right-aligned, so only header-derived offsets work.
import { checkPortgroupName, checkVswitchName, isVlanId } from './names.js';
import { fail, ok, parseSmallInt, show, type Result } from './result.js';
import { columns, parseTable } from './table.js';

export interface Portgroup {
  name: string;
  vswitch: string;
  activeClients: number;
  /** 0 untagged, 1-4094 VLAN, 4095 trunk (see names.ts isVlanId). */
  vlanId: number;
  /**
   * Why this agent would refuse to act on the port group (names.ts rules), or null. The row is
   * still returned: the host has it, and listing it keeps the inventory honest.
   */
  unusable: string | null;
}

export function parsePortgroupList(text: unknown): Result<Portgroup[]> {
  const t = parseTable(text);
  if (!t.ok) return t;
  if (!t.value.dashes) return fail('expected a dashes row under the header (esxcli table)');
  const cols = columns(t.value, ['Name', 'Virtual Switch', 'Active Clients', 'VLAN ID']);
  if (!cols.ok) return cols;
  const [iName, iSw, iClients, iVlan] = cols.value as [number, number, number, number];

  const out: Portgroup[] = [];
  const seen = new Set<string>();
  for (const r of t.value.rows) {
    const name = r.cells[iName]!;
    const vswitch = r.cells[iSw]!;
    const clients = parseSmallInt(r.cells[iClients]!, 1_000_000);
    const vlan = parseSmallInt(r.cells[iVlan]!, 4095);
    if (name === '') return fail('empty port group name', r.line);
    if (vswitch === '') return fail(`port group ${show(name)} has no vSwitch`, r.line);
    if (clients === null) return fail(`Active Clients is not a count: ${show(r.cells[iClients]!)}`, r.line);
    if (vlan === null || !isVlanId(vlan)) return fail(`VLAN ID is not 0-4095: ${show(r.cells[iVlan]!)}`, r.line);
    if (seen.has(name)) return fail(`port group ${show(name)} listed twice`, r.line);
    seen.add(name);
    const badName = checkPortgroupName(name);
    const badSwitch = checkVswitchName(vswitch);
    const unusable = badName ? `port group name ${badName}` : badSwitch ? `vSwitch name ${badSwitch}` : null;
    out.push({ name, vswitch, activeClients: clients, vlanId: vlan, unusable });
  }
  return ok(out);
}
