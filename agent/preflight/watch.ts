// The few seconds after guard-up lets a port forward: is its receive rate exploding? Pure step
// function over counter samples, with the storm detector's thresholds (policy.defaults merged
// with the port's rule): a sample is hot when flood (broadcast + multicast) rx exceeds floodPps,
// or, where no broadcast counter exists, total rx exceeds rxPps; holdSamples hot samples in a
// row trip. A freshly enabled port has no baseline, so baselineFactor does not apply here.
import type { Thresholds } from '../types.js';

/** How long guard-up watches a port after it starts forwarding (ms), unless told. */
export const DEFAULT_WATCH_MS = 3000;

export interface WatchSample {
  /** Monotonic ms. */
  tMs: number;
  rxPackets: number;
  /** Broadcast + multicast frames received; NaN when unknown. */
  floodPackets: number;
}

export interface WatchPoint {
  tMs: number;
  rxPps: number;
  floodPps: number;
  hot: boolean;
}

export interface WatchState {
  prev: WatchSample | null;
  hot: number;
  /** Last few rated samples, newest last (the evidence of a trip). */
  window: WatchPoint[];
}

export const WATCH_WINDOW = 8;

export function initialWatchState(): WatchState {
  return { prev: null, hot: 0, window: [] };
}

export function watchStep(state: WatchState, s: WatchSample, th: Pick<Thresholds, 'floodPps' | 'rxPps' | 'holdSamples'>): { state: WatchState; trip: boolean } {
  const prev = state.prev;
  if (prev === null || s.tMs <= prev.tMs) return { state: { ...state, prev: s }, trip: false };
  const dRx = s.rxPackets - prev.rxPackets;
  const dFlood = s.floodPackets - prev.floodPackets;
  // A counter going backwards is a reset or wrap (port recreated): no rate, never a spike.
  if (dRx < 0 || dFlood < 0) return { state: { prev: s, hot: 0, window: state.window }, trip: false };
  const dt = (s.tMs - prev.tMs) / 1000;
  const rxPps = dRx / dt;
  const floodPps = dFlood / dt;
  const hot = Number.isFinite(floodPps) ? floodPps > th.floodPps : rxPps > th.rxPps;
  const n = hot ? state.hot + 1 : 0;
  const window = [...state.window, { tMs: s.tMs, rxPps, floodPps, hot }].slice(-WATCH_WINDOW);
  return { state: { prev: s, hot: n, window }, trip: n >= Math.max(1, th.holdSamples) };
}
