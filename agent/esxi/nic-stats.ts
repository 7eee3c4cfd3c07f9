// `esxcli network nic stats get -n vmnicN`: the counters of one physical NIC, as in Broadcom KB
// 341594 ("Troubleshooting NIC errors and other network traffic faults in ESXi"):
//
//   NIC statistics for vmnic2
//      Packets received: 701280499176
//      Packets sent: 687061948450
//      Bytes received: 664124780523852
//      ...
//      Broadcast packets received: 0
//      ...
//
// Counters only clear on reboot or driver reload (same KB), so callers always diff, never trust an
// absolute value. Drivers break invariants: the Intel capture shows "Packets received: 0" next to
// "Bytes received: 5271156", and the KB host shows broadcast 0 on a NIC that received 7e11 frames.
// So the parser checks syntax only, and broadcastUsable() below judges the broadcast counter.
import { collectCounters, readCounterLines } from './counter-lines.js';
import { isVmnic } from './names.js';
import { fail, ok, show, toLines, type Result } from './result.js';

/** The 23 counters esxcli prints, in its order, with the labels it prints them with. */
export const NIC_STATS_LABELS = {
  rxPackets: 'Packets received',
  txPackets: 'Packets sent',
  rxBytes: 'Bytes received',
  txBytes: 'Bytes sent',
  rxDropped: 'Receive packets dropped',
  txDropped: 'Transmit packets dropped',
  rxMulticast: 'Multicast packets received',
  rxBroadcast: 'Broadcast packets received',
  txMulticast: 'Multicast packets sent',
  txBroadcast: 'Broadcast packets sent',
  rxErrors: 'Total receive errors',
  rxLengthErrors: 'Receive length errors',
  rxOverErrors: 'Receive over errors',
  rxCrcErrors: 'Receive CRC errors',
  rxFrameErrors: 'Receive frame errors',
  rxFifoErrors: 'Receive FIFO errors',
  rxMissedErrors: 'Receive missed errors',
  txErrors: 'Total transmit errors',
  txAbortedErrors: 'Transmit aborted errors',
  txCarrierErrors: 'Transmit carrier errors',
  txFifoErrors: 'Transmit FIFO errors',
  txHeartbeatErrors: 'Transmit heartbeat errors',
  txWindowErrors: 'Transmit window errors',
} as const;

export type NicCounterKey = keyof typeof NIC_STATS_LABELS;
export const NIC_COUNTER_KEYS = Object.keys(NIC_STATS_LABELS) as NicCounterKey[];

/** Without these the output is no use to the detector: a parse fails rather than guess. */
export const REQUIRED_COUNTERS: readonly NicCounterKey[] = ['rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'rxMulticast', 'rxBroadcast'];

export type NicCounters = Record<NicCounterKey, number>;

/** One NIC's counters from any ESXi source (esxcli, vsish, ENS); vsish.ts fills the same shape. */
export interface NicStats extends NicCounters {
  /** NIC named by the output itself, or null when the source does not print it (vsish). */
  nic: string | null;
  /** Counters above 2^53 - 1: rounded doubles (see parseCounter). Rates over them stay usable. */
  inexact: NicCounterKey[];
  /** Counters the output did not contain: NaN in the fields above. */
  missing: NicCounterKey[];
  /** Numeric counters under labels this parser does not know (newer ESXi or another source). */
  extra: Record<string, number>;
}

const BY_LABEL = new Map<string, NicCounterKey>(NIC_COUNTER_KEYS.map((k) => [NIC_STATS_LABELS[k], k]));

/** Fill a NicStats from (source key -> counter key) pairs; shared with vsish.ts. */
export function buildNicStats(
  nic: string | null,
  values: ReadonlyMap<NicCounterKey, { value: number; exact: boolean }>,
  extra: Record<string, number>,
): Result<NicStats> {
  const c = collectCounters(NIC_COUNTER_KEYS, REQUIRED_COUNTERS, values);
  if (!c.ok) return c;
  return ok({ nic, ...c.value.counters, inexact: c.value.inexact, missing: c.value.missing, extra });
}

export function parseNicStats(text: unknown): Result<NicStats> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  const h = lines.findIndex((l) => l.trim() !== '');
  if (h < 0) return fail('empty output');
  const head = /^NIC statistics for (\S+)$/.exec(lines[h]!.trim());
  if (!head) return fail(`expected "NIC statistics for vmnicN", got ${show(lines[h]!.trim())}`, h + 1);
  const nic = head[1]!;
  if (!isVmnic(nic)) return fail(`not a vmnic name: ${show(nic)}`, h + 1);

  const body = readCounterLines(lines, h + 1, BY_LABEL);
  if (!body.ok) return body;
  return buildNicStats(nic, body.value.values, body.value.extra);
}

// --- does this NIC's driver count broadcast at all? --------------------------------------------

