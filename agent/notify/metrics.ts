import { createServer, type Server } from 'node:http';
import { isLoopbackHost } from '../host/address.js';
import type { Role } from '../types.js';
import type { PortStatusRow, StatusAnswer } from '../control/protocol.js';
import type { EsxHostStatus } from '../esxi/host.js';
import type { Histogram } from './histogram.js';

// Prometheus text exposition (format 0.0.4) of the agent's state, for an existing monitoring
// stack to alert on trips, a lagging sampler or a dead agent. renderMetrics is pure (a
// snapshot in, text out); the server is a thin edge that calls snapshot() per scrape, so the
// sampler never does metrics work. Loopback only: the endpoint names ports and the policy
// hash, and this agent must not grow a network-facing surface (a node_exporter textfile or a
// local Prometheus agent scrapes it; remote scrapes go through a proxy the operator chooses).

/** Breaker states, one gauge series each (1 for the current state, 0 otherwise). */
export const PORT_STATES = ['forwarding', 'tripping', 'tripped', 'restoring', 'held'] as const;
export type MetricsPortState = (typeof PORT_STATES)[number];

// The histogram is its own module: the daemon keeps one from the start, and loads this file
// (and node:http) only when metrics are configured.
export { createHistogram, observe, REACTION_BUCKETS_MS, type Histogram } from './histogram.js';

export interface PortSnapshot {
  port: string;
  bridge: string | null;
  role: Role | null;
  state: MetricsPortState;
  /** null when no valid rate (first sample, counter reset, failed read). */
  rxPps: number | null;
  txPps: number | null;
  /** Broadcast + multicast rx pps; null when unknown (no broadcast counting). */
  floodPps: number | null;
  /** Trips of this port since the agent started (automatic and manual). */
  tripsTotal: number;
}

export interface Snapshot {
  build: { version: string; node: string; commit?: string };
  policy: { hash: string; dryRun: boolean };
  /** Unix epoch seconds when the agent started. */
  startTimeSeconds: number;
  ports: readonly PortSnapshot[];
  /** Verdict -> verified link-down, ms. */
  reaction: Histogram;
  sampler: {
    /** How late the last tick started against its deadline, ms. */
    lagMs: number;
    /** Worst lag since start, ms. */
    maxLagMs: number;
    /** Current sampling period, ms. */
    periodMs: number;
    ticksTotal: number;
  };
  /** Webhook/hook events dropped because the queue was full (see webhook.ts), if wired. */
  notifyDroppedTotal?: number;
  /** The journal: failing now, records waiting in memory, records lost (queue full). */
  journal?: { failing: boolean; pending: number; dropped: number };
  /** Gaps without sampling over the stall threshold since start. */
  stallsTotal?: number;
  lateTicksTotal?: number;
  /** ESXi hosts over SSH (policy esxi). */
  esxi?: ReadonlyArray<{ host: string; live: boolean; lastBlockAgeMs: number | null; connects: number; samplesPerSec: number; roundTripMs: number | null; fuseArmed?: boolean }>;
}

/** Label value escaping per the exposition format: backslash, double quote, newline. */
function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** ms -> s without float noise in the text (0.25 ms is 0.00025, not 0.00025000000000000001). */
function sec(ms: number): number {
  return Number((ms / 1000).toPrecision(12));
}

