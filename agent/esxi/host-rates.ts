// The counters of one ESXi host's watched ports turned into rates, one block at a time: each
// port keeps its last two counter sets, and every interval is measured on the block's arrival.
import type { Counters, EsxiHostPolicy, PortPolicy, PortRates } from '../types.js';
import { emptyCounters } from '../types.js';
import { blankRates, computeRates } from '../sample/rates.js';
import { judgeBroadcast, sectionCounters, toCounters, vmIdOf, type BroadcastJudgement, type EsxPort, type RawCounters } from './ports.js';
import { VALUES_PER_ITEM } from './fuse/lines.js';
import type { Result } from './result.js';
import { itemKey, type Block } from './stream.js';

interface Track {
  port: EsxPort;
  prev: Counters;
  cur: Counters;
  prevNs: number;
  rates: PortRates;
  bcast: BroadcastJudgement | undefined;
  lastError: string | null;
  /** tx broadcast + multicast of the previous and this block (NaN: not counted or not trusted). */
  txFloodPrev: number;
  txFloodCur: number;
}

type Log = { info(o: object, m: string): void; warn(o: object, m: string): void };

export interface HostRates {
  /** Watch these ports (same port, same counter source: its counters are kept). */
  set(ports: EsxPort[]): void;
  /** Are these exactly the ports watched now (names and counter sources)? */
  same(ports: readonly EsxPort[]): boolean;
  readonly ports: () => readonly EsxPort[];
  readonly policies: () => ReadonlyMap<string, PortPolicy>;
  /** One PortRates per port, reused: the same array until set() is called. */
  readonly rates: () => readonly PortRates[];
  /** Counters of one block into rates. */
  block(b: Block, tNs: number): void;
  /**
   * One fuse sample into rates: `items[i]` (`nic:vmnic0`, `port:33554440`) owns values
   * [i*VALUES_PER_ITEM, ...). No allocation per sample.
   */
  fuseSample(items: readonly string[], values: Float64Array, tNs: number): void;
  /** Never diff across a gap (the stream stopped, or an action landed). */
  forgetBaselines(): void;
  /** The last valid rates of each port (for status; never for judging). */
  readonly shown: ReadonlyMap<string, { rxPps: number; txPps: number; floodPps: number }>;
  /** A block arrived at tNs (also one that is then dropped). */
  arrived(tNs: number): void;
  /** Blocks per second over the last 5 s. */
  samplesPerSec(nowMs: number): number;
  /** Per port, for status: what its broadcast counter was judged, the last read error. */
  portStatus(): Array<{ port: EsxPort; broadcast: string; lastError: string | null }>;
}

