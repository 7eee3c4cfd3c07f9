// Two faster or alternative counter sources for one physical NIC, mapped onto the same NicStats
// shape as `esxcli network nic stats get` (nic-stats.ts), so callers need not care which ran.
//
// 1. `vsish -pe get /net/pNics/vmnicN/stats` (the VSI node esxcli reads; command as used by Intel's
//    MIT-licensed mfd-network-adapter, ESXiStats.get_pf_stats). -p asks for "Python mode" output: a
//    deprecation banner (stderr, often merged), then a JSON-like object that is NOT JSON: a trailing
//    comma before "}", and the "hw" string holds raw newlines:
//      main():Python mode is deprecated and will be removed in future releases. ...
//      {
//         "dumsw" : "",
//         "rxpkt" : 46037587,
//         ...
//         "rxbrdcast" : 42,
//         ...
//         "hw" : "Packets assigned to an invalid queue: 0
//      <more lines>
//      ",
//      }
//    JSON.parse would also round counters above 2^53 silently; this reader keeps their digits.
//
// 2. `nsxdp-cli ens uplink stats get -n vmnicN` (uplinks in ENS / Enhanced Data Path mode, where the
//    non-ENS counters may not reflect the fast path; same Intel source, ESXiStats.get_ens_stats):
//      Uplink Stats:
//          rxPkts:             5076600
//          rxBroadcastPkts:    176
//          ...
//      Uplink Private Stats:       <- driver-specific registers and queues, not parsed
import { kvLine } from './kv.js';
import { buildNicStats, type NicCounterKey, type NicStats } from './nic-stats.js';
import { fail, ok, parseCounter, setOwn, show, toLines, type Result } from './result.js';

const VSISH_KEYS = new Map<string, NicCounterKey>(Object.entries({
  rxpkt: 'rxPackets',
  txpkt: 'txPackets',
  rxbytes: 'rxBytes',
  txbytes: 'txBytes',
  rxerr: 'rxErrors',
  txerr: 'txErrors',
  rxdrp: 'rxDropped',
  txdrp: 'txDropped',
  rxmltcast: 'rxMulticast',
  rxbrdcast: 'rxBroadcast',
  txmltcast: 'txMulticast',
  txbrdcast: 'txBroadcast',
  rxlgterr: 'rxLengthErrors',
  rxoverr: 'rxOverErrors',
  rxcrcerr: 'rxCrcErrors',
  rxfrmerr: 'rxFrameErrors',
  rxfifoerr: 'rxFifoErrors',
  rxmisserr: 'rxMissedErrors',
  txaborterr: 'txAbortedErrors',
  txcarerr: 'txCarrierErrors',
  txfifoerr: 'txFifoErrors',
  txhearterr: 'txHeartbeatErrors',
  txwinerr: 'txWindowErrors',
} satisfies Record<string, NicCounterKey>));

export interface VsishPnicStats extends NicStats {
  /** Lines before the "{" (the -p deprecation banner when stderr is merged). */
  banner: string[];
  /** String members ("hw": driver text with per-queue counters, "dumsw"), raw. */
  strings: Record<string, string>;
}

/** Line (1-based) of a character offset. */
function lineAt(s: string, offset: number): number {
  let n = 1;
  for (let i = 0; i < offset && i < s.length; i++) if (s.charCodeAt(i) === 10) n++;
  return n;
}

