// Counters -> rates for one port over one interval. Pure, no allocation: the caller owns `out`
// (one PortRates per watched port, reused every tick) and the two Counters buffers it swaps.
import type { Counters, PortRates } from '../types.js';

/**
 * Intervals shorter than this give no rate. Counters move in driver batches (NAPI polls up to 64
 * frames at once), so a few frames over a few µs would read as hundreds of thousands of pps: a
 * spike made of arithmetic. The fastest sampling (1 ms ± 0.5 ms jitter) stays well above it; an
 * immediate extra tick (e.g. woken by an action result) may fall below and is simply skipped.
 */
export const MIN_DT_NS = 200_000;

/**
 * Fill `out` with the rates of `port` between two reads taken `dtNs` apart (measured monotonic
 * time, never the nominal period: a "1 ms" Node timer really ticks at ~1.1 ms with 5 ms
 * outliers, see LAB-FACTS). Returns `out`.
 *
 * The sample is invalid (valid=false, every rate 0) when either read failed, when dt is not a
 * finite number >= MIN_DT_NS, or when any known counter went backwards: a driver reload, a 32-bit wrap or a
 * re-created interface resets counters, and diffing across that would invent (or hide) a storm.
 * A broadcast/multicast counter that is unknown (NaN) on either side is not an error; it only
 * leaves that rate unknown (NaN).
 */
export function computeRates(
  prev: Counters,
  cur: Counters,
  dtNs: number,
  port: string,
  bridge: string | null,
  out: PortRates,
): PortRates {
  out.port = port;
  out.bridge = bridge;
  out.dtMs = dtNs / 1e6;
  // `!(x >= min)` rather than `x < min` so that NaN also lands here.
  if (!prev.ok || !cur.ok || !(dtNs >= MIN_DT_NS) || dtNs === Infinity) return invalid(out);

  const dRx = cur.rxPackets - prev.rxPackets;
  const dTx = cur.txPackets - prev.txPackets;
  const dBytes = cur.rxBytes - prev.rxBytes;
  // Also rejects NaN in a counter that must always be known.
  if (!(dRx >= 0) || !(dTx >= 0) || !(dBytes >= 0)) return invalid(out);

  // NaN when either side is unknown; NaN < 0 is false, so only a real step backwards rejects.
  const dB = cur.rxBroadcast - prev.rxBroadcast;
  const dM = cur.rxMulticast - prev.rxMulticast;
  if (dB < 0 || dM < 0) return invalid(out);

  const perSec = 1e9 / dtNs;
  out.rxPps = dRx * perSec;
  out.txPps = dTx * perSec;
  out.rxBps = dBytes * perSec;
  const bKnown = Number.isFinite(dB);
  const mKnown = Number.isFinite(dM);
  out.bcastPps = bKnown ? dB * perSec : NaN;
  // Sources that count only broadcast (nft `ether daddr ff:ff:ff:ff:ff:ff`) or only multicast
  // still give a flood rate: a loop storm is usually one or the other, rarely a mix.
  out.floodPps = bKnown && mKnown ? (dB + dM) * perSec : bKnown ? dB * perSec : mKnown ? dM * perSec : NaN;
  // A guest's send by its macvtap (NaN where not counted; a source may set txFloodPps after).
  const dTf = cur.txFlood - prev.txFlood;
  const dTw = cur.txForeign - prev.txForeign;
  out.txFloodPps = dTf >= 0 ? dTf * perSec : NaN;
  out.txFwdPps = dTw >= 0 ? dTw * perSec : NaN;
  const dRet = cur.rxReturned - prev.rxReturned;
  out.rxRetPps = dRet >= 0 ? dRet * perSec : NaN;
  out.valid = true;
  return out;
}

function invalid(out: PortRates): PortRates {
  out.rxPps = 0;
  out.txPps = 0;
  out.rxBps = 0;
  out.floodPps = 0;
  out.bcastPps = 0;
  out.valid = false;
  return out;
}

/**
 * A port's rates before its first interval (invalid). Every source makes its PortRates here, and
 * so does the detector's warm-up (detect/warmup.ts): one object shape, number fields holding
 * doubles from the start, so the code the warm-up compiled is the code a real storm runs (a
 * second shape deoptimised nine detector functions in the first storm's tick, lab --trace-deopt).
 */
export function blankRates(port: string, bridge: string | null, flood: number): PortRates {
  return { port, bridge, dtMs: D0, rxPps: D0, txPps: D0, rxBps: D0, floodPps: flood, bcastPps: flood, txFloodPps: NaN, txFwdPps: NaN, rxRetPps: NaN, valid: false, noLearn: false, hairpin: false, macvlan: false, esxiVm: false, vmSwitch: false, esxiVmId: '', esxiVmName: '' };
}

/**
 * Run computeRates at start on throwaway counters down every path, so a real storm does not run
 * one for the first time: an interval too short (the tick that re-reads right after a stop), a
 * failed read, a counter that went backwards, and the valid path with counters past 2^30 (held as
 * doubles, as a long-lived host's are). A cold agent's first stop deoptimised computeRates and the
 * local source's collect around it at its first short interval (lab, session 16).
 */
export function warmUpRates(rounds = 2000): number {
  const prev: Counters = { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: NaN, rxMulticast: NaN, txFlood: NaN, txForeign: NaN, rxReturned: NaN, ok: false };
  const cur: Counters = { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: NaN, rxMulticast: NaN, txFlood: NaN, txForeign: NaN, rxReturned: NaN, ok: false };
  const out = blankRates('(warm-up)'.split('').join(''), null, NaN);
  let valid = 0;
  for (let i = 0; i < rounds; i++) {
    const base = 2 ** 31 + i * 1000.5;
    prev.rxPackets = base;
    prev.txPackets = base;
    prev.rxBytes = base * 64;
    prev.rxBroadcast = i % 3 === 0 ? NaN : base;
    prev.rxMulticast = i % 5 === 0 ? NaN : base;
    prev.ok = i % 7 !== 1;
    cur.rxPackets = base + (i % 11 === 2 ? -1 : 100);
    cur.txPackets = base + 99;
    cur.rxBytes = (base + 100) * 64;
    cur.rxBroadcast = prev.rxBroadcast + 50;
    cur.rxMulticast = prev.rxMulticast + 10;
    prev.txFlood = i % 2 === 0 ? NaN : base;
    prev.txForeign = prev.txFlood;
    cur.txFlood = prev.txFlood + 20;
    cur.txForeign = prev.txForeign + 5;
    prev.rxReturned = i % 3 === 1 ? NaN : base;
    cur.rxReturned = prev.rxReturned + 2;
    cur.ok = true;
    const dtNs = i % 13 === 3 ? MIN_DT_NS / 2 : 1e6 + (i % 17) * 1000.5;
    if (computeRates(prev, cur, dtNs, out.port, i % 2 ? null : out.port, out).valid) valid++;
  }
  return valid;
}

/** Zero, as a double: -0 is never a small integer, so the fields above start as doubles. */
const D0 = -0;

/** Copy every field of `from` into `to` (no allocation). */
export function copyCounters(from: Counters, to: Counters): Counters {
  to.rxPackets = from.rxPackets;
  to.txPackets = from.txPackets;
  to.rxBytes = from.rxBytes;
  to.rxBroadcast = from.rxBroadcast;
  to.rxMulticast = from.rxMulticast;
  to.txFlood = from.txFlood;
  to.txForeign = from.txForeign;
  to.rxReturned = from.rxReturned;
  to.ok = from.ok;
  return to;
}
