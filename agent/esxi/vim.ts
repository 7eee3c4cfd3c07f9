// vim-cmd outputs (hostd's own CLI on the ESXi shell). VMware publishes no reference for vim-cmd;
// the shapes below come from the captures in test/fixtures/esxcli/ (SOURCES.txt).
//
// 1. `vim-cmd vmsvc/getallvms`: NOT a fixed-width table. The header is padded one way and the rows
//    another (every capture here: "Vmid      Name      File ..." over "1      ate-tester1   [datastore1]
//    ..."), Name and File both hold spaces, File starts with "[datastore] " and ends in ".vmx", and an
//    Annotation may run over several lines. So a row is anchored on " [datastore] path.vmx" followed
//    by the guest id and "vmx-NN"; the Name is what lies between the Vmid and that anchor. A public
//    parser that split on whitespace turned the VM "VMware vCenter Server 8" into the name "VMware"
//    (an ESXi 8.0.3 audit report in the search index); this one refuses a row it cannot split one
//    way only, naming its line.
//
// 2. `vim-cmd vmsvc/device.getdevices VMID`: a vmodl dump, not JSON: "(type) { name = value, ... }",
//    "(type) [ ... ]", "(type) null", double-quoted strings, single-quoted managed object refs, bare
//    atoms (numbers, true/false, <unset>), and trailing commas before "}". Parsed into a small tree;
//    the virtual NICs are the devices whose backing is a VirtualEthernetCard backing or whose type is
//    one of the virtual NIC classes of the vSphere API (VirtualEthernetCard subclasses).
import type { EsxVmNic } from './inventory.js';
import { isDeviceKey, isVmid } from './names.js';
import type { Portgroup } from './portgroup.js';
import { fail, ok, show, toLines, type Result } from './result.js';
import type { VmPort } from './vm-port.js';

// --- getallvms ------------------------------------------------------------------------------------

export interface VimVm {
  /** What vmsvc/* commands take (NOT the World ID, see names.ts). */
  vmid: string;
  name: string;
  /** As printed: "[datastore1] dir/vm.vmx". */
  file: string;
  datastore: string;
  /** Guest id ("rhel9_64Guest"), '' when the row has none. */
  guestOs: string;
  /** Virtual hardware version ("vmx-19"). */
  version: string;
  /** Annotation with continuation lines joined by "\n", '' when none. */
  annotation: string;
}

const HEADER = /^Vmid\s+Name\s+File\s+Guest OS\s+Version\s+Annotation\s*$/;
const FILE_AND_REST = /^\[([^\]]+)\] (.+?\.vmx)\s+(?:(\S+)\s+)?(vmx-[0-9]{1,3})(?:\s+(.*?))?\s*$/;
/**
 * hostd prints this for a registered VM it cannot load (wording as quoted in community forum
 * posts; no capture here holds one). Such a VM cannot be reconfigured, so there is no id to keep.
 */
const SKIPPING = /^Skipping invalid VM '[0-9]+'$/;

interface Split {
  name: string;
  m: RegExpExecArray;
}

/** Every way the text after the Vmid splits into Name + "[ds] path.vmx guest vmx-NN annotation". */
function splits(rest: string): Split[] {
  const out: Split[] = [];
  for (let p = 1; p < rest.length; p++) {
    if (rest[p] !== '[' || !/\s/.test(rest[p - 1]!)) continue;
    const name = rest.slice(0, p).trim();
    const m = FILE_AND_REST.exec(rest.slice(p));
    if (name !== '' && m) out.push({ name, m });
  }
  return out;
}

