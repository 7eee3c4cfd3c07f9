// `esxcli network vm list`: the running VMs with their World IDs and the port groups of their
// vNICs (vSphere CLI Concepts and Examples: "List the virtual machines on the host"; table layout
// from the captures in test/fixtures/esxcli/vm-list_*.txt):
//
//   World ID  Name               Num Ports  Networks
//   --------  -----------------  ---------  ------------------------------------------
//    2119833  FTD_Lab                    6  Security_Lab_Site1_VPN, ..., VM Network
//    4455345  gns3_vm                    2  Server Network, Server Network
//
// Networks holds one port group per port, joined with ", " and repeated when two vNICs sit on the
// same port group (gns3_vm above): exactly the case the ESXi lint looks for. It is the last column
// and runs past its dashes (one capture has 8 dashes over 24-character values), which the header
// table parser allows. The World ID is what `esxcli network vm port list -w` takes; it is NOT the
// vim-cmd Vmid of the same VM (names.ts).
import { isWorldId } from './names.js';
import { fail, ok, parseSmallInt, show, type Result } from './result.js';
import { columns, parseTable } from './table.js';

export interface VmListEntry {
  worldId: string;
  name: string;
  numPorts: number;
  /** One port group per port, in the printed order, duplicates kept. */
  networks: string[];
  /**
   * networks.length === numPorts. False means the list cannot be mapped back one port group per
   * port (a port group name with a comma, or a port without a network): use `vm port list`.
   */
  networksComplete: boolean;
}

export function parseVmList(text: unknown): Result<VmListEntry[]> {
  const t = parseTable(text);
  if (!t.ok) return t;
  if (!t.value.dashes) return fail('expected a dashes row under the header (esxcli table)');
  const cols = columns(t.value, ['World ID', 'Name', 'Num Ports', 'Networks']);
  if (!cols.ok) return cols;
  const [iWorld, iName, iPorts, iNets] = cols.value as [number, number, number, number];

  const out: VmListEntry[] = [];
  const seen = new Set<string>();
  for (const r of t.value.rows) {
    const worldId = r.cells[iWorld]!;
    const name = r.cells[iName]!;
    const ports = parseSmallInt(r.cells[iPorts]!, 10_000);
    const nets = r.cells[iNets]!;
    if (!isWorldId(worldId)) return fail(`World ID is not a positive decimal: ${show(worldId)}`, r.line);
    if (name === '') return fail(`VM with World ID ${worldId} has no name`, r.line);
    if (ports === null) return fail(`Num Ports is not a count: ${show(r.cells[iPorts]!)}`, r.line);
    if (seen.has(worldId)) return fail(`World ID ${worldId} listed twice`, r.line);
    seen.add(worldId);
    const networks = nets === '' ? [] : nets.split(',').map((s) => s.trim());
    if (networks.some((n) => n === '')) return fail('empty port group name in Networks', r.line);
    out.push({ worldId, name, numPorts: ports, networks, networksComplete: networks.length === ports });
  }
  return ok(out);
}
