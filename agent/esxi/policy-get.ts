// The effective policies of one standard port group:
//   `esxcli network vswitch standard portgroup policy security get -p PG`
//   `esxcli network vswitch standard portgroup policy failover get -p PG`
// Both print one untitled block of indented "Key: value" lines.
//
// NO REAL CAPTURE of either output was found (test/fixtures/esxcli/SOURCES.txt). Key names come
// from VMware's own VDNet test library, which runs exactly these commands and matches
// "   Allow Promiscuous: true", "   Allow MAC Address Change: true" (singular), "   Allow Forged
// Transmits: true", "   Network Failure Detection: link|beacon", "Active Adapters: vmnicN",
// "Standby Adapters:", "Unused Adapters:". So the parser requires only those, accepts the plural
// "Allow MAC Address Changes" as well (the GUI and the task brief say it that way), keeps every
// "Override ...: true|false" line in `overrides` without assuming their exact labels, and keeps
// any other line raw in `extra`. A value that is not what its key must hold is an error naming the
// line: a policy misread as "safe" would hide the nested-ESXi loop the lint looks for.
import type { PortgroupFailover, PortgroupSecurity } from './inventory.js';
import { kvLine } from './kv.js';
import { isVmnic } from './names.js';
import { fail, ok, setOwn, show, toLines, type Result } from './result.js';

export interface SecurityPolicy extends PortgroupSecurity {
  /** "Override ..." flags as printed (true = the port group overrides its vSwitch's setting). */
  overrides: Record<string, boolean>;
  extra: Record<string, string>;
}

export interface FailoverPolicy extends PortgroupFailover {
  unusedUplinks: string[];
  /** As printed (srcport, srcmac, iphash, explicit ...), null when absent. */
  loadBalancing: string | null;
  /** "link" or "beacon" as printed, null when absent. */
  failureDetection: string | null;
  notifySwitches: boolean | null;
  failback: boolean | null;
  overrides: Record<string, boolean>;
  extra: Record<string, string>;
}

interface Entry {
  value: string;
  line: number;
}

/** Every non-blank line must be an indented "Key: value"; a key twice means two outputs ran together. */
function readBlock(text: unknown): Result<Map<string, Entry>> {
  if (typeof text !== 'string') return fail('output is not text');
  const m = new Map<string, Entry>();
  const lines = toLines(text);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    const kv = kvLine(l);
    if (!kv || !/^\s/.test(l)) return fail(`not an indented "Key: value" line: ${show(l.trim())}`, i + 1);
    if (m.has(kv.key)) return fail(`${show(kv.key)} twice`, i + 1);
    m.set(kv.key, { value: kv.value, line: i + 1 });
  }
  if (m.size === 0) return fail('empty output');
  return ok(m);
}

function bool(e: Entry, key: string): Result<boolean> {
  return e.value === 'true' ? ok(true) : e.value === 'false' ? ok(false) : fail(`${key} is not true/false: ${show(e.value)}`, e.line);
}

/** Overrides and unknown keys, shared by both outputs. */
function rest(m: Map<string, Entry>, known: ReadonlySet<string>): Result<{ overrides: Record<string, boolean>; extra: Record<string, string> }> {
  const overrides: Record<string, boolean> = {};
  const extra: Record<string, string> = {};
  for (const [k, e] of m) {
    if (known.has(k)) continue;
    if (k.startsWith('Override ')) {
      const b = bool(e, k);
      if (!b.ok) return b;
      setOwn(overrides, k, b.value);
    } else {
      setOwn(extra, k, e.value);
    }
  }
  return ok({ overrides, extra });
}

const MAC_CHANGE_KEYS = ['Allow MAC Address Change', 'Allow MAC Address Changes'];
const SECURITY_KNOWN = new Set(['Allow Promiscuous', 'Allow Forged Transmits', ...MAC_CHANGE_KEYS]);

export function parseSecurityPolicy(text: unknown): Result<SecurityPolicy> {
  const m = readBlock(text);
  if (!m.ok) return m;
  const get = (k: string): Result<boolean> => {
    const e = m.value.get(k);
    return e ? bool(e, k) : fail(`no ${show(k)} line`);
  };
  const promisc = get('Allow Promiscuous');
  if (!promisc.ok) return promisc;
  const forged = get('Allow Forged Transmits');
  if (!forged.ok) return forged;
  const macKeys = MAC_CHANGE_KEYS.filter((k) => m.value.has(k));
  if (macKeys.length === 0) return fail('no "Allow MAC Address Change" line');
  if (macKeys.length > 1) return fail('both "Allow MAC Address Change" and "... Changes" lines', m.value.get(macKeys[1]!)!.line);
  const mac = get(macKeys[0]!);
  if (!mac.ok) return mac;
  const r = rest(m.value, SECURITY_KNOWN);
  if (!r.ok) return r;
  return ok({ allowPromiscuous: promisc.value, allowForgedTransmits: forged.value, allowMacChanges: mac.value, ...r.value });
}

const FAILOVER_KNOWN = new Set([
  'Load Balancing', 'Network Failure Detection', 'Notify Switches', 'Failback', 'Active Adapters', 'Standby Adapters', 'Unused Adapters',
]);

export function parseFailoverPolicy(text: unknown): Result<FailoverPolicy> {
  const m = readBlock(text);
  if (!m.ok) return m;
  const lists: Record<string, string[]> = {};
  const owner = new Map<string, string>();
  for (const k of ['Active Adapters', 'Standby Adapters', 'Unused Adapters']) {
    const e = m.value.get(k);
    if (!e) {
      if (k === 'Unused Adapters') {
        lists[k] = [];
        continue;
      }
      return fail(`no ${show(k)} line`);
    }
    const l = e.value === '' ? [] : e.value.split(',').map((s) => s.trim());
    const bad = l.find((u) => !isVmnic(u));
    if (bad !== undefined) return fail(`${k}: not a vmnic name: ${show(bad)}`, e.line);
    // The API allows a NIC in one list only (HostNicOrderPolicy): twice means a misread.
    for (const u of l) {
      const prev = owner.get(u);
      if (prev !== undefined) return fail(`${u} is in both ${prev} and ${k}`, e.line);
      owner.set(u, k);
    }
    lists[k] = l;
  }
  const optBool = (k: string): Result<boolean | null> => {
    const e = m.value.get(k);
    return e ? bool(e, k) : ok(null);
  };
  const notify = optBool('Notify Switches');
  if (!notify.ok) return notify;
  const failback = optBool('Failback');
  if (!failback.ok) return failback;
  const lb = m.value.get('Load Balancing');
  const fd = m.value.get('Network Failure Detection');
  if (lb && lb.value === '') return fail('empty Load Balancing', lb.line);
  if (fd && fd.value === '') return fail('empty Network Failure Detection', fd.line);
  const r = rest(m.value, FAILOVER_KNOWN);
  if (!r.ok) return r;
  return ok({
    activeUplinks: lists['Active Adapters']!,
    standbyUplinks: lists['Standby Adapters']!,
    unusedUplinks: lists['Unused Adapters']!,
    loadBalancing: lb ? lb.value : null,
    failureDetection: fd ? fd.value : null,
    notifySwitches: notify.value,
    failback: failback.value,
    ...r.value,
  });
}
