// The host's physical NICs, from either of the two listings ESXi has:
//
// `esxcli network nic list` (vSphere CLI Concepts and Examples: "List all uplinks and information
// about each device"), a dashes table whose Name column widens for vmnic10+ and whose Driver column
// widens for long driver names (igc-community):
//   Name    PCI Device    Driver  Admin Status  Link Status  Speed  Duplex  MAC Address  MTU  Description
//   ------  ------------  ------  ...
//   vmnic0  0000:c1:00.0  ntg3    Up            Up            1000  Full    2c:ea:...    1500  Broadcom Corporation ...
//
// `esxcfg-nics -l`, the older tool, without a dashes row, with speeds as "25000Mbps" and with
// "Link Speed" as two columns but "MAC Address" as one:
//   Name    PCI          Driver      Link Speed      Duplex MAC Address       MTU    Description
//   vmnic0  0000:4b:00.0 icen        Up   25000Mbps  Full   00:00:00:00:00:00 1500   Intel(R) ...
import { isVmnic } from './names.js';
import { fail, ok, parseSmallInt, show, type Result } from './result.js';
import { columns, parseTable, type Table } from './table.js';

export interface NicInfo {
  name: string;
  /** PCI address as printed (0000:c1:00.0). */
  pci: string;
  driver: string;
  /** Administrative state (esxcli "Admin Status"); null from esxcfg-nics, which has no such column. */
  adminUp: boolean | null;
  linkUp: boolean;
  /** Negotiated speed in Mb/s; 0 when the link is down. */
  speedMbps: number;
  /** "Full" or "Half" as printed. */
  duplex: string;
  /** Lower-case MAC, or null when the text is not a MAC (the public fixtures mask or zero them). */
  mac: string | null;
  mtu: number;
  description: string;
}

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function upDown(raw: string): boolean | null {
  return raw === 'Up' ? true : raw === 'Down' ? false : null;
}

interface Cells {
  name: string;
  pci: string;
  driver: string;
  admin: string | null;
  link: string;
  speed: string;
  duplex: string;
  mac: string;
  mtu: string;
  description: string;
}

function toNic(c: Cells, line: number, speedSuffix: string): Result<NicInfo> {
  if (!isVmnic(c.name)) return fail(`not a vmnic name: ${show(c.name)}`, line);
  if (!/^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/.test(c.pci)) return fail(`not a PCI address: ${show(c.pci)}`, line);
  if (c.driver === '') return fail('empty driver', line);
  const adminUp = c.admin === null ? null : upDown(c.admin);
  if (c.admin !== null && adminUp === null) return fail(`Admin Status is not Up/Down: ${show(c.admin)}`, line);
  const linkUp = upDown(c.link);
  if (linkUp === null) return fail(`link status is not Up/Down: ${show(c.link)}`, line);
  if (!c.speed.endsWith(speedSuffix)) return fail(`speed ${show(c.speed)} lacks ${show(speedSuffix)}`, line);
  const speedMbps = parseSmallInt(c.speed.slice(0, c.speed.length - speedSuffix.length), 10_000_000);
  if (speedMbps === null) return fail(`speed is not a number: ${show(c.speed)}`, line);
  if (c.duplex === '') return fail('empty duplex', line);
  const mtu = parseSmallInt(c.mtu, 65535);
  if (mtu === null) return fail(`MTU is not a number: ${show(c.mtu)}`, line);
  const mac = MAC.test(c.mac) ? c.mac.toLowerCase() : null;
  return ok({ name: c.name, pci: c.pci, driver: c.driver, adminUp, linkUp, speedMbps, duplex: c.duplex, mac, mtu, description: c.description });
}

interface Layout {
  /** Header names of the columns that differ between the two tools. */
  pci: string;
  admin: string | null;
  link: string;
  /** Unit printed after the speed ('' for esxcli, 'Mbps' for esxcfg-nics). */
  speedSuffix: string;
}

function collect(t: Table, layout: Layout): Result<NicInfo[]> {
  const names = ['Name', layout.pci, 'Driver', layout.link, 'Speed', 'Duplex', 'MAC Address', 'MTU', 'Description'];
  if (layout.admin !== null) names.push(layout.admin);
  const cols = columns(t, names);
  if (!cols.ok) return cols;
  const out: NicInfo[] = [];
  const seen = new Set<string>();
  for (const r of t.rows) {
    const [name, pci, driver, link, speed, duplex, mac, mtu, description, admin] = cols.value.map((i) => r.cells[i]!);
    const nic = toNic(
      { name: name!, pci: pci!, driver: driver!, admin: admin ?? null, link: link!, speed: speed!, duplex: duplex!, mac: mac!, mtu: mtu!, description: description! },
      r.line,
      layout.speedSuffix,
    );
    if (!nic.ok) return nic;
    if (seen.has(nic.value.name)) return fail(`${nic.value.name} listed twice`, r.line);
    seen.add(nic.value.name);
    out.push(nic.value);
  }
  return ok(out);
}

/** `esxcli network nic list` (speeds in Mb/s without unit). */
export function parseNicList(text: unknown): Result<NicInfo[]> {
  const t = parseTable(text);
  if (!t.ok) return t;
  if (!t.value.dashes) return fail('expected a dashes row under the header (esxcli table)');
  return collect(t.value, { pci: 'PCI Device', admin: 'Admin Status', link: 'Link Status', speedSuffix: '' });
}

/** `esxcfg-nics -l` (no dashes row; speeds as "1000Mbps"). */
export function parseEsxcfgNics(text: unknown): Result<NicInfo[]> {
  const t = parseTable(text, { multiWordHeaders: ['MAC Address'] });
  if (!t.ok) return t;
  return collect(t.value, { pci: 'PCI', admin: null, link: 'Link', speedSuffix: 'Mbps' });
}
