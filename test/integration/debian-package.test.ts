// The Debian package end to end, with real parts only: scripts/package-deb.sh builds the .deb;
// mmdebstrap makes a fresh Debian root and apt installs the package there with its dependencies
// (Debian's own nodejs >= 20); lintian judges the .deb; then systemd-nspawn boots that root with
// systemd as PID 1 (its own network namespace) and the packaged unit is checked under it: READY,
// logs in journald, only its three capabilities, `systemctl reload`, the watchdog restarting a
// SIGSTOPped agent (the port it tripped stays down), and apt remove / purge / a fresh install
// that enables the service without starting it. A kvm lab is built around the container's own
// network namespace (its ports are the container's, as a host's are the agent's): one broadcast
// frame starts a real loop storm and the packaged agent, under the unit's hardening, shuts up1.
// The storm is bounded: a guard downs both loop members 6 s after the frame; the container is
// stopped and the lab torn down in afterAll.
//
// Suite: trixie, because bookworm's own nodejs is 18 and the package depends on nodejs (>= 20).
// Nothing is cached: the root is downloaded on every run (the figure is printed).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../scripts/lab/exec.js';
import { readLinkStats } from '../../scripts/lab/counters.js';
import { inject } from '../../scripts/lab/traffic.js';
import { buildLab, listNamespaces, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import { isUp, REPO, requireBuiltAgent, sleep, stormGuard, until } from '../helpers/agent-lab.js';
import { bootContainer, mmdebstrap, type Container } from '../helpers/debian-root.js';

const PREFIX = 'sbt-dp-';
const SUITE = process.env.STORMBREAKER_DEB_SUITE ?? 'trixie';
const dir = mkdtempSync('/var/tmp/sbt-deb-');
const root = join(dir, 'root');
let deb = '';
let box: Container | null = null;
let lab: Lab | null = null;
const timings: Record<string, number> = {};
/** The uplink the storm test saw the agent cut (the watchdog test checks it stays down). */
let cut: string | null = null;

const inRoot = (p: string): string => join(root, p);
const chroot = (argv: readonly string[]) => run(['chroot', root, ...argv], { timeoutMs: 60_000 });
/** The agent's journal inside the root. */
const journalEvents = (): Array<Record<string, unknown>> =>
  existsSync(inRoot('var/lib/stormbreaker/journal.jsonl'))
    ? readFileSync(inRoot('var/lib/stormbreaker/journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    : [];
/** The unit's journald records (JSON), parsed. */
async function unitJournal(): Promise<Array<{ MESSAGE: string; PRIORITY: string }>> {
  // --all: journalctl prints a field over 4096 bytes as null without it (a trip's line with its evidence is longer).
  const r = await box!.exec(['journalctl', '-u', 'stormbreaker.service', '-o', 'json', '--all', '--no-pager', '--output-fields=MESSAGE,PRIORITY']);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { MESSAGE: string; PRIORITY: string });
}
const labPolicy = readFileSync(join(REPO, 'policies/lab.yaml'), 'utf8');

beforeAll(async () => {
  requireBuiltAgent();
  let t = Date.now();
  deb = (await run(['bash', join(REPO, 'scripts/package-deb.sh'), '--out', dir], { timeoutMs: 300_000 })).stdout.trim().split('\n').pop()!;
  timings.packageMs = Date.now() - t;
  t = Date.now();
  await mmdebstrap(root, SUITE, [deb]);
  timings.rootWithPackageMs = Date.now() - t;
  console.log(`[debian-package] package-deb.sh ${timings.packageMs} ms; mmdebstrap ${SUITE} minbase + systemd + the .deb via apt ${timings.rootWithPackageMs} ms (nothing cached)`);
}, 900_000);

afterAll(async () => {
  try {
    await box?.stop();
  } finally {
    // After the container: its namespace is the lab's host side (teardown ends what runs there).
    await teardownLab(PREFIX);
    rmSync(dir, { recursive: true, force: true });
  }
  expect(await listNamespaces(PREFIX)).toEqual([]);
}, 90_000);

describe('the .deb in a fresh Debian root', () => {
  it('apt installed it with Debian\'s nodejs >= 20: program, launcher, unit, conffile, state dir, enabled', async () => {
    expect(basename(deb)).toMatch(/^stormbreaker_\d+\.\d+\.\d+_[a-z0-9]+\.deb$/);
    expect((await chroot(['dpkg-query', '-W', '-f', '${Status} ${Version}', 'stormbreaker'])).stdout).toMatch(/^install ok installed \d/);
    const node = (await chroot(['dpkg-query', '-W', '-f', '${Version}', 'nodejs'])).stdout;
    expect(Number(node.split('.')[0]!.replace(/^\d+:/, ''))).toBeGreaterThanOrEqual(20);
    for (const f of ['usr/bin/stormbreaker', 'usr/lib/stormbreaker/dist/agent/cli.js', 'usr/lib/stormbreaker/build/Release/packet_stats.node', 'lib/systemd/system/stormbreaker.service', 'usr/share/man/man8/stormbreaker.8.gz', 'usr/share/stormbreaker/monitoring/grafana-dashboard.json']) {
      expect(existsSync(inRoot(f)), f).toBe(true);
    }
    expect((await chroot(['dpkg-query', '-W', '-f', '${Conffiles}', 'stormbreaker'])).stdout).toMatch(/\/etc\/stormbreaker\/policy\.yaml [0-9a-f]{32}/);
    expect(statSync(inRoot('var/lib/stormbreaker')).mode & 0o777).toBe(0o750);
    expect(lstatSync(inRoot('etc/systemd/system/multi-user.target.wants/stormbreaker.service')).isSymbolicLink()).toBe(true);
    // The native addon loads in the target's node (N-API), and is this architecture's.
    expect((await chroot(['node', '-e', 'require("/usr/lib/stormbreaker/build/Release/packet_stats.node"); console.log("ok")'])).stdout.trim()).toBe('ok');
  });

  it('`stormbreaker --help` and `policy check` run from PATH', async () => {
    expect((await chroot(['stormbreaker', '--help'])).stdout).toMatch(/Usage: stormbreaker/);
    expect((await chroot(['stormbreaker', 'policy', 'check', '/etc/stormbreaker'])).stdout).toMatch(/\/etc\/stormbreaker: ok/);
  });

  it('lintian finds no error and no warning', () => {
    const out = execFileSync('lintian', ['--tag-display-limit', '0', deb], { encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out.split('\n').filter((l) => /^[EW]: /.test(l))).toEqual([]);
  }, 150_000);
});

describe('the unit under a real systemd (PID 1 of a container)', () => {
  beforeAll(async () => {
    // The operator adapts the policy (the conffile) before the first start.
    writeFileSync(inRoot('etc/stormbreaker/policy.yaml'), labPolicy);
    // Not /tmp: the booted system mounts a tmpfs over it.
    copyFileSync(deb, inRoot('root/stormbreaker.deb'));
    const t = Date.now();
    box = await bootContainer(root);
    timings.bootMs = Date.now() - t;
    console.log(`[debian-package] systemd-nspawn -b to a booted systemd: ${timings.bootMs} ms`);
    // The lab's host side is the container's network namespace: the agent there (started at
    // boot, before these ports existed) picks them up from the kernel's link notifications.
    lab = await buildLab('kvm', PREFIX, { hostNetnsOfPid: box.pid1 });
  }, 120_000);

  it('starts at boot (enabled), sends READY, and logs to journald with priorities', async () => {
    // Type=notify: "active" only after READY=1.
    expect(await until(async () => (await box!.show('stormbreaker.service', ['ActiveState'])).ActiveState === 'active', 20_000, 200)).toBe(true);
    const s = await box!.show('stormbreaker.service', ['SubState', 'StatusText', 'NRestarts', 'Type', 'WatchdogUSec']);
    expect(s).toMatchObject({ SubState: 'running', NRestarts: '0', Type: 'notify', WatchdogUSec: '5s' });
    expect(s.StatusText).toMatch(/^watching \d+ ports, policy [0-9a-f]+/);
    const j = await unitJournal();
    const info = j.find((l) => l.MESSAGE.startsWith('{') && (JSON.parse(l.MESSAGE) as { level: number }).level === 30);
    expect(info?.PRIORITY).toBe('6');
    // The `<N>` prefix is consumed by journald, never left in the message.
    expect(j.filter((l) => /^<\d>/.test(l.MESSAGE))).toEqual([]);
  }, 30_000);

  it('runs under the unit\'s hardening holding only its three capabilities', async () => {
    const pid = (await box!.show('stormbreaker.service', ['MainPID'])).MainPID!;
    const status = (await box!.exec(['cat', `/proc/${pid}/status`])).stdout;
    const caps = status.split('\n').filter((l) => /^(Cap|NoNewPrivs)/.test(l)).join('; ');
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_NICE (23), nothing else.
    expect(status, caps).toMatch(/^CapEff:\s+0000000000803000$/m);
    expect(status, caps).toMatch(/^CapBnd:\s+0000000000803000$/m);
    expect(status, caps).toMatch(/^NoNewPrivs:\s+1$/m);
  }, 30_000);

  it('breaks a real loop storm under the hardening: the agent shuts one uplink, journals it, the storm ends', async () => {
    const watched = async (): Promise<string[]> => {
      const st = await box!.tryExec(['stormbreaker', 'status', '--json']);
      if (st.code !== 0) return [];
      return (JSON.parse(st.stdout) as { ports: Array<{ port: string; bridge: string | null }> }).ports.filter((p) => p.bridge === 'br0').map((p) => p.port).sort();
    };
    let ports: string[] = [];
    expect(await until(async () => (ports = await watched()).length === 4, 10_000, 200), `watched ${ports.join(',')}`).toBe(true);
    expect(ports).toEqual(['mgmt0', 'up1', 'up2', 'vm1']);
    const cancel = stormGuard(lab!, 6000);
    let downMs = -1;
    let frameNs = 0;
    // Which uplink: up1 by shut order, or the one that joined br0 last when both joined after the
    // agent's first look (the container's agent starts at boot, before the lab's ports may be
    // there: it cuts the port whose join closed the loop, see breaker candidates()).
    const downOne = async (): Promise<string | null> => {
      for (const p of ['up1', 'up2']) if (!(await isUp(lab!.ns.host, p))) return p;
      return null;
    };
    try {
      const t = Date.now();
      frameNs = (await inject(lab!, 'vm1', 'eth0', { count: 1, kind: 'broadcast' })).tFirstNs;
      const down = await until(async () => (cut = await downOne()) !== null, 5000, 20);
      downMs = Date.now() - t;
      expect(down, `up1 and up2 still up; unit said ${(await box!.exec(['journalctl', '-u', 'stormbreaker.service', '--no-pager', '-n', '15', '-o', 'cat'])).stdout.slice(-2000)}`).toBe(true);
    } finally {
      cancel();
    }
    // Exactly one member shut: the other still up, and the loop quiet (no frame crosses it).
    const other = cut === 'up1' ? 'up2' : 'up1';
    expect(await isUp(lab!.ns.host, other)).toBe(true);
    await sleep(200);
    const a = (await readLinkStats(lab!.ns.host)).get(other)!;
    await sleep(500);
    const b = (await readLinkStats(lab!.ns.host)).get(other)!;
    expect(b.rxPackets - a.rxPackets + (b.txPackets - a.txPackets)).toBe(0);
    // The journal inside the root and journald hold the trip; the link-down succeeded.
    let trip: Record<string, unknown> | undefined;
    expect(await until(() => (trip = journalEvents().find((e) => e.event === 'trip' && e.port === cut)) !== undefined, 3000)).toBe(true);
    const action = trip!.action as { ok: boolean; via: string; durationMs: number };
    expect(action.ok).toBe(true);
    // One clock (CLOCK_MONOTONIC, shared with the container): the frame left vm1, the agent decided.
    const decidedMs = ((trip!.evidence as { tNs: number }).tNs - frameNs) / 1e6;
    expect((await unitJournal()).some((l) => l.MESSAGE.includes('"event":"trip"') && l.MESSAGE.includes(`"port":"${cut}"`))).toBe(true);
    console.log(`[debian-package] storm in the container: ${cut} cut (${String(trip!.reason)}); verdict ${decidedMs.toFixed(1)} ms after the frame left vm1; link-down via ${action.via} in ${action.durationMs.toFixed(1)} ms; ${cut} seen down by the test ${downMs} ms after it started the sender`);
  }, 40_000);

  it('`systemctl reload`: a broken policy is refused (in journald), a good one is loaded, same process', async () => {
    const before = await box!.show('stormbreaker.service', ['MainPID', 'StatusText']);
    writeFileSync(inRoot('etc/stormbreaker/policy.yaml'), 'version: 2\n');
    await box!.exec(['systemctl', 'reload', 'stormbreaker.service']);
    expect(await until(async () => (await unitJournal()).some((l) => l.MESSAGE.includes('"msg":"reload-failed"')), 10_000, 200)).toBe(true);
    writeFileSync(inRoot('etc/stormbreaker/policy.yaml'), `${labPolicy}\n# reloaded by the systemd test\n`);
    await box!.exec(['systemctl', 'reload', 'stormbreaker.service']);
    const want = (await box!.exec(['stormbreaker', 'policy', 'check', '/etc/stormbreaker'])).stdout.match(/\(([0-9a-f]+)\)/)![1]!;
    let hash = '';
    expect(await until(async () => {
      const st = await box!.tryExec(['stormbreaker', 'status', '--json']);
      hash = st.code === 0 ? String((JSON.parse(st.stdout) as { policy: { hash: string } }).policy.hash) : '';
      return hash.startsWith(want) || want.startsWith(hash);
    }, 10_000, 200), `status hash ${hash}, policy check ${want}`).toBe(true);
    expect((await box!.show('stormbreaker.service', ['MainPID'])).MainPID).toBe(before.MainPID);
  }, 40_000);

  it('a SIGSTOPped agent misses its watchdog and is restarted; the tripped port stays down', async () => {
    const pid = (await box!.show('stormbreaker.service', ['MainPID'])).MainPID!;
    const t = Date.now();
    await box!.exec(['kill', '-STOP', pid]);
    const restarted = await until(async () => {
      const s = await box!.show('stormbreaker.service', ['MainPID', 'ActiveState', 'NRestarts']);
      return s.MainPID !== pid && s.MainPID !== '0' && s.ActiveState === 'active' && Number(s.NRestarts) >= 1;
    }, 30_000, 250);
    timings.watchdogRestartMs = Date.now() - t;
    expect(restarted, box!.console().slice(-1500)).toBe(true);
    console.log(`[debian-package] SIGSTOP to active again after the watchdog restart: ${timings.watchdogRestartMs} ms (WatchdogSec=5)`);
    expect((await box!.exec(['journalctl', '-u', 'stormbreaker.service', '--no-pager'])).stdout).toMatch(/[Ww]atchdog timeout/);
    // The restarted agent replayed its journal: the port it tripped stays down.
    expect(cut).not.toBeNull();
    expect(await isUp(lab!.ns.host, cut!)).toBe(false);
  }, 45_000);

  it('apt remove keeps policies and journal; purge removes what the package made; a new install is enabled, not started', async () => {
    await box!.exec(['apt-get', 'remove', '-y', '-q', 'stormbreaker'], 120_000);
    expect((await box!.show('stormbreaker.service', ['ActiveState'])).ActiveState).not.toBe('active');
    expect(existsSync(inRoot('usr/bin/stormbreaker'))).toBe(false);
    expect(readFileSync(inRoot('etc/stormbreaker/policy.yaml'), 'utf8')).toContain('reloaded by the systemd test');
    expect(journalEvents().filter((e) => e.event === 'start').length).toBeGreaterThanOrEqual(2);

    await box!.exec(['apt-get', 'purge', '-y', '-q', 'stormbreaker'], 120_000);
    for (const p of ['etc/stormbreaker', 'var/lib/stormbreaker', 'etc/systemd/system/multi-user.target.wants/stormbreaker.service']) expect(existsSync(inRoot(p)), p).toBe(false);
    expect((await box!.tryExec(['dpkg-query', '-W', '-f', '${Status}', 'stormbreaker'])).stdout).not.toMatch(/installed/);

    // Installed afresh under a running systemd: enabled for the next boot, not started now.
    const out = (await box!.exec(['dpkg', '-i', '/root/stormbreaker.deb'], 120_000)).stdout;
    expect(out).toMatch(/enabled, NOT started/);
    expect((await box!.tryExec(['systemctl', 'is-enabled', 'stormbreaker.service'])).stdout.trim()).toBe('enabled');
    expect((await box!.show('stormbreaker.service', ['ActiveState'])).ActiveState).toBe('inactive');
  }, 300_000);
});