export function parseGetAllVms(text: unknown): Result<VimVm[]> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  const h = lines.findIndex((l) => l.trim() !== '');
  if (h < 0) return fail('empty output');
  if (!HEADER.test(lines[h]!.trim())) return fail(`expected the "Vmid Name File Guest OS Version Annotation" header, got ${show(lines[h]!.trim())}`, h + 1);

  const out: VimVm[] = [];
  const seen = new Set<string>();
  let last: VimVm | null = null;
  for (let i = h + 1; i < lines.length; i++) {
    const l = lines[i]!;
    const t = l.trim();
    if (t === '') continue;
    if (SKIPPING.test(t)) {
      last = null;
      continue;
    }
    const id = /^([0-9]+)\s+(.*)$/.exec(t);
    const cands = id ? splits(id[2]!) : [];
    if (id && cands.length > 1) {
      return fail(`cannot tell where the name of VM ${id[1]} ends: "[" after a space in its name or path (${cands.length} ways to read the row)`, i + 1);
    }
    if (id && cands.length === 1) {
      const vmid = id[1]!;
      if (!isVmid(vmid)) return fail(`not a vim-cmd VM id: ${show(vmid)}`, i + 1);
      if (seen.has(vmid)) return fail(`Vmid ${vmid} listed twice`, i + 1);
      seen.add(vmid);
      const { name, m } = cands[0]!;
      last = { vmid, name, file: `[${m[1]}] ${m[2]}`, datastore: m[1]!, guestOs: m[3] ?? '', version: m[4]!, annotation: m[5] ?? '' };
      out.push(last);
      continue;
    }
    // Anything else can only be the next line of a multi-line annotation, and only after a row
    // whose annotation has begun: a prompt or stray output elsewhere is refused, not absorbed.
    if (last && last.annotation !== '') {
      last.annotation += `\n${t}`;
      continue;
    }
    return fail(`not a VM row (Vmid, Name, [datastore] path.vmx, guest, vmx-NN): ${show(t)}`, i + 1);
  }
  return ok(out);
}

// --- vmodl dump -----------------------------------------------------------------------------------

export type VNode =
  | { kind: 'obj'; type: string; fields: Map<string, VNode>; at: number }
  | { kind: 'arr'; type: string; items: VNode[]; at: number }
  | { kind: 'null'; type: string; at: number }
  | { kind: 'str'; value: string; at: number }
  | { kind: 'ref'; value: string; at: number }
  | { kind: 'atom'; value: string; at: number };

const MAX_DEPTH = 64;

class VmodlError {
  constructor(
    readonly message: string,
    readonly at: number,
  ) {}
}

/** Character offset -> 1-based line. */
function lineOf(s: string, at: number): number {
  let n = 1;
  for (let i = 0; i < at && i < s.length; i++) if (s[i] === '\n') n++;
  return n;
}

/**
 * The vmodl text of one value (object, array, null, string, ref or atom) starting at `from`.
 * Internal errors are VmodlError values thrown inside this function only and turned into a Result
 * before it returns, so callers still never see an exception.
 */