/** What broadcastUsable needs from a sample (any NicStats will do). */
export type BroadcastSample = Pick<NicCounters, 'rxPackets' | 'rxBytes' | 'rxBroadcast' | 'rxMulticast' | 'txBroadcast'>;

export interface BroadcastCheck {
  /**
   * reported: rx broadcast moved at least once, the counter works;
   * absent:   it stayed 0 (or is missing) while at least minFrames frames were received;
   * unknown:  too little traffic to tell.
   */
  status: 'reported' | 'absent' | 'unknown';
  /** Rate on rxBroadcast only when true. */
  usable: boolean;
  /** What to rate on instead when !usable (first one that moved): multicast, then packets, then bytes. */
  fallback: 'none' | 'multicast' | 'packets' | 'bytes';
  /** One sentence for the log and the journal. */
  reason: string;
}

/** Largest Ethernet frame counted here (jumbo 9216): bytes / this is a floor on frames. */
const MAX_FRAME_BYTES = 9216;
/** Frames a NIC must have received with rx broadcast still 0 before its counter is called absent. */
export const BROADCAST_MIN_FRAMES = 10_000;

const finite = (x: number): number => (Number.isFinite(x) && x > 0 ? x : 0);

/**
 * broadcastUsable()'s status for one sample, without building its sentence (no allocation): the
 * per-sample path asks this, and builds the judgement again only when the status changes.
 */
export function broadcastStatus(s: BroadcastSample): BroadcastCheck['status'] {
  if (finite(s.rxBroadcast) > 0) return 'reported';
  if (!Number.isFinite(s.rxBroadcast)) return 'absent';
  const frames = Math.max(finite(s.rxPackets), finite(s.rxMulticast), Math.floor(finite(s.rxBytes) / MAX_FRAME_BYTES));
  return frames >= BROADCAST_MIN_FRAMES ? 'absent' : 'unknown';
}

/**
 * Decide whether a NIC's rx broadcast counter can be trusted, from one or more samples of its
 * counters (oldest first). ESXi counters are cumulative since the driver loaded, so even one
 * sample is evidence: any IPv4 segment carries ARP broadcasts, so a NIC that received thousands of
 * frames and counted 0 broadcasts has a driver that does not count them (KB 341594's vmnic2:
 * 7e11 frames, 0 broadcast; the Intel vmnic9: 60588 multicast, 0 broadcast, yet 98241 broadcast
 * SENT). Frames received are bounded below by the largest of packets, multicast and bytes/9216,
 * because packets can read 0 while bytes move (vmnic9).
 *
 * Erring towards "absent" is the safe side: a NIC with a working counter that truly saw no
 * broadcast loses nothing by being rated on multicast and packet rates, while trusting a dead
 * counter would hide a broadcast storm completely.
 */
export function broadcastUsable(samples: readonly BroadcastSample[], opts: { minFrames?: number } = {}): BroadcastCheck {
  const minFrames = opts.minFrames ?? BROADCAST_MIN_FRAMES;
  let frames = 0;
  let bcast = 0;
  let mcast = 0;
  let pkts = 0;
  let bytes = 0;
  let txBcast = 0;
  let counterMissing = samples.length > 0;
  for (const s of samples) {
    if (Number.isFinite(s.rxBroadcast)) counterMissing = false;
    bcast = Math.max(bcast, finite(s.rxBroadcast));
    mcast = Math.max(mcast, finite(s.rxMulticast));
    pkts = Math.max(pkts, finite(s.rxPackets));
    bytes = Math.max(bytes, finite(s.rxBytes));
    txBcast = Math.max(txBcast, finite(s.txBroadcast));
    frames = Math.max(frames, pkts, mcast, bcast, Math.floor(bytes / MAX_FRAME_BYTES));
  }
  if (bcast > 0) {
    return { status: 'reported', usable: true, fallback: 'none', reason: `rx broadcast counter moves (${bcast})` };
  }
  const fallback = mcast > 0 ? 'multicast' : pkts > 0 ? 'packets' : bytes > 0 ? 'bytes' : 'packets';
  const instead = fallback === 'bytes' ? 'byte rate (packet counter is 0 too)' : `${fallback} rate`;
  if (samples.length === 0) {
    return { status: 'unknown', usable: false, fallback, reason: `no sample yet; rating on ${instead} until the broadcast counter moves` };
  }
  if (counterMissing) {
    return { status: 'absent', usable: false, fallback, reason: `this source has no rx broadcast counter; rating on ${instead}` };
  }
  if (frames >= minFrames) {
    const tx = txBcast > 0 ? ` (it does count ${txBcast} broadcast sent)` : '';
    return {
      status: 'absent',
      usable: false,
      fallback,
      reason: `driver reports no rx broadcast: 0 while >= ${frames} frames were received${tx}; rating on ${instead}`,
    };
  }
  return {
    status: 'unknown',
    usable: false,
    fallback,
    reason: `rx broadcast still 0 after only ${frames} frames (< ${minFrames}); rating on ${instead} until it moves`,
  };
}
