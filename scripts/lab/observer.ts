// Run a lab observer inside a namespace and collect its per-interface series: observe.mjs (polls
// rx_packets every ~0.25 ms: a change is known to lie between two polls, and a poll held off its
// core comes late) or observe-ts (scripts/lab/observe-ts.c: each received frame's kernel
// timestamp from an AF_PACKET ring, exact however late the reader runs). Same protocol on stdout.
import { labAsset, labBinary } from './assets.js';
import { ns } from './exec.js';
import { startJsonProc } from './jsonproc.js';
import { assertIfName } from './names.js';
import type { Series } from './analyze.js';

/** 'poll': observe.mjs, rx_packets polled. 'kernel': observe-ts, the frames' kernel receive times. */
export type ObserverKind = 'poll' | 'kernel';
export const OBSERVER_KINDS: readonly ObserverKind[] = ['poll', 'kernel'];

/** One line for reports: what timed prod's frames. */
export function instrumentText(kind: ObserverKind): string {
  return kind === 'kernel'
    ? "prod timed by observe-ts: each frame's kernel receive timestamp (AF_PACKET ring), exact however late the reader runs"
    : 'prod timed by observe.mjs: rx_packets polled every ~0.25 ms at normal priority, a bound when the poll came late';
}

export interface ObserverHandle {
  readonly kind: ObserverKind;
  /** CLOCK_MONOTONIC ns at which observing started. */
  readonly startNs: number;
  /** The observer's process id (it runs as `ip netns exec`'s exec'd child). */
  readonly pid: number | undefined;
  /** End observing (a no-op if its duration already ended) and return what was seen. */
  stop(): Promise<Series>;
}

/** Path of the compiled kernel-timed observer (scripts/lab/observe-ts.c, built by scripts/setup.sh into dist/scripts/lab/). */
export function kernelObserverPath(): string {
  return labBinary('observe-ts');
}

/** Pure: the observer's argv (without the namespace wrapper). */
export function observerArgv(kind: ObserverKind, ifaces: readonly string[], durationMs: number, periodUs: number, paths: { node: string; mjs: string; ts: string }): string[] {
  if (ifaces.length === 0) throw new Error('startObserver: no interfaces');
  ifaces.forEach(assertIfName);
  const common = ['--ifaces', ifaces.join(','), '--duration-ms', String(durationMs)];
  return kind === 'kernel' ? [paths.ts, ...common] : [paths.node, paths.mjs, ...common, '--period-us', String(periodUs)];
}

/**
 * Start observing `ifaces` inside namespace `netns` for at most durationMs (kind 'poll' unless
 * given). Resolves once the observer runs, so an injection right after is seen from its first frame.
 */
export async function startObserver(
  netns: string,
  ifaces: readonly string[],
  durationMs: number,
  opts: { periodUs?: number; kind?: ObserverKind } = {},
): Promise<ObserverHandle> {
  const kind = opts.kind ?? 'poll';
  const paths = { node: process.execPath, mjs: kind === 'poll' ? labAsset('observe.mjs') : '', ts: kind === 'kernel' ? kernelObserverPath() : '' };
  const argv = ns(netns, observerArgv(kind, ifaces, durationMs, opts.periodUs ?? 250, paths));
  const p = await startJsonProc<{ tNs: number }, Series>(argv, `${kind} observer in ${netns}`, durationMs + 5000);
  return { kind, startNs: p.ready.tNs, pid: p.pid, stop: p.stop };
}
