import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { promTool } from '../helpers/promql.js';
import { createHistogram, isLoopbackHost, observe, renderMetrics, startMetricsServer, type MetricsServer, type Snapshot } from '../../agent/notify/metrics.js';

function snapshot(): Snapshot {
  const reaction = createHistogram([1, 5, 10]);
  for (const v of [0.8, 0.9, 3, 12]) observe(reaction, v);
  return {
    build: { version: '0.1.0', node: 'v20.20.2' },
    policy: { hash: 'abc123def456', dryRun: false },
    startTimeSeconds: 1764064000,
    ports: [
      { port: 'up1', bridge: 'br0', role: 'uplink', state: 'tripped', rxPps: 131000, txPps: 130500, floodPps: 130900, tripsTotal: 1 },
      { port: 'vm"1', bridge: null, role: 'vm', state: 'forwarding', rxPps: null, txPps: null, floodPps: null, tripsTotal: 0 },
    ],
    reaction,
    sampler: { lagMs: 0.4, maxLagMs: 7.5, periodMs: 100, ticksTotal: 12345 },
    notifyDroppedTotal: 2,
  };
}

// promtool (Debian `prometheus`, installed by scripts/setup.sh --with-test-tools) is the reference
// parser; scripts/test.sh sets PROMTOOL so the full suite fails rather than skips without it.
const { path: promtool, ok: havePromtool } = promTool('PROMTOOL', 'promtool');

describe('renderMetrics', () => {
  const text = renderMetrics(snapshot());
  const lines = text.trimEnd().split('\n');

  it('writes only comment lines or `name{labels} value` samples', () => {
    for (const l of lines) expect(l).toMatch(/^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|\+Inf))$/);
  });

  it('has per-port rates, state gauge, trips counter, policy and build info', () => {
    expect(lines).toContain('stormbreaker_port_rx_pps{port="up1",bridge="br0",role="uplink"} 131000');
    expect(lines).toContain('stormbreaker_port_flood_pps{port="up1",bridge="br0",role="uplink"} 130900');
    expect(lines).toContain('stormbreaker_port_tx_pps{port="up1",bridge="br0",role="uplink"} 130500');
    expect(lines).toContain('stormbreaker_port_state{port="up1",state="tripped"} 1');
    expect(lines).toContain('stormbreaker_port_state{port="up1",state="forwarding"} 0');
    expect(lines).toContain('stormbreaker_trips_total{port="up1"} 1');
    expect(lines).toContain('stormbreaker_policy_info{hash="abc123def456",dry_run="false"} 1');
    expect(lines).toContain('stormbreaker_build_info{version="0.1.0",node="v20.20.2"} 1');
    expect(lines).toContain('stormbreaker_sampler_lag_seconds 0.0004');
    expect(lines).toContain('stormbreaker_sampler_max_lag_seconds 0.0075');
    expect(lines).toContain('stormbreaker_notify_dropped_total 2');
  });

  it('leaves a missing rate absent instead of reporting 0, and escapes label values', () => {
    expect(text).not.toMatch(/stormbreaker_port_rx_pps\{port="vm/);
    expect(lines).toContain('stormbreaker_port_state{port="vm\\"1",state="forwarding"} 1');
  });

  it('renders cumulative histogram buckets ending in +Inf = count', () => {
    // observed in ms, exposed in seconds (Prometheus base units)
    expect(lines).toContain('stormbreaker_reaction_seconds_bucket{le="0.001"} 2');
    expect(lines).toContain('stormbreaker_reaction_seconds_bucket{le="0.005"} 3');
    expect(lines).toContain('stormbreaker_reaction_seconds_bucket{le="0.01"} 3');
    expect(lines).toContain('stormbreaker_reaction_seconds_bucket{le="+Inf"} 4');
    expect(lines).toContain('stormbreaker_reaction_seconds_count 4');
    expect(lines).toContain('stormbreaker_reaction_seconds_sum 0.0167');
  });

  it.skipIf(!havePromtool)('passes promtool check metrics (reference parser)', () => {
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text.replace(/vm"1/g, 'vm1').replace(/vm\\"1/g, 'vm1') });
    // promtool exits non-zero on a parse error and on lint findings (e.g. `_ms` instead of base units).
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe('policies/alerts.example.yml', () => {
  it.skipIf(!havePromtool)('passes promtool check rules', () => {
    const out = execFileSync(promtool, ['check', 'rules', 'policies/alerts.example.yml'], { encoding: 'utf8' });
    expect(out).toMatch(/SUCCESS: 5 rules found/);
  });
  it('names the five alerts', () => {
    const y = readFileSync('policies/alerts.example.yml', 'utf8');
    for (const a of ['StormbreakerTrip', 'StormbreakerSamplerLagHigh', 'StormbreakerPortTrippedLong', 'StormbreakerAgentDown', 'StormbreakerEsxiNotWatched']) expect(y).toContain(`alert: ${a}`);
  });
});

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startMetricsServer', () => {
  let server: MetricsServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  it('serves GET /metrics over HTTP with a fresh snapshot per scrape, 404 elsewhere', async () => {
    let scrapes = 0;
    server = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      snapshot: () => {
        scrapes++;
        const s = snapshot();
        return { ...s, sampler: { ...s.sampler, ticksTotal: scrapes } };
      },
    });
    const a = await get(server.port, '/metrics');
    expect(a.status).toBe(200);
    expect(a.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(a.body).toContain('stormbreaker_sampler_ticks_total 1\n');
    const b = await get(server.port, '/metrics?x=1');
    expect(b.body).toContain('stormbreaker_sampler_ticks_total 2\n');
    expect((await get(server.port, '/')).status).toBe(404);
    expect((await get(server.port, '/metrics/x')).status).toBe(404);
    expect((await get(server.port, '/metrics', 'POST')).status).toBe(404);
  });

  it('answers 500, not a crash, when the snapshot throws', async () => {
    const errors: string[] = [];
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, snapshot: () => { throw new Error('boom'); }, onError: (e) => errors.push(e.message) });
    expect((await get(server.port, '/metrics')).status).toBe(500);
    expect(errors).toEqual(['boom']);
  });

  it('refuses non-loopback hosts with a clear error', async () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.org', '']) {
      await expect(startMetricsServer({ host, port: 0, snapshot })).rejects.toThrow(/not a loopback address/);
    }
    expect(isLoopbackHost('127.0.0.53')).toBe(true);
    expect(isLoopbackHost('::1')).toBe(true);
    expect(isLoopbackHost('localhost')).toBe(true);
  });
});

