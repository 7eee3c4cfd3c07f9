// Generated counter traces for tests of the pure core. A scenario says what traffic each port
// carries over time (pps); TraceGen integrates that into raw counters (integers, optionally 32-bit
// wrapping, with resets and failed reads injected) and turns them into Ticks through the real
// sampler (computeRates), at a nominal period with optional jitter, as the daemon would.
//
// Closed loop: `gen.down` is the set of ports whose link is down. A down port's counters stop,
// and scenarios consult it (a loop stops once fewer than two of its members are up, a flood
// stops when its source is down), so tests can feed the breaker's commands back into the trace.
import { computeRates, copyCounters } from '../sample/rates.js';
import type { Counters, FdbMove, PortRates, Tick } from '../types.js';

export interface PortLoad {
  rxPps: number;
  txPps: number;
  /** Incoming broadcast pps; NaN: this port has no broadcast counter. */
  bcastPps: number;
  /** Incoming multicast pps; default 0 when broadcast is known, else NaN. */
  mcastPps?: number;
}

export type LoadFn = (port: string, tMs: number, down: ReadonlySet<string>) => PortLoad;

export interface CounterFault {
  port: string;
  atMs: number;
  /**
   * reset: counters restart from 0 (driver reload); missing: reads fail (ok=false) for forMs;
   * absent: the port is left out of ticks for forMs (counters keep running meanwhile).
   */
  kind: 'reset' | 'missing' | 'absent';
  forMs?: number;
}

export interface TraceSpec {
  name: string;
  ports: ReadonlyArray<{ port: string; bridge: string | null }>;
  load: LoadFn;
  /** Nominal sample period, ms (default 1). */
  periodMs?: number;
  /** Each interval is periodMs ± up to jitterMs, uniformly (default 0). */
  jitterMs?: number;
  seed?: number;
  faults?: readonly CounterFault[];
  /** Initial value of every counter (default 0); with counterBits 32, start near 2^32 to wrap. */
  counterStart?: number;
  counterBits?: 32 | 64;
  /** FDB moves seen during the interval ending at tMs. */
  fdb?: (tMs: number, dtMs: number, down: ReadonlySet<string>) => ReadonlyArray<Omit<FdbMove, 'tNs'>>;
  /** Monotonic time of the first tick's start, ns (default 1e12: an uptime, not 0). */
  startNs?: number;
}

const FRAME_BYTES = 64;
const TWO32 = 2 ** 32;

interface Acc {
  rx: number;
  tx: number;
  bytes: number;
  bcast: number;
  mcast: number;
}

export class TraceGen {
  /** Ports whose link is down: their counters stop. Tests add to it when a link-down "succeeds". */
  readonly down = new Set<string>();
  /** Elapsed ms since the start of the trace (end of the last tick). */
  tMs = 0;
  tNs: number;
  private readonly acc = new Map<string, Acc>();
  private readonly prev = new Map<string, Counters>();
  private readonly lastEmitNs = new Map<string, number>();
  /** Which counters exist per port: a property of the host's sources, fixed for the trace. */
  private readonly known = new Map<string, { b: boolean; m: boolean }>();
  private readonly rand: () => number;

  constructor(readonly spec: TraceSpec) {
    this.tNs = spec.startNs ?? 1e12;
    this.rand = mulberry32(spec.seed ?? 1);
    for (const p of spec.ports) {
      const a: Acc = { rx: 0, tx: 0, bytes: 0, bcast: 0, mcast: 0 };
      const l0 = spec.load(p.port, 0, this.down);
      const b = Number.isFinite(l0.bcastPps);
      this.known.set(p.port, { b, m: l0.mcastPps !== undefined ? Number.isFinite(l0.mcastPps) : b });
      this.acc.set(p.port, a);
      this.prev.set(p.port, this.counters(p.port, a));
      this.lastEmitNs.set(p.port, this.tNs);
    }
  }