export function parseVsishPnicStats(text: unknown): Result<VsishPnicStats> {
  if (typeof text !== 'string') return fail('output is not text');
  const s = toLines(text).join('\n');
  const lines = s.split('\n');
  const open = lines.findIndex((l) => l.trim() === '{');
  if (open < 0) return fail('no line with a lone "{" (expected vsish -p output)');
  const banner = lines.slice(0, open).map((l) => l.trim()).filter((l) => l !== '');
  let i = lines.slice(0, open + 1).join('\n').length; // just past the "{"

  const ws = (): void => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const values = new Map<NicCounterKey, { value: number; exact: boolean }>();
  const extra: Record<string, number> = {};
  const strings: Record<string, string> = {};
  const seen = new Set<string>();
  for (;;) {
    ws();
    if (i >= s.length) return fail('no closing "}"', lineAt(s, i));
    if (s[i] === '}') break;
    const keyAt = i;
    const km = /^"([A-Za-z0-9_]{1,64})"\s*:\s*/.exec(s.slice(i, i + 200));
    if (!km) return fail(`expected "key" : value, got ${show(s.slice(i, i + 30))}`, lineAt(s, i));
    const key = km[1]!;
    if (seen.has(key)) return fail(`${show(key)} twice`, lineAt(s, keyAt));
    seen.add(key);
    i += km[0].length;
    if (s[i] === '"') {
      // String: runs to the next unescaped quote, newlines included ("hw").
      let j = i + 1;
      let str = '';
      while (j < s.length && s[j] !== '"') {
        if (s[j] === '\\' && j + 1 < s.length) j++;
        str += s[j];
        j++;
      }
      if (j >= s.length) return fail(`unterminated string for ${show(key)}`, lineAt(s, i));
      setOwn(strings, key, str);
      i = j + 1;
    } else {
      const nm = /^[0-9]+(?=[\s,}])/.exec(s.slice(i, i + 32));
      const c = nm ? parseCounter(nm[0]) : null;
      if (!nm || !c) return fail(`${key} is not an unsigned 64-bit counter: ${show(s.slice(i, i + 30).split('\n')[0]!)}`, lineAt(s, i));
      i += nm[0].length;
      const mapped = VSISH_KEYS.get(key);
      if (mapped) values.set(mapped, c);
      else setOwn(extra, key, c.value);
    }
    ws();
    if (s[i] === ',') i++;
    else if (s[i] !== '}') return fail(`expected "," or "}" after ${show(key)}`, lineAt(s, i));
  }
  const after = s.slice(i + 1);
  if (after.trim() !== '') return fail('text after the closing "}"', lineAt(s, i + 1 + after.length - after.trimStart().length));
  const st = buildNicStats(null, values, extra);
  if (!st.ok) return st;
  return ok({ ...st.value, banner, strings });
}

const ENS_KEYS = new Map<string, NicCounterKey>(Object.entries({
  rxPkts: 'rxPackets',
  txPkts: 'txPackets',
  rxBytes: 'rxBytes',
  txBytes: 'txBytes',
  rxErrors: 'rxErrors',
  txErrors: 'txErrors',
  rxDrops: 'rxDropped',
  txDrops: 'txDropped',
  rxMulticastPkts: 'rxMulticast',
  rxBroadcastPkts: 'rxBroadcast',
  txMulticastPkts: 'txMulticast',
  txBroadcastPkts: 'txBroadcast',
  rxLengthErrors: 'rxLengthErrors',
  rxOverflowErrors: 'rxOverErrors',
  rxCRCErrors: 'rxCrcErrors',
  rxFrameAlignErrors: 'rxFrameErrors',
  rxFifoErrors: 'rxFifoErrors',
  rxMissErrors: 'rxMissedErrors',
  txAbortedErrors: 'txAbortedErrors',
  txCarrierErrors: 'txCarrierErrors',
  txFifoErrors: 'txFifoErrors',
  txHeartbeatErrors: 'txHeartbeatErrors',
  txWindowErrors: 'txWindowErrors',
} satisfies Record<string, NicCounterKey>));

/** `nsxdp-cli ens uplink stats get`: the "Uplink Stats:" section; later sections are ignored. */
export function parseEnsUplinkStats(text: unknown): Result<NicStats> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  const h = lines.findIndex((l) => l.trim() !== '');
  if (h < 0) return fail('empty output');
  if (lines[h]!.trim() !== 'Uplink Stats:') return fail(`expected "Uplink Stats:", got ${show(lines[h]!.trim())}`, h + 1);
  const values = new Map<NicCounterKey, { value: number; exact: boolean }>();
  const extra: Record<string, number> = {};
  const seen = new Set<string>();
  for (let i = h + 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    if (!/^\s/.test(l)) break; // next section ("Uplink Private Stats:"): driver-specific, not ours
    const kv = kvLine(l);
    if (!kv) return fail(`not a "key: value" line: ${show(l.trim())}`, i + 1);
    if (seen.has(kv.key)) return fail(`${show(kv.key)} twice`, i + 1);
    seen.add(kv.key);
    const c = parseCounter(kv.value);
    if (!c) return fail(`${kv.key} is not an unsigned 64-bit counter: ${show(kv.value)}`, i + 1);
    const mapped = ENS_KEYS.get(kv.key);
    if (mapped) values.set(mapped, c);
    else setOwn(extra, kv.key, c.value);
  }
  return buildNicStats(null, values, extra);
}
