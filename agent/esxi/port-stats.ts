// `esxcli network port stats get -p PORTID`: the counters of one vSwitch port (a vNIC's port from
// `esxcli network vm port list`, "Port ID", or an uplink's "Uplink Port ID"). Per-port broadcast
// counters are what tell WHICH VM port a storm enters by, where `nic stats get` only sees uplinks.
//
//   Packet statistics for port 33554578
//      Packets received: 1284127
//      Packets sent: 985532
//      ...
//
// NO REAL CAPTURE of this output was found (test/fixtures/esxcli/SOURCES.txt): the header and the
// labels below follow `nic stats get` (nic-stats.ts) and the vSphere API's per-port statistics
// (DistributedVirtualSwitchPortStatistics: broadcast/multicast/unicast in and out, dropped). The
// parser is therefore strict about syntax but lenient about labels: unknown counters go to
// `extra`, and only the six counters the detector needs are required. Check it against a real
// host before relying on it; a mismatch shows up as a parse error naming the line, never as a
// wrong number. Counters are cumulative: callers diff them (nic-stats.ts, KB 341594).
import { collectCounters, readCounterLines } from './counter-lines.js';
import { fail, ok, show, toLines, type Result } from './result.js';

export const PORT_STATS_LABELS = {
  rxPackets: 'Packets received',
  txPackets: 'Packets sent',
  rxBytes: 'Bytes received',
  txBytes: 'Bytes sent',
  rxBroadcast: 'Broadcast packets received',
  txBroadcast: 'Broadcast packets sent',
  rxMulticast: 'Multicast packets received',
  txMulticast: 'Multicast packets sent',
  rxUnicast: 'Unicast packets received',
  txUnicast: 'Unicast packets sent',
  rxDropped: 'Receive packets dropped',
  txDropped: 'Transmit packets dropped',
} as const;

export type PortCounterKey = keyof typeof PORT_STATS_LABELS;
export const PORT_COUNTER_KEYS = Object.keys(PORT_STATS_LABELS) as PortCounterKey[];

/** Without these a sample is no use to the detector (same set as nic stats). */
export const REQUIRED_PORT_COUNTERS: readonly PortCounterKey[] = ['rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'rxBroadcast', 'rxMulticast'];

export type PortCounters = Record<PortCounterKey, number>;

export interface PortStats extends PortCounters {
  /** The port the output names (compare with the one asked for: a mismatch is a wrong answer). */
  portId: number;
  /** Counters above 2^53 - 1 (rounded doubles, see result.ts parseCounter). */
  inexact: PortCounterKey[];
  /** Counters the output did not contain: NaN above. */
  missing: PortCounterKey[];
  /** Numeric counters under labels this parser does not know. */
  extra: Record<string, number>;
}

const BY_LABEL = new Map<string, PortCounterKey>(PORT_COUNTER_KEYS.map((k) => [PORT_STATS_LABELS[k], k]));

export function parsePortStats(text: unknown): Result<PortStats> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  const h = lines.findIndex((l) => l.trim() !== '');
  if (h < 0) return fail('empty output');
  const head = /^Packet statistics for port ([0-9]{1,10})$/.exec(lines[h]!.trim());
  if (!head) return fail(`expected "Packet statistics for port N", got ${show(lines[h]!.trim())}`, h + 1);
  const portId = Number(head[1]);
  if (portId > 0xffffffff) return fail(`port ID out of range: ${head[1]}`, h + 1);

  const body = readCounterLines(lines, h + 1, BY_LABEL, true);
  if (!body.ok) return body;
  const c = collectCounters(PORT_COUNTER_KEYS, REQUIRED_PORT_COUNTERS, body.value.values);
  if (!c.ok) return c;
  return ok({ portId, ...c.value.counters, inexact: c.value.inexact, missing: c.value.missing, extra: body.value.extra });
}