  next(): Tick {
    const period = this.spec.periodMs ?? 1;
    const jitter = this.spec.jitterMs ?? 0;
    const dtMs = Math.max(0.01, period + jitter * (2 * this.rand() - 1));
    const t0 = this.tMs;
    this.tMs += dtMs;
    this.tNs += Math.round(dtMs * 1e6);
    const ports: PortRates[] = [];
    for (const p of this.spec.ports) {
      const a = this.acc.get(p.port)!;
      const l = this.down.has(p.port) ? DOWN : this.spec.load(p.port, this.tMs, this.down);
      const s = dtMs / 1000;
      a.rx += l.rxPps * s;
      a.tx += l.txPps * s;
      a.bytes += l.rxPps * s * FRAME_BYTES;
      a.bcast += (Number.isFinite(l.bcastPps) ? l.bcastPps : 0) * s;
      a.mcast += (l.mcastPps ?? 0) * s;
      let ok = true;
      let absent = false;
      for (const f of this.spec.faults ?? []) {
        if (f.port !== p.port) continue;
        if (f.kind === 'reset' && t0 < f.atMs && f.atMs <= this.tMs) {
          a.rx = a.tx = a.bytes = a.bcast = a.mcast = 0;
        }
        const inside = this.tMs >= f.atMs && this.tMs < f.atMs + (f.forMs ?? 0);
        if (inside && f.kind === 'missing') ok = false;
        if (inside && f.kind === 'absent') absent = true;
      }
      if (absent) continue;
      const cur = this.counters(p.port, a);
      cur.ok = ok;
      const prev = this.prev.get(p.port)!;
      const out = computeRates(prev, cur, this.tNs - this.lastEmitNs.get(p.port)!, p.port, p.bridge, blank());
      copyCounters(cur, prev);
      this.lastEmitNs.set(p.port, this.tNs);
      ports.push(out);
    }
    const fdbMoves: FdbMove[] = [];
    for (const m of this.spec.fdb?.(this.tMs, dtMs, this.down) ?? []) fdbMoves.push({ ...m, tNs: this.tNs });
    return { tNs: this.tNs, ports, fdbMoves };
  }

  /** Ticks until `ms` more milliseconds have elapsed. */
  take(ms: number): Tick[] {
    const out: Tick[] = [];
    const end = this.tMs + ms;
    while (this.tMs < end) out.push(this.next());
    return out;
  }

  private counters(port: string, a: Acc): Counters {
    const start = this.spec.counterStart ?? 0;
    const wrap = this.spec.counterBits === 32;
    const v = (x: number): number => {
      const n = Math.floor(x + start);
      return wrap ? n % TWO32 : n;
    };
    const { b: bKnown, m: mKnown } = this.known.get(port)!;
    return {
      rxPackets: v(a.rx),
      txPackets: v(a.tx),
      rxBytes: v(a.bytes),
      rxBroadcast: bKnown ? v(a.bcast) : NaN,
      rxMulticast: mKnown ? v(a.mcast) : NaN,
      txFlood: NaN,
      txForeign: NaN,
      ok: true,
    };
  }
}

/** All ticks of `spec` over `ms` milliseconds (open loop: nothing is ever shut). */
export function buildTrace(spec: TraceSpec, ms: number): Tick[] {
  return new TraceGen(spec).take(ms);
}

const DOWN: PortLoad = { rxPps: 0, txPps: 0, bcastPps: 0 };

function blank(): PortRates {
  return { port: '', bridge: null, dtMs: 0, rxPps: 0, txPps: 0, rxBps: 0, floodPps: NaN, bcastPps: NaN, valid: false };
}

/** Small deterministic PRNG (mulberry32) so traces with jitter are reproducible. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- scenarios ---------------------------------------------------------------------------------

export interface ScenarioOptions {
  periodMs?: number;
  jitterMs?: number;
  seed?: number;
  faults?: readonly CounterFault[];
  counterStart?: number;
  counterBits?: 32 | 64;
  /** false: the host has no broadcast counter for any port (sysfs only), detection falls back to rx. */
  bcastKnown?: boolean;
  /** When the storm/flood/burst begins, ms (default 100: some quiet samples first). */
  startMs?: number;
  /** Traffic of every port outside the event (default BACKGROUND). */
  background?: PortLoad;
}

