import type { Logger } from '../log.js';
import type { StatusAnswer } from '../control/protocol.js';
import { snapshotFromStatus, startMetricsServer, type Histogram, type MetricsServer } from '../notify/metrics.js';
import type { EventNotifier } from '../notify/webhook.js';
import { packageVersion } from '../host/package.js';

// Prometheus text on a loopback address (--metrics, else the policy's metrics.listen; read at
// start only): the status answer plus the counters kept beside it.

export interface MetricsDeps {
  at: { host: string; port: number };
  log: Logger;
  status(): StatusAnswer;
  reaction: Histogram;
  tripsTotal: ReadonlyMap<string, number>;
  hooks: EventNotifier | null;
}

export function startDaemonMetrics(d: MetricsDeps): Promise<MetricsServer> {
  const extras = { build: { version: packageVersion(), node: process.version }, startTimeSeconds: Math.floor(Date.now() / 1000), reaction: d.reaction, tripsTotal: d.tripsTotal };
  return startMetricsServer({
    ...d.at,
    onError: (err: Error) => d.log.warn({ component: 'metrics', err: err.message }, 'metrics request failed'),
    snapshot: () => snapshotFromStatus(d.status(), { ...extras, ...(d.hooks ? { notifyDroppedTotal: d.hooks.stats.dropped } : {}) }),
  });
}