export function hostRates(host: EsxiHostPolicy, log: Log): HostRates {
  let tracks: Track[] = [];
  let byItem = new Map<string, Track>();
  let portMap = new Map<string, PortPolicy>();
  let rateList: PortRates[] = [];
  const shown = new Map<string, { rxPps: number; txPps: number; floodPps: number }>();
  // Arrival times (ms) of the last blocks: samples per second over the last few seconds.
  const arrivals: number[] = [];

  function set(ports: EsxPort[]): void {
    const old = new Map(tracks.map((t) => [t.port.name, t]));
    tracks = ports.map((p) => {
      const o = old.get(p.name);
      // Same port, same counter source: keep its counters (a new vSwitch port ID starts over).
      if (o && o.port.id === p.id) return { ...o, port: p };
      return { port: p, prev: emptyCounters(), cur: emptyCounters(), prevNs: 0, rates: blankRates(p.name, p.bridge, 0), bcast: undefined, lastError: null, txFloodPrev: NaN, txFloodCur: NaN };
    });
    // A vNIC's port, not a vmnic: the vSwitch forwards uplink to VM and VM to anything, never uplink to uplink.
    // And whose: two members of one VM are that guest forwarding between its vNICs (a loop through it).
    for (const t of tracks) {
      t.rates.esxiVm = t.port.kind === 'port';
      t.rates.esxiVmId = vmIdOf(host.name, t.port);
      t.rates.esxiVmName = t.port.vm ?? '';
    }
    // A vSwitch with a watched VM port: only there does the detector weigh what VM ports send.
    const vmSwitches = new Set(tracks.filter((t) => t.rates.esxiVm).map((t) => t.port.bridge));
    for (const t of tracks) t.rates.vmSwitch = vmSwitches.has(t.port.bridge);
    byItem = new Map(tracks.map((t) => [itemKey(t.port.kind, t.port.id), t]));
    portMap = new Map(tracks.map((t) => [t.port.name, t.port.policy]));
    rateList = tracks.map((t) => t.rates);
  }

  /** One port's counters (or the read error): broadcast judged, rates. */
  function section(t: Track, raw: Result<RawCounters>, tNs: number): void {
    t.txFloodCur = NaN;
    if (!raw.ok) {
      t.cur.ok = false;
      if (t.lastError !== raw.error) log.warn({ component: 'esxi', host: host.name, port: t.port.name, err: raw.error }, 'counter read failed');
      t.lastError = raw.error;
    } else {
      const j = judgeBroadcast(t.bcast, raw.value);
      if (t.bcast?.reason !== j.reason && (!j.usable || !t.bcast?.usable)) log.info({ component: 'esxi', host: host.name, port: t.port.name, broadcast: j.reason }, 'broadcast counter judged');
      t.bcast = j;
      toCounters(raw.value, j, t.cur);
      // A driver that counts no rx broadcast counts no tx broadcast either (KB 341594's vmnic2).
      if (j.usable) t.txFloodCur = raw.value.txBroadcast + (Number.isFinite(raw.value.txMulticast) ? raw.value.txMulticast : 0);
      t.lastError = null;
    }
    const dtNs = t.prevNs === 0 ? NaN : tNs - t.prevNs;
    computeRates(t.prev, t.cur, dtNs, t.port.name, t.port.bridge, t.rates);
    const dTxFlood = t.txFloodCur - t.txFloodPrev;
    t.rates.txFloodPps = t.rates.valid && dTxFlood >= 0 ? (dTxFlood * 1e9) / dtNs : NaN;
    t.txFloodPrev = t.txFloodCur;
    if (t.rates.valid) shown.set(t.port.name, { rxPps: t.rates.rxPps, txPps: t.rates.txPps, floodPps: t.rates.floodPps });
    const swap = t.prev;
    t.prev = t.cur;
    t.cur = swap;
    t.prevNs = tNs;
  }

  return {
    set,
    same: (ports) => ports.length === tracks.length && ports.every((p, i) => p.name === tracks[i]!.port.name && p.id === tracks[i]!.port.id),
    ports: () => tracks.map((t) => t.port),
    policies: () => portMap,
    rates: () => rateList,
    block(b, tNs) {
      for (const s of b.sections) {
        const t = byItem.get(itemKey(s.kind, s.id));
        if (t) section(t, sectionCounters(s, host.counters), tNs);
      }
    },
    fuseSample(items, values, tNs) {
      for (let i = 0; i < items.length; i++) {
        const t = byItem.get(items[i]!);
        if (t) section(t, fuseRaw(values, i * VALUES_PER_ITEM), tNs);
      }
    },
    forgetBaselines() {
      for (const t of tracks) t.prevNs = 0;
    },
    shown,
    arrived(tNs) {
      arrivals.push(tNs / 1e6);
      if (arrivals.length > 50) arrivals.shift();
    },
    samplesPerSec(nowMs) {
      const recent = arrivals.filter((t) => nowMs - t <= 5000);
      return recent.length >= 2 ? ((recent.length - 1) * 1000) / (recent.at(-1)! - recent[0]!) : 0;
    },
    portStatus: () => tracks.map((t) => ({ port: t.port, broadcast: t.bcast ? t.bcast.reason : 'no sample yet', lastError: t.lastError })),
  };
}

const FUSE_RAW: RawCounters = { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: 0, rxMulticast: 0, txBroadcast: 0, txMulticast: 0 };
const FUSE_OK: Result<RawCounters> = { ok: true, value: FUSE_RAW };
const FUSE_UNREAD: Result<RawCounters> = { ok: false, error: 'the fuse could not read this port (vsi)' };

/**
 * One item of a fuse sample as raw counters, in one reused object (section() copies it at once).
 * The fuse reads no bytes: rxBytes stays 0, and nothing judges rxBps.
 */
function fuseRaw(v: Float64Array, at: number): Result<RawCounters> {
  if (!(v[at]! >= 0) || !(v[at + 1]! >= 0)) return FUSE_UNREAD;
  FUSE_RAW.rxPackets = v[at]!;
  FUSE_RAW.txPackets = v[at + 1]!;
  FUSE_RAW.rxBroadcast = v[at + 2]!;
  FUSE_RAW.rxMulticast = v[at + 3]!;
  FUSE_RAW.txBroadcast = v[at + 4]!;
  FUSE_RAW.txMulticast = v[at + 5]!;
  return FUSE_OK;
}