/** What every port carries on a quiet host: a little unicast, a trickle of ARP/mDNS. */
export const BACKGROUND: Readonly<PortLoad> = Object.freeze({ rxPps: 300, txPps: 300, bcastPps: 10 });

function common(o: ScenarioOptions): Omit<TraceSpec, 'name' | 'ports' | 'load'> {
  const { periodMs, jitterMs, seed, faults, counterStart, counterBits } = o;
  return { periodMs, jitterMs, seed, faults, counterStart, counterBits };
}

function bg(o: ScenarioOptions): PortLoad {
  const b = o.background ?? BACKGROUND;
  return o.bcastKnown === false ? { ...b, bcastPps: NaN } : { ...b };
}

/** br0 with up1, up2, vm1, mgmt0: background traffic only. */
export function quietNetwork(o: ScenarioOptions = {}): TraceSpec {
  const ports = ['up1', 'up2', 'vm1', 'mgmt0'].map((port) => ({ port, bridge: 'br0' }));
  const quiet = bg(o);
  return { name: 'quiet', ports, load: () => quiet, ...common(o) };
}

export interface LoopOptions extends ScenarioOptions {
  bridge?: string;
  /** Ports the frames circle through (each both receives and re-floods them). */
  members?: string[];
  /** Other ports of the bridge: they only receive copies (tx). */
  others?: string[];
  /** Per-member rate, pps, constant or as a function of ms since the start of the loop. */
  memberPps?: number | ((msSinceStart: number) => number);
  /** Emit FDB moves of one MAC flapping between the members (1 per ms). */
  fdbFlap?: boolean;
  /** The flapping MAC. */
  mac?: string;
  /**
   * Multicast the other ports send into the bridge all along, pps (a VM's stream beside the loop):
   * then the members are not the only ports taking frames in (the detector's onlyWaysIn).
   */
  othersSendPps?: number;
}

/**
 * KVM-style loop: two uplinks of br0 cabled into the same L2 domain (up1, up2 both rx ≈ tx
 * ~100k pps), vm1 and mgmt0 receive copies (tx only). The loop runs while at least two members
 * are up, whatever the origin does: that persistence is what a loop is.
 */
export function kvmLoop(o: LoopOptions = {}): TraceSpec {
  const bridge = o.bridge ?? 'br0';
  const members = o.members ?? ['up1', 'up2'];
  const others = o.others ?? ['vm1', 'mgmt0'];
  const start = o.startMs ?? 100;
  const pps = o.memberPps ?? 100_000;
  const rate = typeof pps === 'number' ? () => pps : pps;
  const quiet = bg(o);
  const active = (tMs: number, down: ReadonlySet<string>): boolean =>
    tMs >= start && members.filter((m) => !down.has(m)).length >= 2;
  const send = o.othersSendPps ?? 0;
  const sending = { ...quiet, rxPps: quiet.rxPps + send, bcastPps: quiet.bcastPps + send };
  const load: LoadFn = (port, tMs, down) => {
    const other = !members.includes(port);
    if (!active(tMs, down)) return other ? sending : quiet;
    const r = rate(tMs - start);
    const i = members.indexOf(port);
    const bcast = (x: number): number => (o.bcastKnown === false ? NaN : x);
    if (i >= 0) {
      // rx ≈ tx but not equal: members see the circling frames slightly out of step (98k/101k).
      const rx = r * (i % 2 === 0 ? 0.98 : 1.01);
      const tx = r * (i % 2 === 0 ? 1.01 : 0.98);
      return { rxPps: rx + quiet.rxPps, txPps: tx + quiet.txPps, bcastPps: bcast(rx + quiet.bcastPps) };
    }
    return { rxPps: sending.rxPps, txPps: r + quiet.txPps, bcastPps: sending.bcastPps };
  };
  const mac = o.mac ?? '02:00:00:00:00:01';
  let k = 0;
  const fdb = o.fdbFlap
    ? (tMs: number, dtMs: number, down: ReadonlySet<string>) => {
        if (!active(tMs, down)) return [];
        const up = members.filter((m) => !down.has(m));
        const n = Math.max(1, Math.round(dtMs));
        const out: Array<Omit<FdbMove, 'tNs'>> = [];
        for (let j = 0; j < n; j++) out.push({ bridge, mac, port: up[k++ % up.length]! });
        return out;
      }
    : undefined;
  const ports = [...members, ...others].map((port) => ({ port, bridge }));
  return { name: 'kvm-loop', ports, load, fdb, ...common(o) };
}

