// The command line as operators and scripts use it (DESIGN.md contract): exit codes 0/1/2/3,
// policy errors as `file:line:col: field: message`, status/trip/restore against a running agent
// over its unix socket (the CLI itself runs outside the lab namespace: the socket is a file), and
// `run --dry-run`, which journals 'would-trip' during a real kvm loop storm and downs no link.
// Storms are bounded (hand break ~300 ms after injection, plus a guard); labs are torn down in
// finally and afterAll.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentEntry, startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { ns, run } from '../../scripts/lab/exec.js';
import { downHostPorts, openLoop } from '../../scripts/lab/scenario.js';
import { buildHostOnly, buildLab, listNamespaces, teardownLab, type HostOnlyLab, type Lab } from '../../scripts/lab/topology.js';
import { inject } from '../../scripts/lab/traffic.js';
import { eventsOf, isUp, newStateDir, readJournalStrict, removeStateDirs, REPO, requireBuiltAgent, runCli, sleep, stopAgentAndLab, stormGuard } from '../helpers/agent-lab.js';

const HOST_PREFIX = 'sbt-clh-';
const KVM_PREFIX = 'sbt-clk-';
const BAD = 'test/fixtures/policies/bad/unknown-keys.yaml';
const HOST_ONLY_POLICY = `${REPO}test/fixtures/policies/agent/host-only.yaml`;
const LAB_POLICY = `${REPO}policies/lab.yaml`;

beforeAll(async () => {
  requireBuiltAgent();
  expect(existsSync(join(REPO, BAD))).toBe(true);
});

afterAll(async () => {
  await teardownLab(HOST_PREFIX);
  await teardownLab(KVM_PREFIX);
  removeStateDirs();
  expect(await listNamespaces(HOST_PREFIX)).toEqual([]);
  expect(await listNamespaces(KVM_PREFIX)).toEqual([]);
});

