// `esxcli network vswitch standard list`: standard vSwitches with their uplinks and port groups
// (vSphere CLI Concepts and Examples, "List all virtual switches and associated port groups").
// One block per vSwitch, title = vSwitch name, then "Key: value" lines; lists are joined with
// ", " ("Uplinks: vmnic0, vmnic1", "Portgroups: VM Network, Management Network"); empty values may
// keep a trailing space ("Beacon Required By: "). Class is "etherswitch" in the ESXi 5.0 guide and
// "cswitch" in newer captures: kept as text, never interpreted.
import { entryMap, parseTitledBlocks } from './kv.js';
import { isVmnic } from './names.js';
import { fail, ok, parseSmallInt, setOwn, show, type Result } from './result.js';

export interface VSwitch {
  name: string;
  class: string | null;
  numPorts: number | null;
  usedPorts: number | null;
  configuredPorts: number | null;
  mtu: number | null;
  cdpStatus: string | null;
  beaconEnabled: boolean | null;
  beaconInterval: number | null;
  beaconThreshold: number | null;
  beaconRequiredBy: string[];
  /** The physical NICs teamed into this vSwitch; what a loop through this switch leaves by. */
  uplinks: string[];
  portgroups: string[];
  /** Keys this parser does not know (newer ESXi), raw. */
  extra: Record<string, string>;
}

const KNOWN = new Set([
  'Name', 'Class', 'Num Ports', 'Used Ports', 'Configured Ports', 'MTU', 'CDP Status',
  'Beacon Enabled', 'Beacon Interval', 'Beacon Threshold', 'Beacon Required By', 'Uplinks', 'Portgroups',
]);

function list(value: string): string[] {
  return value === '' ? [] : value.split(',').map((s) => s.trim());
}

export function parseVswitchList(text: unknown): Result<VSwitch[]> {
  const blocks = parseTitledBlocks(text);
  if (!blocks.ok) return blocks;
  const out: VSwitch[] = [];
  const seen = new Set<string>();
  for (const b of blocks.value) {
    const e = entryMap(b);
    const get = (k: string): string | null => e.get(k)?.value ?? null;
    const name = get('Name');
    if (name === null) return fail(`vSwitch block ${show(b.title ?? '')} has no Name`, b.line);
    if (name !== b.title) return fail(`block title ${show(b.title ?? '')} differs from Name ${show(name)}`, b.line);
    if (seen.has(name)) return fail(`vSwitch ${show(name)} listed twice`, b.line);
    seen.add(name);
    for (const k of ['Uplinks', 'Portgroups']) {
      if (!e.has(k)) return fail(`vSwitch ${show(name)} has no ${k} line`, b.line);
    }

    const num = (k: string, max: number): Result<number | null> => {
      const raw = get(k);
      if (raw === null) return ok(null);
      const n = parseSmallInt(raw, max);
      return n === null ? fail(`${k} is not a number: ${show(raw)}`, e.get(k)!.line) : ok(n);
    };
    const nums: Record<string, number | null> = {};
    for (const [k, max] of [['Num Ports', 1 << 20], ['Used Ports', 1 << 20], ['Configured Ports', 1 << 20], ['MTU', 65535], ['Beacon Interval', 1 << 20], ['Beacon Threshold', 1 << 20]] as const) {
      const r = num(k, max);
      if (!r.ok) return r;
      nums[k] = r.value;
    }
    const beacon = get('Beacon Enabled');
    if (beacon !== null && beacon !== 'true' && beacon !== 'false') {
      return fail(`Beacon Enabled is not true/false: ${show(beacon)}`, e.get('Beacon Enabled')!.line);
    }
    const uplinks = list(get('Uplinks')!);
    const badUplink = uplinks.find((u) => !isVmnic(u));
    if (badUplink !== undefined) return fail(`uplink is not a vmnic: ${show(badUplink)}`, e.get('Uplinks')!.line);
    const portgroups = list(get('Portgroups')!);
    if (portgroups.some((p) => p === '')) return fail('empty port group name in list', e.get('Portgroups')!.line);

    const extra: Record<string, string> = {};
    for (const x of b.entries) if (!KNOWN.has(x.key)) setOwn(extra, x.key, x.value);
    out.push({
      name,
      class: get('Class'),
      numPorts: nums['Num Ports'] ?? null,
      usedPorts: nums['Used Ports'] ?? null,
      configuredPorts: nums['Configured Ports'] ?? null,
      mtu: nums['MTU'] ?? null,
      cdpStatus: get('CDP Status'),
      beaconEnabled: beacon === null ? null : beacon === 'true',
      beaconInterval: nums['Beacon Interval'] ?? null,
      beaconThreshold: nums['Beacon Threshold'] ?? null,
      beaconRequiredBy: list(get('Beacon Required By') ?? ''),
      uplinks,
      portgroups,
      extra,
    });
  }
  return ok(out);
}
