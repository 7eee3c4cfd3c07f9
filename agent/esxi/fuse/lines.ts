// Pure: the fuse's output lines (protocol in fuse.py's header) as typed messages. A sample line is
// parsed into a caller-owned Float64Array (no allocation per sample): VALUES_PER_ITEM values per
// watched item, NaN where the fuse could not read that item.

/**
 * Per watched item, in this order: rx packets, tx packets, rx broadcast, rx multicast, tx
 * broadcast, tx multicast (a pNIC's rxpkt txpkt rxbrdcast rxmltcast txbrdcast txmltcast; a port's
 * pktsRx pktsTx pktsRxBroadcast pktsRxMulticast pktsTxBroadcast pktsTxMulticast).
 */
export const VALUES_PER_ITEM = 6;

export interface FuseCut {
  id: string;
  instance: string;
  version: number;
  port: string;
  portId: string;
  hot: string[];
  /** The host's monotonic clock, µs (same clock as the samples). */
  tUs: number;
  wallMs: number;
  dryRun: boolean;
  /** cutting: its call has started (a final event follows). */
  outcome: 'cutting' | 'cut' | 'failed' | 'dry-run' | 'refused';
  why?: string;
  argv?: string[];
  rc?: number;
  /** The cut call's time on the host, from before its spawn to the sample that saw it end (v6; v5: from after the spawn). */
  ms?: number;
  /** The part of `ms` the fuse spent starting the call (v6). */
  spawnMs?: number;
}

export type FuseMessage =
  | { kind: 'hello'; version: number; pid: number; instance: string }
  | { kind: 'not-armed'; why: string }
  | { kind: 'armed'; instance: string; version: number; watch: number; cutList: number; dryRun: boolean; budget: number }
  | { kind: 'sample'; tUs: number }
  | { kind: 'cut'; cut: FuseCut; replayed: boolean }
  | { kind: 'exit'; why: string; cuts: number; droppedSamples: number }
  | { kind: 'bad'; why: string };

const OUTCOMES = new Set(['cutting', 'cut', 'failed', 'dry-run', 'refused']);

function obj(s: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(s);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

function toCut(o: Record<string, unknown>): FuseCut | null {
  const outcome = str(o.outcome);
  if (!str(o.id) || !OUTCOMES.has(outcome) || !/^\d+$/.test(str(o.portId))) return null;
  const cut: FuseCut = {
    id: str(o.id),
    instance: str(o.instance),
    version: num(o.version),
    port: str(o.port),
    portId: str(o.portId),
    hot: Array.isArray(o.hot) ? o.hot.map(String) : [],
    tUs: num(o.tUs),
    wallMs: num(o.wallMs),
    dryRun: o.dryRun === true,
    outcome: outcome as FuseCut['outcome'],
  };
  if (typeof o.why === 'string') cut.why = o.why;
  if (Array.isArray(o.argv)) cut.argv = o.argv.map(String);
  if (typeof o.rc === 'number') cut.rc = o.rc;
  if (typeof o.ms === 'number') cut.ms = o.ms;
  if (typeof o.spawnMs === 'number') cut.spawnMs = o.spawnMs;
  return cut;
}

/**
 * One line. For `S` lines the values go into `values` (length = VALUES_PER_ITEM x watched items); a line with
 * the wrong count or a value that is neither digits nor '-' is `bad` and `values` is untouched
 * beyond what it held.
 */
export function parseFuseLine(line: string, values: Float64Array): FuseMessage {
  const tag = line.charCodeAt(0);
  if (line.charCodeAt(1) !== 32) return { kind: 'bad', why: 'no tag' };
  if (tag === 83 /* S */) {
    let i = 2;
    let k = -1;
    let tUs = NaN;
    while (i < line.length) {
      let j = line.indexOf(' ', i);
      if (j < 0) j = line.length;
      let v: number;
      if (j - i === 1 && line.charCodeAt(i) === 45) v = NaN;
      else {
        v = 0;
        for (let p = i; p < j; p++) {
          const c = line.charCodeAt(p) - 48;
          if (c < 0 || c > 9) return { kind: 'bad', why: 'sample value not a counter' };
          v = v * 10 + c;
        }
        if (j === i) return { kind: 'bad', why: 'empty sample value' };
      }
      if (k < 0) tUs = v;
      else if (k < values.length) values[k] = v;
      k++;
      i = j + 1;
    }
    if (k !== values.length) return { kind: 'bad', why: `sample has ${k} values, expected ${values.length}` };
    return { kind: 'sample', tUs };
  }
  const rest = line.slice(2);
  if (tag === 72 /* H */) {
    const [v, pid, instance] = rest.split(' ');
    if (!/^\d+$/.test(v ?? '') || !/^\d+$/.test(pid ?? '') || !instance) return { kind: 'bad', why: 'bad hello' };
    return { kind: 'hello', version: Number(v), pid: Number(pid), instance };
  }
  const o = obj(rest);
  if (!o) return { kind: 'bad', why: 'not JSON' };
  switch (tag) {
    case 78 /* N */:
      return { kind: 'not-armed', why: str(o.why) || 'unknown' };
    case 65 /* A */:
      return { kind: 'armed', instance: str(o.instance), version: num(o.version), watch: num(o.watch), cutList: num(o.cutList), dryRun: o.dryRun === true, budget: num(o.budget) };
    case 67 /* C */:
    case 82 /* R */: {
      const cut = toCut(o);
      return cut ? { kind: 'cut', cut, replayed: tag === 82 } : { kind: 'bad', why: 'bad cut event' };
    }
    case 88 /* X */:
      return { kind: 'exit', why: str(o.why), cuts: num(o.cuts), droppedSamples: num(o.droppedSamples) };
    default:
      return { kind: 'bad', why: `unknown tag ${line[0]}` };
  }
}
