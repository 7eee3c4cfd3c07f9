// A real Prometheus and a real Alertmanager (Debian's binaries) on the lab host's loopback, scraping
// the real agent during a real lab storm: the shipped rules (policies/alerts.example.yml,
// monitoring/fleet-rules.yml) are evaluated by Prometheus, not by us; the trip alert goes to firing,
// the one-host storm alert fires while the fleet alert does not, Alertmanager (with the shipped
// routing example) receives the alert, and every query of the Grafana dashboard runs on the
// scraped data. Scrape and evaluation every second, so this takes seconds.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { stormWithAgent } from '../../scripts/lab/scenario.js';
import { buildLab, type Lab } from '../../scripts/lab/topology.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { newStateDir, removeStateDirs, REPO, requireBuiltAgent, sleep, stopAgentAndLab, stormGuard, until } from '../helpers/agent-lab.js';
import { dashboardQueries } from '../helpers/promql.js';

const PREFIX = 'sbt-pm-';
const AGENT = '127.0.0.1:9781';
const PROM = '127.0.0.1:9790';
const AM = '127.0.0.1:9793';
const dir = mkdtempSync(join(tmpdir(), 'sbt-pm-'));
let lab: Lab;
let agent: AgentHandle | null = null;
const daemons: Array<{ name: string; child: ChildProcess; err: () => string }> = [];

function daemon(name: string, argv: string[]): void {
  const full = ns(lab.ns.host, argv);
  const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  daemons.push({ name, child, err: () => err });
}

/** GETs inside the lab host namespace (Prometheus and Alertmanager listen on its loopback only), one process for all. */
async function getAll(urls: readonly string[]): Promise<unknown[]> {
  const py = 'import sys,json,urllib.request;print(json.dumps([json.loads(urllib.request.urlopen(u,timeout=3).read()) for u in sys.argv[1:]]))';
  const { stdout } = await run(ns(lab.ns.host, ['python3', '-c', py, ...urls]), { timeoutMs: 15_000 });
  return JSON.parse(stdout) as unknown[];
}
const get = async (url: string): Promise<unknown> => (await getAll([url]))[0];

interface PromAlert { labels: Record<string, string>; state: string }
const promAlerts = async (): Promise<PromAlert[]> => ((await get(`http://${PROM}/api/v1/alerts`)) as { data: { alerts: PromAlert[] } }).data.alerts;
type QueryResult = { status: string; data: { result: unknown[] } };
const queryUrl = (q: string): string => `http://${PROM}/api/v1/query?query=${encodeURIComponent(q)}`;
const query = async (q: string): Promise<QueryResult> => (await get(queryUrl(q))) as QueryResult;

