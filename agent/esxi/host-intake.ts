// How counters from one ESXi host reach its rates, around actions: blocks (shell loop) or fuse
// samples, each taken only when nothing the agent did straddles it. After an action, blocks asked
// for before it landed are dropped, and so are fuse samples READ before it landed (at rest the
// fuse sends them in batches, so such a sample can arrive after the action's result); the first
// block or sample after only sets a new baseline,
// so what is judged next is purely post-action; until that rate exists the host's ports are not
// judged at all (the breaker's settle must not find the pre-action hot state and escalate on it).
// While the host's fuse is cutting (it said `cutting`, its result has not come), nothing is
// judged either: the samples read meanwhile straddle the cut, and a cut vNIC's port vanishes from
// them, so its loop partner looked like a one-port flood and was shut too (bench-esxi).
import type { HostRates } from './host-rates.js';
import type { Block } from './stream.js';

export interface HostIntake {
  block(b: Block, tNs: number): void;
  /** Rates between read times (tReadNs); freshness by arrival (tRecvNs). */
  fuseSample(keys: readonly string[], values: Float64Array, tReadNs: number, tRecvNs: number): void;
  /**
   * An action landed at atNs (the agent's: blocks through `sentTick` straddle it, and fuse samples
   * read before atNs; or the fuse's cut, heard at atNs).
   */
  acted(sentTick: number, atNs: number): void;
  /** The host's fuse is cutting: judge nothing until its result (release) or untilNs. */
  hold(untilNs: number): void;
  /** The fuse's cut has a result: the hold ends (acted() follows when it cut). */
  release(): void;
  /**
   * The fuse ended (or stopped holding a plan) while it held judging: its cut's result will not
   * come. The hold ends now, not at its untilNs, and what is judged next is purely post-`atNs`
   * (the cut may or may not have happened). Only while holding().
   */
  abandoned(sentTick: number, atNs: number): void;
  /** A fuse's `cutting` holds judging (until its result, abandoned(), or its untilNs passed). */
  holding(nowNs: number): boolean;
  /** A post-action rate exists and the last one is younger than staleMs. */
  fresh(nowNs: number, staleMs: number): boolean;
  /** After the detector has seen the rates: they must not count again on later ticks. */
  consume(): void;
}

export function hostIntake(rates: HostRates, onRates: () => void): HostIntake {
  let ratesAtNs = 0;
  /** Rates not yet seen by the detector: consume() has work only then (it runs every tick). */
  let unconsumed = false;
  let ignoreThroughTick = 0;
  let ignoreReadThroughNs = 0;
  let rebase = false;
  let awaitingPost = false;
  let heldUntilNs = 0;

  /** A block or sample is about to be taken: a first one after an action only sets the baseline. */
  function taking(): void {
    if (rebase) {
      rebase = false;
      rates.forgetBaselines();
    } else if (awaitingPost) {
      awaitingPost = false;
    }
  }
  function taken(tNs: number): void {
    ratesAtNs = tNs;
    unconsumed = true;
    onRates();
  }

  function acted(sentTick: number, atNs: number): void {
    ignoreThroughTick = sentTick;
    ignoreReadThroughNs = atNs;
    rebase = true;
    awaitingPost = true;
  }

  return {
    block(b, tNs) {
      rates.arrived(tNs);
      if (b.tick <= ignoreThroughTick) return;
      taking();
      rates.block(b, tNs);
      taken(tNs);
    },
    fuseSample(keys, values, tReadNs, tRecvNs) {
      rates.arrived(tReadNs); // samples per second by read time: a batch arrives at one instant
      if (tReadNs <= ignoreReadThroughNs) return;
      taking();
      rates.fuseSample(keys, values, tReadNs);
      taken(tRecvNs);
    },
    acted,
    hold(untilNs) {
      heldUntilNs = untilNs;
    },
    release() {
      heldUntilNs = 0;
    },
    holding: (nowNs) => nowNs < heldUntilNs,
    abandoned(sentTick, atNs) {
      heldUntilNs = 0;
      acted(sentTick, atNs);
    },
    fresh: (nowNs, staleMs) => !awaitingPost && nowNs >= heldUntilNs && ratesAtNs > 0 && nowNs - ratesAtNs <= staleMs * 1e6,
    consume() {
      if (!unconsumed) return;
      unconsumed = false;
      for (const r of rates.rates()) r.valid = false;
    },
  };
}