export function parseVmodl(s: string, from = 0): Result<{ node: VNode; end: number }> {
  let i = from;
  const ws = (): void => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const err = (m: string): never => {
    throw new VmodlError(m, i);
  };
  const quoted = (q: string): string => {
    let j = i + 1;
    let str = '';
    while (j < s.length && s[j] !== q) {
      if (s[j] === '\\' && j + 1 < s.length) j++;
      str += s[j];
      j++;
    }
    if (j >= s.length) err(`unterminated ${q === '"' ? 'string' : 'reference'}`);
    i = j + 1;
    return str;
  };
  const value = (depth: number): VNode => {
    if (depth > MAX_DEPTH) err(`nested deeper than ${MAX_DEPTH}`);
    ws();
    const at = i;
    const c = s[i];
    if (c === undefined) return err('value expected, got end of output');
    if (c === '"') return { kind: 'str', value: quoted('"'), at };
    if (c === "'") return { kind: 'ref', value: quoted("'"), at };
    if (c === '(') {
      const m = /^\(([A-Za-z_][A-Za-z0-9_.]*)\)/.exec(s.slice(i, i + 200));
      if (!m) err(`expected "(type)", got ${show(s.slice(i, i + 30))}`);
      const type = m![1]!;
      i += m![0].length;
      ws();
      if (s.startsWith('null', i) && !/[A-Za-z0-9_]/.test(s[i + 4] ?? '')) {
        i += 4;
        return { kind: 'null', type, at };
      }
      if (s[i] === '{') {
        i++;
        const fields = new Map<string, VNode>();
        for (;;) {
          ws();
          if (s[i] === '}') {
            i++;
            return { kind: 'obj', type, fields, at };
          }
          const fm = /^([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(s.slice(i, i + 200));
          if (!fm) err(`expected "name = value" or "}", got ${show(s.slice(i, i + 30))}`);
          const name = fm![1]!;
          if (fields.has(name)) err(`${show(name)} twice in one object`);
          i += fm![0].length;
          fields.set(name, value(depth + 1));
          ws();
          if (s[i] === ',') i++;
          else if (s[i] !== '}') err(`expected "," or "}" after ${show(name)}`);
        }
      }
      if (s[i] === '[') {
        i++;
        const items: VNode[] = [];
        for (;;) {
          ws();
          if (s[i] === ']') {
            i++;
            return { kind: 'arr', type, items, at };
          }
          items.push(value(depth + 1));
          ws();
          if (s[i] === ',') i++;
          else if (s[i] !== ']') err('expected "," or "]" in array');
        }
      }
      return err(`expected "{", "[" or "null" after (${type})`);
    }
    const am = /^(<unset>|[A-Za-z0-9_.+-]+)/.exec(s.slice(i, i + 100));
    if (!am) return err(`unexpected ${show(s.slice(i, i + 30))}`);
    i += am[0].length;
    return { kind: 'atom', value: am[0], at };
  };
  try {
    const node = value(0);
    return ok({ node, end: i });
  } catch (e) {
    if (e instanceof VmodlError) return fail(e.message, lineOf(s, e.at));
    return fail(`vmodl parser failed: ${String(e)}`);
  }
}

// --- device.getdevices --------------------------------------------------------------------------

/** Virtual NIC classes of the vSphere API (subclasses of vim.vm.device.VirtualEthernetCard). */
const NIC_TYPES = new Set([
  'VirtualE1000', 'VirtualE1000e', 'VirtualPCNet32', 'VirtualVmxnet', 'VirtualVmxnet2', 'VirtualVmxnet3',
  'VirtualVmxnet3Vrdma', 'VirtualSriovEthernetCard', 'VirtualEthernetCard',
]);
const DEVICE = 'vim.vm.device.';
const ETHER_BACKING = 'vim.vm.device.VirtualEthernetCard.';
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export interface VmNicDevice {
  /** Device key (4000, 4001, ...): what `vim-cmd vmsvc/device.connection VMID KEY 0|1` takes. */
  key: number;
  /** Class without the "vim.vm.device." prefix ("VirtualE1000", "VirtualVmxnet3"). */
  type: string;
  label: string | null;
  summary: string | null;
  /** Backing class without the "vim.vm.device.VirtualEthernetCard." prefix ("NetworkBackingInfo"). */
  backing: string | null;
  /** Standard port group name (backing deviceName) for a NetworkBackingInfo, else null. */
  portgroup: string | null;
  /** Distributed port group key for a DistributedVirtualPortBackingInfo, else null. */
  dvPortgroupKey: string | null;
  /** Lower-case MAC, null while unset (a generated MAC is only assigned at first power-on). */
  mac: string | null;
  addressType: string | null;
  /** connectable.connected / startConnected; null when connectable is null or the value unset. */
  connected: boolean | null;
  startConnected: boolean | null;
  status: string | null;
}

function field(n: VNode | undefined, name: string): VNode | undefined {
  return n && n.kind === 'obj' ? n.fields.get(name) : undefined;
}

function str(n: VNode | undefined): string | null {
  return n && (n.kind === 'str' || n.kind === 'ref') ? n.value : null;
}

function boolAtom(n: VNode | undefined): boolean | null {
  return n && n.kind === 'atom' ? (n.value === 'true' ? true : n.value === 'false' ? false : null) : null;
}

/** The virtual NICs of one VM, in device order. Other devices (disks, controllers, USB) are skipped. */
export function parseVmDevices(text: unknown): Result<VmNicDevice[]> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  let h = lines.findIndex((l) => l.trim() !== '');
  if (h < 0) return fail('empty output');
  if (lines[h]!.trim() === 'Devices:') h = lines.findIndex((l, i) => i > h && l.trim() !== '');
  if (h < 0) return fail('no device dump after "Devices:"');
  if (!lines[h]!.trim().startsWith('(vim.vm.VirtualHardware)')) {
    return fail(`expected "(vim.vm.VirtualHardware) {", got ${show(lines[h]!.trim())}`, h + 1);
  }
  const s = lines.join('\n');
  const offset = lines.slice(0, h).reduce((n, l) => n + l.length + 1, 0);
  const parsed = parseVmodl(s, offset);
  if (!parsed.ok) return parsed;
  const trailing = s.slice(parsed.value.end);
  if (trailing.trim() !== '') return fail('text after the device dump', lineOf(s, parsed.value.end + trailing.length - trailing.trimStart().length));
  const top = parsed.value.node;
  const list = field(top, 'device');
  if (top.kind !== 'obj' || !list || list.kind !== 'arr') return fail('no "device = (...) [ ... ]" list in the dump', h + 1);

  const out: VmNicDevice[] = [];
  const keys = new Set<number>();
  for (const d of list.items) {
    if (d.kind !== 'obj' || !d.type.startsWith(DEVICE)) continue;
    const type = d.type.slice(DEVICE.length);
    const backing = field(d, 'backing');
    const backingType = backing && (backing.kind === 'obj' || backing.kind === 'null') ? backing.type : null;
    const isNic = NIC_TYPES.has(type) || (backingType !== null && backingType.startsWith(ETHER_BACKING));
    if (!isNic) continue;
    const line = lineOf(s, d.at);
    const k = field(d, 'key');
    const key = k && k.kind === 'atom' && /^[0-9]{1,10}$/.test(k.value) ? Number(k.value) : NaN;
    if (!isDeviceKey(key)) return fail(`${type} has no valid device key`, line);
    if (keys.has(key)) return fail(`device key ${key} twice`, line);
    keys.add(key);
    const macNode = field(d, 'macAddress');
    const macRaw = str(macNode);
    if (macRaw !== null && !MAC.test(macRaw)) return fail(`${type} ${key}: not a MAC address: ${show(macRaw)}`, lineOf(s, macNode!.at));
    const conn = field(d, 'connectable');
    const info = field(d, 'deviceInfo');
    const shortBacking = backingType === null ? null : backingType.startsWith(ETHER_BACKING) ? backingType.slice(ETHER_BACKING.length) : backingType;
    out.push({
      key,
      type,
      label: str(field(info, 'label')),
      summary: str(field(info, 'summary')),
      backing: shortBacking,
      portgroup: shortBacking === 'NetworkBackingInfo' ? str(field(backing, 'deviceName')) : null,
      dvPortgroupKey: str(field(field(backing, 'port'), 'portgroupKey')),
      mac: macRaw === null ? null : macRaw.toLowerCase(),
      addressType: str(field(d, 'addressType')),
      connected: boolAtom(field(conn, 'connected')),
      startConnected: boolAtom(field(conn, 'startConnected')),
      status: str(field(conn, 'status')),
    });
  }
  return ok(out);
}

// --- joining the two views of a VM's vNICs ------------------------------------------------------

/**
 * One VM's vNICs for the inventory: the running ports from `esxcli network vm port list` joined
 * by MAC with the devices from `vim-cmd vmsvc/device.getdevices`. A port without a device (or
 * with two) keeps deviceKey/connected null; a device without a port (disconnected, or the VM is
 * off) is listed from its backing when its port group is on the host. Every such gap is a note.
 */
export function joinVmNics(
  ports: readonly VmPort[],
  devices: readonly VmNicDevice[] | null,
  portgroups: readonly Pick<Portgroup, 'name' | 'vswitch'>[],
): { nics: EsxVmNic[]; notes: string[] } {
  const nics: EsxVmNic[] = [];
  const notes: string[] = [];
  const used = new Set<number>();
  for (const p of ports) {
    const match = devices ? devices.filter((d) => d.mac === p.mac) : [];
    if (devices && match.length !== 1) notes.push(`port ${p.portId} (${p.mac}): ${match.length === 0 ? 'no' : 'more than one'} virtual NIC with this MAC in device.getdevices`);
    const d = match.length === 1 ? match[0]! : null;
    if (d) used.add(d.key);
    nics.push({ portId: p.portId, mac: p.mac, portgroup: p.portgroup, vswitch: p.vswitch, teamUplink: p.teamUplink, deviceKey: d ? d.key : null, connected: d ? d.connected : null });
  }
  for (const d of devices ?? []) {
    if (used.has(d.key)) continue;
    const pg = d.portgroup === null ? undefined : portgroups.find((x) => x.name === d.portgroup);
    if (!pg || d.mac === null) {
      notes.push(`virtual NIC ${d.key} (${d.label ?? d.type}): no running port and ${d.mac === null ? 'no MAC' : `port group ${show(d.portgroup ?? d.backing ?? '?')} not on this host's standard switches`}; left out`);
      continue;
    }
    nics.push({ portId: null, mac: d.mac, portgroup: pg.name, vswitch: pg.vswitch, teamUplink: null, deviceKey: d.key, connected: d.connected });
  }
  return { nics, notes };
}
