// The monitoring artefacts an operator imports (Grafana dashboard, alert and fleet rules,
// Alertmanager routing) against the agent's real exposition and the reference tools: every query
// names only series the agent exports (or the fleet rules record), promtool checks and unit-tests
// the rules, amtool checks the routing.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createHistogram, renderMetrics } from '../../agent/notify/metrics.js';
import { dashboardQueries, exportedNames, promqlMetricNames, promTool } from '../helpers/promql.js';

// Every optional family present (ESXi hosts, the notify queue), so the list is complete.
const text = renderMetrics({
  build: { version: '0.1.0', node: 'v20' },
  policy: { hash: 'h', dryRun: false },
  startTimeSeconds: 1,
  ports: [{ port: 'up1', bridge: 'br0', role: 'uplink', state: 'tripped', rxPps: 1, txPps: 1, floodPps: 1, tripsTotal: 1 }],
  reaction: createHistogram(),
  sampler: { lagMs: 0, maxLagMs: 0, periodMs: 1, ticksTotal: 1 },
  notifyDroppedTotal: 0,
  esxi: [{ host: 'esx1', live: true, lastBlockAgeMs: 1, connects: 1, samplesPerSec: 1, roundTripMs: 1 }],
});
const EXPORTED = exportedNames(text);

interface RuleFile { groups: Array<{ rules: Array<{ record?: string; alert?: string; expr: string }> }> }
const rules = (f: string): RuleFile => parse(readFileSync(f, 'utf8')) as RuleFile;
const RECORDED = new Set(rules('monitoring/fleet-rules.yml').groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));
// `up` is Prometheus's own per-target series.
const KNOWN = new Set([...EXPORTED, ...RECORDED, 'up']);

const dashboard = 'monitoring/grafana-dashboard.json';

describe('promqlMetricNames', () => {
  it('finds the series and nothing else', () => {
    expect(promqlMetricNames('sum by (instance, port) (increase(stormbreaker_trips_total{instance=~"$instance"}[$__rate_interval]))')).toEqual(['stormbreaker_trips_total']);
    expect(promqlMetricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket[1h]))) / b offset 5m')).toEqual(['a_bucket', 'b']);
    expect(promqlMetricNames('x > 0 unless on (site) (site:y:count5m >= 3)')).toEqual(['site:y:count5m', 'x']);
    expect(promqlMetricNames('time() - stormbreaker_nope')).toEqual(['stormbreaker_nope']);
  });
});

describe('monitoring/grafana-dashboard.json', () => {
  const queries = dashboardQueries(dashboard);
  it('covers per-port rates and state, trips, reaction, sampler lag and ESXi health', () => {
    const names = new Set(queries.flatMap((q) => promqlMetricNames(q.expr)));
    for (const n of ['stormbreaker_port_flood_pps', 'stormbreaker_port_rx_pps', 'stormbreaker_port_tx_pps', 'stormbreaker_port_state', 'stormbreaker_trips_total',
      'stormbreaker_reaction_seconds_bucket', 'stormbreaker_sampler_lag_seconds', 'stormbreaker_esxi_up']) expect(names, n).toContain(n);
    expect(queries.length).toBeGreaterThan(20);
  });
  it('names only series the agent exports (or the fleet rules record)', () => {
    const unknown = queries.flatMap((q) => promqlMetricNames(q.expr).filter((n) => !KNOWN.has(n)).map((n) => `${q.where}: ${n}`));
    expect(unknown).toEqual([]);
  });
});

const promtool = promTool('PROMTOOL', 'promtool');
const amtool = promTool('AMTOOL', 'amtool');

describe('alert and recording rules', () => {
  for (const f of ['policies/alerts.example.yml', 'monitoring/fleet-rules.yml']) {
    it(`${f} names only series the agent exports (or the fleet rules record)`, () => {
      const unknown = rules(f).groups.flatMap((g) => g.rules.flatMap((r) => promqlMetricNames(r.expr).filter((n) => !KNOWN.has(n)).map((n) => `${r.alert ?? r.record}: ${n}`)));
      expect(unknown).toEqual([]);
    });
  }
  it.skipIf(!promtool.ok)('promtool checks both rule files and passes the fleet rules unit tests', () => {
    expect(execFileSync(promtool.path, ['check', 'rules', 'policies/alerts.example.yml', 'monitoring/fleet-rules.yml'], { encoding: 'utf8' })).toMatch(/SUCCESS: 5 rules found[\s\S]*SUCCESS: 8 rules found/);
    // Fleet storm vs one host vs agents down, on synthetic fleets (monitoring/fleet-rules.test.yml).
    const r = spawnSync(promtool.path, ['test', 'rules', 'monitoring/fleet-rules.test.yml'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe('monitoring/alertmanager.example.yml', () => {
  const cfg = 'monitoring/alertmanager.example.yml';
  it.skipIf(!amtool.ok)('passes amtool check-config', () => {
    expect(execFileSync(amtool.path, ['check-config', cfg], { encoding: 'utf8' })).toMatch(/SUCCESS[\s\S]*2 inhibit rules/);
  });
  // The receiver each alert reaches: upstream storms page the network team once per site,
  // a one-host storm pages the hypervisor team, per-port trips go to chat.
  const routes: Array<[string[], string]> = [
    [['alertname=StormbreakerFleetStorm', 'site=a'], 'network-pager'],
    [['alertname=StormbreakerHostStorm', 'site=a', 'instance=h1'], 'hypervisor-pager'],
    [['alertname=StormbreakerAgentDown', 'instance=h1'], 'hypervisor-pager'],
    [['alertname=StormbreakerFleetAgentsDown', 'site=a'], 'hypervisor-pager'],
    [['alertname=StormbreakerTrip', 'site=a', 'port=up1'], 'hypervisor-chat'],
  ];
  for (const [labels, receiver] of routes) {
    it.skipIf(!amtool.ok)(`routes ${labels[0]} to ${receiver}`, () => {
      const r = spawnSync(amtool.path, ['config', 'routes', 'test', `--config.file=${cfg}`, `--verify.receivers=${receiver}`, ...labels], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    });
  }
  it('inhibits the per-host and per-port storm alerts of a site while its fleet alert fires', () => {
    const am = parse(readFileSync(cfg, 'utf8')) as { inhibit_rules: Array<{ source_matchers: string[]; target_matchers: string[]; equal: string[] }> };
    const r = am.inhibit_rules.find((i) => i.source_matchers.includes('alertname="StormbreakerFleetStorm"'));
    expect(r?.equal).toEqual(['site']);
    expect(r?.target_matchers.join()).toMatch(/StormbreakerHostStorm\|StormbreakerTrip/);
  });
});
