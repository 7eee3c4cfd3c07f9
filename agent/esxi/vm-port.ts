// `esxcli network vm port list -w WORLDID`: the vSwitch ports of one running VM (World ID from
// `esxcli network vm list`). One untitled block per virtual NIC:
//
//      Port ID: 67108881
//      vSwitch: vSwitch0
//      Portgroup: VM Network
//      DVPort ID:
//      MAC Address: 00:0c:29:72:3f:e3
//      IP Address: 0.0.0.0
//      Team Uplink: vmnic0
//      Uplink Port ID: 2214592517
//      Active Filters:
//
// Team Uplink is the physical NIC this vNIC's traffic currently leaves by, which is what ties a
// looping VM to the uplink that will carry its storm. Port ID is the switch port that
// `esxcli network port stats get -p` and `pktcap-uw --switchport` take.
import { entryMap, parseUntitledBlocks } from './kv.js';
import { fail, ok, parseCounter, show, type Result } from './result.js';

export interface VmPort {
  portId: number;
  vswitch: string;
  portgroup: string;
  /** Distributed port, null on a standard vSwitch (printed empty). */
  dvPortId: string | null;
  mac: string;
  /** null when ESXi prints 0.0.0.0 (no address reported by VMware Tools) or nothing. */
  ip: string | null;
  /** Physical NIC carrying this port's traffic now; null when printed empty. Not checked as vmnic here. */
  teamUplink: string | null;
  uplinkPortId: number | null;
  activeFilters: string[];
}

const REQUIRED = ['Port ID', 'vSwitch', 'Portgroup', 'MAC Address'];
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function parseVmPortList(text: unknown): Result<VmPort[]> {
  const blocks = parseUntitledBlocks(text, 'Port ID');
  if (!blocks.ok) return blocks;
  const out: VmPort[] = [];
  for (const b of blocks.value) {
    const e = entryMap(b);
    for (const k of REQUIRED) if (!e.has(k)) return fail(`port block has no ${k}`, b.line);
    const get = (k: string): string => e.get(k)?.value ?? '';
    const portId = parseCounter(get('Port ID'));
    if (!portId || !portId.exact || portId.value > 0xffffffff) return fail(`Port ID is not a port number: ${show(get('Port ID'))}`, e.get('Port ID')!.line);
    if (get('vSwitch') === '') return fail('empty vSwitch', e.get('vSwitch')!.line);
    if (get('Portgroup') === '') return fail('empty Portgroup', e.get('Portgroup')!.line);
    if (!MAC.test(get('MAC Address'))) return fail(`not a MAC address: ${show(get('MAC Address'))}`, e.get('MAC Address')!.line);
    let uplinkPortId: number | null = null;
    if (get('Uplink Port ID') !== '') {
      const u = parseCounter(get('Uplink Port ID'));
      if (!u || !u.exact || u.value > 0xffffffff) return fail(`Uplink Port ID is not a port number: ${show(get('Uplink Port ID'))}`, e.get('Uplink Port ID')!.line);
      uplinkPortId = u.value;
    }
    const ip = get('IP Address');
    const filters = get('Active Filters');
    out.push({
      portId: portId.value,
      vswitch: get('vSwitch'),
      portgroup: get('Portgroup'),
      dvPortId: get('DVPort ID') === '' ? null : get('DVPort ID'),
      mac: get('MAC Address').toLowerCase(),
      ip: ip === '' || ip === '0.0.0.0' ? null : ip,
      teamUplink: get('Team Uplink') === '' ? null : get('Team Uplink'),
      uplinkPortId,
      activeFilters: filters === '' ? [] : filters.split(',').map((s) => s.trim()),
    });
  }
  return ok(out);
}