/**
 * ESX-style loop: a VM bridging its two vNICs (vmA1, vmA2) on vSwitch0; the frames circle
 * through the VM, so vmA1 and vmA2 are the members and up1 only sends copies out (tx only).
 */
export function esxLoop(o: LoopOptions = {}): TraceSpec {
  return { ...kvmLoop({ bridge: 'vSwitch0', members: ['vmA1', 'vmA2'], others: ['up1', 'vmB'], ...o }), name: 'esx-loop' };
}

export interface FloodOptions extends ScenarioOptions {
  bridge?: string;
  source?: string;
  others?: string[];
  pps?: number;
  /** The source stops on its own (ms since trace start); default never. */
  stopMs?: number;
}

/**
 * One port receives a broadcast flood (a VM sending ~175k pps, the most a single sender reaches
 * here) that the bridge copies to every other port: the source has high rx and ~0 tx, the others
 * high tx and ~0 rx. Stops when the source is down or at stopMs.
 */
export function singleSourceFlood(o: FloodOptions = {}): TraceSpec {
  const bridge = o.bridge ?? 'br0';
  const source = o.source ?? 'vm1';
  const others = o.others ?? ['up1', 'vm2', 'mgmt0'].filter((p) => p !== source);
  const start = o.startMs ?? 100;
  const stop = o.stopMs ?? Infinity;
  const pps = o.pps ?? 175_000;
  const quiet = bg(o);
  const load: LoadFn = (port, tMs, down) => {
    if (tMs < start || tMs >= stop || down.has(source)) return quiet;
    if (port === source) {
      return { rxPps: pps + quiet.rxPps, txPps: quiet.txPps, bcastPps: o.bcastKnown === false ? NaN : pps + quiet.bcastPps };
    }
    return { rxPps: quiet.rxPps, txPps: pps + quiet.txPps, bcastPps: quiet.bcastPps };
  };
  const ports = [source, ...others].map((port) => ({ port, bridge }));
  return { name: 'flood', ports, load, ...common(o) };
}

/** A single VM flooding at 175k pps (vm1 rx only; up1, vm2, mgmt0 tx). */
export function vmFlood(o: FloodOptions = {}): TraceSpec {
  return { ...singleSourceFlood({ source: 'vm1', others: ['up1', 'vm2', 'mgmt0'], ...o }), name: 'vm-flood' };
}

/** A flood entering on the uplink (a storm elsewhere in the L2 domain): up1 rx only. */
export function uplinkFlood(o: FloodOptions = {}): TraceSpec {
  return { ...singleSourceFlood({ source: 'up1', others: ['vm1', 'vm2', 'mgmt0'], ...o }), name: 'uplink-flood' };
}

/** A legitimate burst: vm1 sends 3000 pps of broadcast for 2 s (an ARP scan, a DHCP boot wave). */
export function benignBurst(o: FloodOptions = {}): TraceSpec {
  const start = o.startMs ?? 100;
  return { ...singleSourceFlood({ source: 'vm1', pps: 3000, stopMs: start + 2000, ...o }), name: 'benign-burst' };
}

/** Piecewise-constant rate from per-second figures (e.g. a pcap's per-second counts). */
export function perSecond(rates: readonly number[]): (msSinceStart: number) => number {
  return (ms) => rates[Math.min(rates.length - 1, Math.max(0, Math.floor(ms / 1000)))] ?? 0;
}
