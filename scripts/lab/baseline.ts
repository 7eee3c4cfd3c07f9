// Start the storm-control baseline (storm-control-run.js) in a lab's host namespace.
import { labDistEntry } from './assets.js';
import { ns } from './exec.js';
import { startJsonProc } from './jsonproc.js';
import type { StormControlResult } from './storm-control.js';
import type { Lab } from './topology.js';

export interface BaselineOptions {
  /** Ports to police (default: every host bridge port, as a switch polices every access port). */
  ports?: string[];
  levelPps?: number;
  intervalMs?: number;
  durationMs?: number;
  /** Compiled storm-control-run.js to use (default: the one in dist/, from `npm run build`). */
  entry?: string;
}

export interface BaselineHandle {
  readonly startNs: number;
  /** Resolves when the run ends at its duration. */
  done(): Promise<StormControlResult>;
  /** End it now. */
  stop(): Promise<StormControlResult>;
}

export async function startStormControl(lab: Lab, o: BaselineOptions = {}): Promise<BaselineHandle> {
  const durationMs = o.durationMs ?? 5000;
  const argv = ns(lab.ns.host, [
    process.execPath,
    o.entry ?? labDistEntry('storm-control-run.js'),
    '--ports',
    (o.ports ?? lab.hostPorts).join(','),
    '--pps',
    String(o.levelPps ?? 20_000),
    '--interval-ms',
    String(o.intervalMs ?? 1000),
    '--duration-ms',
    String(durationMs),
  ]);
  const p = await startJsonProc<{ startNs: number }, StormControlResult>(argv, 'storm-control', durationMs + 5000);
  return { startNs: p.ready.startNs, done: p.done, stop: p.stop };
}