function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${esc(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export function renderMetrics(s: Snapshot): string {
  const out: string[] = [];
  const head = (name: string, type: 'gauge' | 'counter' | 'histogram', help: string): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const line = (name: string, l: Record<string, string>, v: number): void => {
    out.push(`${name}${labels(l)} ${num(v)}`);
  };
  const portLabels = (p: PortSnapshot): Record<string, string> => ({ port: p.port, bridge: p.bridge ?? '', role: p.role ?? '' });

  head('stormbreaker_build_info', 'gauge', 'Agent build; always 1.');
  line('stormbreaker_build_info', { version: s.build.version, node: s.build.node, ...(s.build.commit ? { commit: s.build.commit } : {}) }, 1);
  head('stormbreaker_policy_info', 'gauge', 'Policy in force (sha256 prefix, as journaled with every event); always 1.');
  line('stormbreaker_policy_info', { hash: s.policy.hash, dry_run: String(s.policy.dryRun) }, 1);
  head('stormbreaker_start_time_seconds', 'gauge', 'Unix time the agent started.');
  line('stormbreaker_start_time_seconds', {}, s.startTimeSeconds);

  // A missing rate is an absent series, not 0: "no data" must not read as "quiet".
  const rates: Array<[string, string, (p: PortSnapshot) => number | null]> = [
    ['stormbreaker_port_rx_pps', 'Received packets per second over the last sampling interval.', (p) => p.rxPps],
    ['stormbreaker_port_flood_pps', 'Received broadcast+multicast packets per second over the last sampling interval.', (p) => p.floodPps],
    ['stormbreaker_port_tx_pps', 'Transmitted packets per second over the last sampling interval.', (p) => p.txPps],
  ];
  for (const [name, help, get] of rates) {
    head(name, 'gauge', help);
    for (const p of s.ports) {
      const v = get(p);
      if (v !== null && Number.isFinite(v)) line(name, portLabels(p), v);
    }
  }
  head('stormbreaker_port_state', 'gauge', 'Breaker state of a port: 1 for the current state, 0 for the others.');
  for (const p of s.ports) for (const st of PORT_STATES) line('stormbreaker_port_state', { port: p.port, state: st }, p.state === st ? 1 : 0);
  head('stormbreaker_trips_total', 'counter', 'Ports shut by the breaker or by an operator since the agent started.');
  for (const p of s.ports) line('stormbreaker_trips_total', { port: p.port }, p.tripsTotal);

  // Base units (seconds) as Prometheus naming asks (promtool lints `_ms`); the agent measures
  // in ms, so values are converted here and nowhere else.
  const h = s.reaction;
  head('stormbreaker_reaction_seconds', 'histogram', 'Time from a verdict to the verified link-down.');
  let cum = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cum += h.counts[i] ?? 0;
    line('stormbreaker_reaction_seconds_bucket', { le: num(sec(h.bounds[i]!)) }, cum);
  }
  cum += h.counts[h.bounds.length] ?? 0;
  line('stormbreaker_reaction_seconds_bucket', { le: '+Inf' }, cum);
  line('stormbreaker_reaction_seconds_sum', {}, sec(h.sum));
  line('stormbreaker_reaction_seconds_count', {}, h.count);

  head('stormbreaker_sampler_lag_seconds', 'gauge', 'How late the last sampling tick started against its deadline.');
  line('stormbreaker_sampler_lag_seconds', {}, sec(s.sampler.lagMs));
  head('stormbreaker_sampler_max_lag_seconds', 'gauge', 'Worst sampling tick lateness since the agent started.');
  line('stormbreaker_sampler_max_lag_seconds', {}, sec(s.sampler.maxLagMs));
  head('stormbreaker_sampler_period_seconds', 'gauge', 'Current sampling period (idle or active).');
  line('stormbreaker_sampler_period_seconds', {}, sec(s.sampler.periodMs));
  head('stormbreaker_sampler_ticks_total', 'counter', 'Sampling ticks since the agent started.');
  line('stormbreaker_sampler_ticks_total', {}, s.sampler.ticksTotal);
  if (s.esxi && s.esxi.length > 0) {
    head('stormbreaker_esxi_up', 'gauge', '1 while counters arrive from the ESXi host; 0 = its ports are not being judged');
    for (const e of s.esxi) line('stormbreaker_esxi_up', { host: e.host }, e.live ? 1 : 0);
    head('stormbreaker_esxi_sample_age_seconds', 'gauge', 'Seconds since the last counter block from the ESXi host (NaN before the first)');
    for (const e of s.esxi) line('stormbreaker_esxi_sample_age_seconds', { host: e.host }, e.lastBlockAgeMs === null ? NaN : e.lastBlockAgeMs / 1000);
    head('stormbreaker_esxi_samples_per_second', 'gauge', 'Counter blocks per second from the ESXi host');
    for (const e of s.esxi) line('stormbreaker_esxi_samples_per_second', { host: e.host }, e.samplesPerSec);
    head('stormbreaker_esxi_connects_total', 'counter', 'SSH connection attempts to the ESXi host');
    for (const e of s.esxi) line('stormbreaker_esxi_connects_total', { host: e.host }, e.connects);
    head('stormbreaker_esxi_fuse_armed', 'gauge', '1 while the on-host fuse is armed on the ESXi host; 0 = off, not armed (shell loop) or ended');
    for (const e of s.esxi) line('stormbreaker_esxi_fuse_armed', { host: e.host }, e.fuseArmed ? 1 : 0);
  }
  if (s.journal) {
    head('stormbreaker_journal_failing', 'gauge', '1 while journal records do not reach the disk (kept in memory; protection continues).');
    line('stormbreaker_journal_failing', {}, s.journal.failing ? 1 : 0);
    head('stormbreaker_journal_pending_records', 'gauge', 'Journal records kept in memory, waiting for the disk.');
    line('stormbreaker_journal_pending_records', {}, s.journal.pending);
    head('stormbreaker_journal_dropped_records_total', 'counter', 'Journal records lost because the memory queue was full.');
    line('stormbreaker_journal_dropped_records_total', {}, s.journal.dropped);
  }
  if (s.lateTicksTotal !== undefined) {
    head('stormbreaker_sampler_late_ticks_total', 'counter', 'Sampling ticks that started 10 ms or more after their deadline (the event loop was held).');
    line('stormbreaker_sampler_late_ticks_total', {}, s.lateTicksTotal);
  }
  if (s.stallsTotal !== undefined) {
    head('stormbreaker_sampler_stalls_total', 'counter', 'Gaps of more than a second without sampling (stopped, paused or starved agent).');
    line('stormbreaker_sampler_stalls_total', {}, s.stallsTotal);
  }
  if (s.notifyDroppedTotal !== undefined) {
    head('stormbreaker_notify_dropped_total', 'counter', 'Notification events dropped because the queue was full.');
    line('stormbreaker_notify_dropped_total', {}, s.notifyDroppedTotal);
  }
  return out.join('\n') + '\n';
}

export class MetricsConfigError extends Error {
  readonly code = 'E_METRICS_HOST';
}

export { isLoopbackHost };

export interface MetricsServerOptions {
  host: string;
  port: number;
  snapshot: () => Snapshot;
  onError?: (err: Error) => void;
}

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  if (!isLoopbackHost(opts.host)) {
    throw new MetricsConfigError(
      `metrics: host ${JSON.stringify(opts.host)} is not a loopback address; the endpoint listens on 127.0.0.0/8 or ::1 only (scrape it locally or through a proxy)`,
    );
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new MetricsConfigError(`metrics: port ${opts.port} is not 0-65535`);
  }
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if ((req.method === 'GET' || req.method === 'HEAD') && path === '/metrics') {
      let body: string;
      try {
        body = renderMetrics(opts.snapshot());
      } catch (err) {
        opts.onError?.(err as Error);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('snapshot failed\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
  });
  // A slow or stuck scraper must not hold sockets forever.
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.on('error', (err) => opts.onError?.(err));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host === 'localhost' ? '127.0.0.1' : opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  return {
    port,
    host: opts.host,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The fields of the daemon's `status` answer (agent/daemon.ts status()) that metrics use. */
/** The parts of the status answer (control/protocol.ts) the metrics read: a StatusAnswer is one. */
export interface StatusLike {
  policy: Pick<StatusAnswer['policy'], 'hash' | 'dryRun'>;
  health: Pick<StatusAnswer['health'], 'ticks' | 'periodMs' | 'maxLagMs' | 'lastTickAgeMs'> & Partial<Pick<StatusAnswer['health'], 'journal' | 'stalls' | 'lateTicks'>>;
  ports: ReadonlyArray<Pick<PortStatusRow, 'port' | 'bridge' | 'role' | 'state' | 'rxPps' | 'txPps' | 'floodPps'>>;
  esxi?: ReadonlyArray<Pick<EsxHostStatus, 'host' | 'live' | 'samplesPerSec'> & { session: Pick<EsxHostStatus['session'], 'lastBlockAgeMs' | 'connects' | 'roundTripMs'> & Partial<Pick<EsxHostStatus['session'], 'fuse'>> }>;
}

export interface SnapshotExtras {
  build: Snapshot['build'];
  startTimeSeconds: number;
  reaction: Histogram;
  /** Trips per port since start (count `trip` journal events). */
  tripsTotal: ReadonlyMap<string, number>;
  /** Lateness of the last tick; default: how overdue the next tick is now (grows when the sampler is stuck). */
  lagMs?: number;
  notifyDroppedTotal?: number;
}

const STATE_SET: ReadonlySet<string> = new Set(PORT_STATES);

/** Pure: the daemon's status plus counters it keeps -> a Snapshot. */
export function snapshotFromStatus(st: StatusLike, x: SnapshotExtras): Snapshot {
  return {
    build: x.build,
    policy: { hash: st.policy.hash, dryRun: st.policy.dryRun },
    startTimeSeconds: x.startTimeSeconds,
    ports: st.ports.map((p) => ({
      port: p.port,
      bridge: p.bridge,
      role: p.role ?? null,
      // An unknown state (a newer breaker) shows as no state at all rather than a wrong one.
      state: (STATE_SET.has(p.state) ? p.state : 'unknown') as MetricsPortState,
      rxPps: p.rxPps,
      txPps: p.txPps,
      floodPps: p.floodPps,
      tripsTotal: x.tripsTotal.get(p.port) ?? 0,
    })),
    reaction: x.reaction,
    sampler: {
      lagMs: x.lagMs ?? Math.max(0, st.health.lastTickAgeMs - st.health.periodMs),
      maxLagMs: st.health.maxLagMs,
      periodMs: st.health.periodMs,
      ticksTotal: st.health.ticks,
    },
    ...(x.notifyDroppedTotal !== undefined ? { notifyDroppedTotal: x.notifyDroppedTotal } : {}),
    ...(st.health.journal ? { journal: { failing: st.health.journal.state === 'failing', pending: st.health.journal.pending, dropped: st.health.journal.dropped } } : {}),
    ...(st.health.stalls ? { stallsTotal: st.health.stalls.count } : {}),
    ...(st.health.lateTicks !== undefined ? { lateTicksTotal: st.health.lateTicks } : {}),
    ...(st.esxi
      ? { esxi: st.esxi.map((e) => ({ host: e.host, live: e.live, lastBlockAgeMs: e.session.lastBlockAgeMs, connects: e.session.connects, samplesPerSec: e.samplesPerSec, roundTripMs: e.session.roundTripMs, fuseArmed: e.session.fuse?.state === 'armed' })) }
      : {}),
  };
}
