import { constants } from 'node:os';
import type { Logger } from '../log.js';
import type { PortPolicy, Policy } from '../types.js';
import { warmUpBreaker } from '../breaker/warmup.js';
import { bridgePortOf, probeBridgeState } from '../host/bridge-port.js';
import { warmUpTrips, type TripWarmUp } from './warmup-trip.js';
import { keepCompiledCode } from './keep-code.js';
import { warmUpRates } from '../sample/rates.js';
import { warmUpFdbParsing } from '../sources/fdb.js';
import { warmUpReturns } from '../sources/returns.js';

// Pay a first storm's one-time costs at start (issue 11 item 4): a fresh agent's first stop
// (traced in the lab) spent ~1.2 ms in a breaker step that had never run and ~0.9 ms more in a
// link-down that opened its rtnetlink socket and read sysfs for the first time. The detector and
// breaker run synthetic storms on throwaway state (breaker/warmup.ts), then the trip path around
// them (tick, executor, link action) runs synthetic loops on a temp tree (warmup-trip.ts); the
// bridge-state setter opens its socket and runs its kernel path once on an ifindex no link has,
// which changes nothing.

export async function warmUp(policy: Policy, first: PortPolicy | undefined, log: Logger): Promise<void> {
  const t0 = performance.now();
  // What is warmed here must still be compiled when the storm comes, months later.
  keepCompiledCode();
  let trips: TripWarmUp | null = null;
  warmUpRates();
  warmUpFdbParsing();
  warmUpReturns();
  if (first) {
    warmUpBreaker(policy, first);
    bridgePortOf(first.name);
    // The trip path around them (tick, executor, link action): see warmup-trip.ts.
    try {
      trips = await warmUpTrips(policy, first);
    } catch (err) {
      log.warn({ component: 'daemon', err: (err as Error).message }, 'trip path warm-up failed: the first storm may run slower');
    }
  }
  const err = probeBridgeState();
  // Anything but ENODEV says the fast stop may not work here; the link-down's fallback handles it.
  if (err !== null && err !== constants.errno.ENODEV) log.warn({ component: 'actions', errno: err }, 'bridge-state setter answered a probe unexpectedly: a bridge port stop may take the slower route');
  log.info({ component: 'daemon', ms: Math.round((performance.now() - t0) * 10) / 10, warmTrips: trips?.stops ?? 0 }, 'first-storm paths warmed');
}
