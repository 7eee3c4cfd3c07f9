// Run observe.mjs inside a namespace and collect its rx_packets series.
import { labAsset } from './assets.js';
import { ns } from './exec.js';
import { startJsonProc } from './jsonproc.js';
import { assertIfName } from './names.js';
import type { Series } from './analyze.js';

export interface ObserverHandle {
  /** CLOCK_MONOTONIC ns at which polling started. */
  readonly startNs: number;
  /** End polling (a no-op if its duration already ended) and return what was seen. */
  stop(): Promise<Series>;
}

/**
 * Start observing rx_packets of `ifaces` inside namespace `netns` for at most durationMs.
 * Resolves once the observer polls, so an injection right after is seen from its first frame.
 */
export async function startObserver(
  netns: string,
  ifaces: readonly string[],
  durationMs: number,
  opts: { periodUs?: number } = {},
): Promise<ObserverHandle> {
  if (ifaces.length === 0) throw new Error('startObserver: no interfaces');
  ifaces.forEach(assertIfName);
  const argv = ns(netns, [
    process.execPath,
    labAsset('observe.mjs'),
    '--ifaces',
    ifaces.join(','),
    '--duration-ms',
    String(durationMs),
    '--period-us',
    String(opts.periodUs ?? 250),
  ]);
  const p = await startJsonProc<{ tNs: number }, Series>(argv, `observer in ${netns}`, durationMs + 5000);
  return { startNs: p.ready.tNs, stop: p.stop };
}