describe('snapshotFromStatus', () => {
  it('maps the daemon status answer and derives lag from the age of the last tick', async () => {
    const { snapshotFromStatus } = await import('../../agent/notify/metrics.js');
    const reaction = createHistogram();
    observe(reaction, 0.9);
    const s = snapshotFromStatus(
      {
        policy: { hash: 'h1', dryRun: true },
        health: { ticks: 10, periodMs: 100, maxLagMs: 3, lastTickAgeMs: 350 },
        ports: [{ port: 'up1', bridge: 'br0', role: 'uplink', state: 'tripped', rxPps: 5, txPps: 6, floodPps: null }],
      },
      { build: { version: '0.1.0', node: 'v20' }, startTimeSeconds: 1, reaction, tripsTotal: new Map([['up1', 2]]) },
    );
    expect(s.sampler).toEqual({ lagMs: 250, maxLagMs: 3, periodMs: 100, ticksTotal: 10 });
    expect(s.ports[0]).toEqual({ port: 'up1', bridge: 'br0', role: 'uplink', state: 'tripped', rxPps: 5, txPps: 6, floodPps: null, tripsTotal: 2 });
    const text = renderMetrics(s);
    expect(text).toContain('stormbreaker_trips_total{port="up1"} 2\n');
    expect(text).toContain('stormbreaker_sampler_lag_seconds 0.25\n');
    expect(text).toContain('stormbreaker_reaction_seconds_bucket{le="0.001"} 1\n');
  });

  it('shows each ESXi host: up only while counters arrive, with sample age and rate', async () => {
    const { snapshotFromStatus } = await import('../../agent/notify/metrics.js');
    const s = snapshotFromStatus(
      {
        policy: { hash: 'h1', dryRun: false },
        health: { ticks: 1, periodMs: 100, maxLagMs: 0, lastTickAgeMs: 1 },
        ports: [],
        esxi: [
          { host: 'esx1', live: true, samplesPerSec: 5.2, session: { lastBlockAgeMs: 180, connects: 1, roundTripMs: 160 } },
          { host: 'esx2', live: false, samplesPerSec: 0, session: { lastBlockAgeMs: null, connects: 4, roundTripMs: null } },
        ],
      },
      { build: { version: '0.1.0', node: 'v20' }, startTimeSeconds: 1, reaction: createHistogram(), tripsTotal: new Map() },
    );
    const text = renderMetrics(s);
    expect(text).toContain('stormbreaker_esxi_up{host="esx1"} 1\n');
    expect(text).toContain('stormbreaker_esxi_up{host="esx2"} 0\n');
    expect(text).toContain('stormbreaker_esxi_sample_age_seconds{host="esx1"} 0.18\n');
    expect(text).toContain('stormbreaker_esxi_sample_age_seconds{host="esx2"} NaN\n');
    expect(text).toContain('stormbreaker_esxi_samples_per_second{host="esx1"} 5.2\n');
    expect(text).toContain('stormbreaker_esxi_connects_total{host="esx2"} 4\n');
    expect(text).toContain('# TYPE stormbreaker_esxi_up gauge\n');
  });
});