beforeAll(async () => {
  requireBuiltAgent();
  lab = await buildLab('kvm', PREFIX);
  agent = await startAgent(lab.ns.host, { policy: `${REPO}policies/lab.yaml`, stateDir: newStateDir('pm'), extraArgs: ['--metrics', AGENT] });
  writeFileSync(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: ['${REPO}policies/alerts.example.yml', '${REPO}monitoring/fleet-rules.yml']`,
    `alerting: { alertmanagers: [ { static_configs: [ { targets: ['${AM}'] } ] } ] }`,
    'scrape_configs:',
    `  - { job_name: stormbreaker, static_configs: [ { targets: ['${AGENT}'], labels: { site: lab } } ] }`,
    '',
  ].join('\n'));
  daemon('alertmanager', ['prometheus-alertmanager', `--config.file=${REPO}monitoring/alertmanager.example.yml`, `--storage.path=${join(dir, 'am')}`, `--web.listen-address=${AM}`, '--cluster.listen-address=']);
  daemon('prometheus', ['prometheus', `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=${PROM}`]);
  // Two scrapes of the quiet agent first, so the trip is an increase from 0 that Prometheus saw.
  const scraped = await until(async () => {
    const r = await query('count_over_time(stormbreaker_trips_total{port="up1"}[1m])').catch(() => null);
    return Number((r?.data.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0) >= 2;
  }, 20_000, 250);
  if (!scraped) throw new Error(`Prometheus did not scrape the agent: ${daemons.map((d) => `${d.name}: ${d.err().slice(-800)}`).join('\n')}`);
}, 40_000);

afterAll(async () => {
  for (const d of daemons) d.child.kill('SIGTERM');
  await Promise.all(daemons.map((d) => new Promise((r) => (d.child.exitCode !== null ? r(null) : d.child.once('close', r)))));
  await stopAgentAndLab(agent, PREFIX);
  removeStateDirs();
  rmSync(dir, { recursive: true, force: true });
});

describe('Prometheus and Alertmanager watching the agent through a lab storm', () => {
  it('Prometheus fires StormbreakerTrip and StormbreakerHostStorm (not the fleet alert); Alertmanager receives the trip', async () => {
    expect(await promAlerts()).toEqual([]);
    // The guard only ends a run that hangs (stormWithAgent opens a loop left closed itself). Armed
    // before the observer's and the sender's starts, at 3 s it left ~1 s of slack past the 1 s
    // observation on a loaded machine, and firing first it downs up2 too: 6 s, stormGuard's default.
    const cancel = stormGuard(lab);
    const t0 = Date.now();
    try {
      // observe 1 s: on a loaded machine the agent may need more than the usual 300 ms.
      const r = await stormWithAgent(lab, agent!, 1000);
      expect(r.downPorts, JSON.stringify(agent!.logs.filter((l) => /trip|verdict|lag|escalate/.test(String(l.msg))).slice(-10))).toEqual(['up1']);
    } finally {
      cancel();
    }
    const firing = (name: string) => async () => (await promAlerts()).some((a) => a.labels.alertname === name && a.state === 'firing');
    expect(await until(firing('StormbreakerTrip'), 15_000, 250)).toBe(true);
    const tFiring = Date.now() - t0;
    const trip = (await promAlerts()).find((a) => a.labels.alertname === 'StormbreakerTrip')!;
    expect(trip.labels).toMatchObject({ port: 'up1', severity: 'critical', site: 'lab', instance: AGENT });
    // One host of site "lab" tripped: the local-cause alert, never the upstream one.
    expect(await until(firing('StormbreakerHostStorm'), 15_000, 250)).toBe(true);
    expect((await promAlerts()).map((a) => a.labels.alertname)).not.toContain('StormbreakerFleetStorm');

    type AmAlert = { labels: Record<string, string>; status: { state: string }; receivers: Array<{ name: string }> };
    let am: AmAlert[] = [];
    expect(await until(async () => {
      am = (await get(`http://${AM}/api/v2/alerts`)) as AmAlert[];
      return am.some((a) => a.labels.alertname === 'StormbreakerTrip' && a.labels.port === 'up1');
    }, 15_000, 250)).toBe(true);
    const got = am.find((a) => a.labels.alertname === 'StormbreakerTrip')!;
    expect(got.status.state).toBe('active');
    // Routed as monitoring/alertmanager.example.yml says: a per-port trip goes to chat.
    expect(got.receivers.map((r) => r.name)).toEqual(['hypervisor-chat']);
    console.log(`[prometheus] storm to StormbreakerTrip firing in Prometheus: ${tFiring} ms; Alertmanager has ${am.map((a) => a.labels.alertname).join(',')}`);
  }, 60_000);

  it('every query of the Grafana dashboard runs on the scraped data; the storm panels have series', async () => {
    await sleep(1100); // one more scrape after the trip
    // Grafana's variables as Grafana would expand them for "All" hosts.
    const qs = dashboardQueries(`${REPO}monitoring/grafana-dashboard.json`).map((q) => ({ ...q, expr: q.expr.replace(/\$__rate_interval/g, '1m').replace(/\$instance/g, '.*') }));
    const results = (await getAll(qs.map((q) => queryUrl(q.expr)))) as QueryResult[];
    const empty: string[] = [];
    qs.forEach((q, i) => {
      expect(results[i]!.status, `${q.where}: ${q.expr}`).toBe('success');
      if (results[i]!.data.result.length === 0) empty.push(`${q.where}: ${q.expr}`);
    });
    // Series that must exist after a storm on a KVM lab (ESXi, fleet-of-many and dropped-notify
    // panels are legitimately empty here), at this instant: an idle run once found no port's
    // rates in the latest scrape, systematically (a wake from inside a tick had started a second
    // sampling chain whose ticks came 0.1 ms after the first's, too soon to give a rate).
    for (const must of ['stormbreaker_port_flood_pps', 'stormbreaker_port_rx_pps', 'stormbreaker_trips_total', 'stormbreaker_reaction_seconds_bucket', 'stormbreaker_sampler_lag_seconds', 'stormbreaker_port_state']) {
      expect(empty.filter((e) => e.includes(must)), must).toEqual([]);
    }
    console.log(`[prometheus] dashboard queries with no data in this lab: ${empty.length}\n  ${empty.join('\n  ')}`);
  }, 60_000);

  it('after the storm the agent samples at its idle period again, with the rates of every port in every scrape', async () => {
    // The storm's active hold (2 s) is long over: one tick per idleMs (100 ms), not two.
    type Health = { health: { ticksPerSec: number }; ports: Array<{ port: string; rxPps: number | null }> };
    await sleep(1100); // ticksPerSec is updated once a second
    const h = (await agent!.ask('status')) as Health;
    expect(h.health.ticksPerSec).toBeLessThan(15);
    const py = 'import urllib.request,time\nfor i in range(20):\n t=urllib.request.urlopen("http://' + AGENT + '/metrics",timeout=3).read().decode()\n print(sum(1 for l in t.split("\\n") if l.startswith("stormbreaker_port_rx_pps{")))\n time.sleep(0.037)';
    const counts = (await run(ns(lab.ns.host, ['python3', '-c', py]), { timeoutMs: 15_000 })).stdout.trim().split('\n').map(Number);
    expect(counts, 'ports with a rate in each of 20 scrapes').toEqual(Array(20).fill(h.ports.length));
  }, 30_000);
});