describe('cli without a daemon', () => {
  it('run with a bad policy exits 1 and prints file:line:col: field: message', async () => {
    const dir = newStateDir('cl-bad');
    const r = await runCli(['run', '--policy', BAD, '--state-dir', dir, '--socket', join(dir, 'control.sock')]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const l of lines) expect(l).toMatch(/^test\/fixtures\/policies\/bad\/unknown-keys\.yaml:\d+:\d+: [\w.[\]]+: .+/);
    // The typo the fixture is about, at its place (line 5, col 3: `activeMS:`).
    expect(r.stderr).toContain(`${BAD}:5:3: sampling.activeMS: unknown key "activeMS"`);
    // Nothing started: no journal, no socket.
    expect(existsSync(join(dir, 'journal.jsonl'))).toBe(false);
    expect(existsSync(join(dir, 'control.sock'))).toBe(false);
  });

  it('status exits 3 when no daemon listens (no socket file, or a stale one)', async () => {
    const dir = newStateDir('cl-none');
    const missing = await runCli(['status', '--socket', join(dir, 'none.sock')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/cannot reach daemon/);

    // A stale socket file, as a crashed daemon leaves it: the file exists, nobody listens.
    const stale = join(dir, 'stale.sock');
    await new Promise<void>((resolve) => {
      const c = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      c.on('close', () => resolve());
    });
    expect(existsSync(stale)).toBe(true);
    const refused = await runCli(['status', '--socket', stale]);
    expect(refused.code).toBe(3);
  });

  it('policy check of the lab policy exits 0; of a bad one exits 1', async () => {
    const ok = await runCli(['policy', 'check', 'policies/lab.yaml']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^policies\/lab\.yaml: ok \([0-9a-f]{12}\)$/m);
    const bad = await runCli(['policy', 'check', 'policies/lab.yaml', BAD]);
    expect(bad.code).toBe(1);
    // Every policy the agent tests use is valid too.
    const mine = await runCli(['policy', 'check', 'test/fixtures/policies/agent/host-only.yaml', 'test/fixtures/policies/agent/loop-members-protected.yaml', 'test/fixtures/policies/agent/only-up1-protected.yaml', 'policies/lab-bench.yaml']);
    expect(mine.stderr).toBe('');
    expect(mine.code).toBe(0);
  });

  it('a usage error exits 2', async () => {
    const r = await runCli(['trip']);
    expect(r.code).toBe(2);
  });
});

describe('cli against a running agent (host-only lab, 4 ports)', () => {
  let h: HostOnlyLab;
  let agent: AgentHandle | null = null;

  beforeAll(async () => {
    h = await buildHostOnly(HOST_PREFIX, 4);
    try {
      agent = await startAgent(h.ns.host, { policy: HOST_ONLY_POLICY, stateDir: newStateDir('cl-host') });
    } catch (err) {
      await teardownLab(HOST_PREFIX);
      throw err;
    }
  });

  afterAll(() => stopAgentAndLab(agent, HOST_PREFIX));

  it('policy show on the host: unnamed members of a watched bridge are observed, other unnamed interfaces not watched', async () => {
    const pol = join(mkdtempSync(join(tmpdir(), 'sbt-cl-')), 'p0-only.yaml');
    writeFileSync(pol, 'version: 1\nports:\n  - match: "p0"\n    role: vm\n');
    const r = await run(ns(h.ns.host, [process.execPath, agentEntry(), 'policy', 'show', pol]), { timeoutMs: 15_000 });
    expect(r.stdout).toMatch(/^p0\s+vm\s/m);
    expect(r.stdout).toMatch(/^observed, not named \(.*\): p1, p2, p3$/m);
    // The peers q0..q3 are on no bridge: not read at all.
    expect(r.stdout).toMatch(/^not watched \(no rule matches\): .*q0/m);
    expect(r.stdout).not.toMatch(/^not watched.*\bp1\b/m);
  });

  it('status --json lists the watched ports', async () => {
    const r = await runCli(['status', '--json', '--socket', agent!.socket]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as { policy: { file: string; dryRun: boolean }; ports: Array<{ port: string; bridge: string; role: string; state: string }> };
    expect(s.policy.dryRun).toBe(false);
    expect(s.ports.map((p) => p.port).sort()).toEqual(['p0', 'p1', 'p2', 'p3']);
    for (const p of s.ports) {
      expect(p.bridge).toBe('br0');
      expect(p.role).toBe('vm');
      expect(p.state).toBe('forwarding');
    }
    // The human form says the same.
    const human = await runCli(['status', '--socket', agent!.socket]);
    expect(human.code).toBe(0);
    for (const p of h.ports) expect(human.stdout).toMatch(new RegExp(`^${p}\\s+br0\\s+vm\\s`, 'm'));
  });

  it('trip p1 --reason, then restore p1 --reason: both done and journaled with their reasons', async () => {
    const a = agent!;
    const trip = await runCli(['trip', 'p1', '--reason', 'sbt cli: trip reason x', '--socket', a.socket]);
    expect(trip.stderr).toBe('');
    expect(trip.code).toBe(0);
    // The CLI waits for the action: done, verified, and how.
    expect(trip.stdout).toMatch(/^trip p1: done \(verified via \S+\)$/m);
    await a.waitFor((l) => l.msg === 'trip' && l.port === 'p1', 5000);
    expect(await isUp(h.ns.host, 'p1')).toBe(false);

    const restore = await runCli(['restore', 'p1', '--reason', 'sbt cli: restore reason y', '--socket', a.socket]);
    expect(restore.code).toBe(0);
    await a.waitFor((l) => l.msg === 'restore' && l.port === 'p1', 5000);
    expect(await isUp(h.ns.host, 'p1')).toBe(true);

    const j = readJournalStrict(a.stateDir);
    const t = eventsOf(j, 'trip', 'p1');
    const r = eventsOf(j, 'restore', 'p1');
    expect(t).toHaveLength(1);
    expect(r).toHaveLength(1);
    expect(String(t[0]!.reason)).toContain('sbt cli: trip reason x');
    expect(String(r[0]!.reason)).toContain('sbt cli: restore reason y');
    // No other port was touched.
    for (const p of ['p0', 'p2', 'p3']) expect(await isUp(h.ns.host, p), p).toBe(true);
  });

  it('trip of a port the policy does not watch exits 2 and changes nothing', async () => {
    const r = await runCli(['trip', 'q1', '--reason', 'not watched', '--socket', agent!.socket]);
    expect(r.code).toBe(2);
    expect(await isUp(h.ns.host, 'q1')).toBe(true);
  });
});

describe('run --dry-run in a kvm loop storm', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await buildLab('kvm', KVM_PREFIX);
  });

  afterAll(async () => {
    await teardownLab(KVM_PREFIX);
    expect(await listNamespaces(KVM_PREFIX)).toEqual([]);
  });

  it("journals 'would-trip' and downs no link (the loop is opened by hand)", async () => {
    let agent: AgentHandle | null = null;
    let cancel = (): void => undefined;
    try {
      agent = await startAgent(lab.ns.host, { policy: LAB_POLICY, stateDir: newStateDir('cl-dry'), dryRun: true });
      const st = await runCli(['status', '--socket', agent.socket]);
      expect(st.stdout).toMatch(/DRY-RUN/);
      await sleep(300);
      const sent = await inject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
      cancel = stormGuard(lab);
      expect(sent.sent).toBe(1);
      const would = await agent.waitFor((l) => l.msg === 'would-trip', 2000);
      // Let the storm run on a little past the decision (and any escalation): still every port up.
      await sleep(200);
      const downDuringStorm = await downHostPorts(lab);
      await openLoop(lab);
      cancel();
      expect(downDuringStorm).toEqual([]);
      expect(would.port).toBe('up1');
      expect(String(would.reason)).toMatch(/loop on br0/);

      await sleep(300);
      const j = readJournalStrict(agent.stateDir);
      const wt = eventsOf(j, 'would-trip');
      console.log(`[agent-cli dry-run] would-trip: ${wt.map((e) => `${String(e.port)}`).join(',')}; escalate: ${eventsOf(j, 'escalate').map((e) => String(e.port)).join(',')}`);
      expect(wt[0]?.port).toBe('up1');
      expect(wt.every((e) => e.dryRun === true)).toBe(true);
      expect(eventsOf(j, 'trip')).toEqual([]);
      expect(eventsOf(j, 'action-failed')).toEqual([]);
      expect(agent.logs.filter((l) => l.msg === 'trip')).toEqual([]);
    } finally {
      cancel();
      await agent?.stop('SIGTERM');
      await teardownLab(KVM_PREFIX);
    }
  });
});

describe('policy show', () => {
  it('prints the effective policy per port, and the names no rule watches', async () => {
    const r = await runCli(['policy', 'show', LAB_POLICY, '--ports', 'up1,vm1,mgmt0,br0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^up1\s+uplink\s+false\s+#0 up\*/m);
    expect(r.stdout).toMatch(/^mgmt0\s+mgmt\s+true\s+.*never/m);
    expect(r.stdout).toMatch(/not watched \(no rule matches\): br0/);
    const j = JSON.parse((await runCli(['policy', 'show', LAB_POLICY, '--ports', 'vm1', '--json'])).stdout) as { ports: Array<{ port: string; role: string; thresholds: { floodPps: number } }> };
    expect(j.ports).toMatchObject([{ port: 'vm1', role: 'vm', thresholds: { floodPps: 20000 } }]);
    const bad = await runCli(['policy', 'show', `${REPO}${BAD}`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/:\d+:\d+: /);
  });
});
