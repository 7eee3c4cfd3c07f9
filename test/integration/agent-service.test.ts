// The service pieces wired into the real agent during a real storm: sd_notify READY / WATCHDOG /
// STATUS / STOPPING on a real AF_UNIX datagram socket standing in for systemd's, Prometheus
// metrics scraped over HTTP inside the host namespace, and an argv hook receiving the trip.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { stormWithAgent } from '../../scripts/lab/scenario.js';
import { buildLab, listNamespaces, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { REPO, newStateDir, removeStateDirs, requireBuiltAgent, until } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-sv-';
let lab: Lab;
let agent: AgentHandle | null = null;
let receiver: ChildProcess | null = null;
const dir = mkdtempSync(join(tmpdir(), 'sbt-sv-'));
const notifySock = join(dir, 'notify.sock');
const hookOut = join(dir, 'hook.jsonl');
const received: string[] = [];

beforeAll(async () => {
  requireBuiltAgent();
  // systemd's notify socket, played by a real datagram receiver.
  receiver = spawn('python3', ['-u', '-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", "|"), flush=True)
`, notifySock], { stdio: ['ignore', 'pipe', 'inherit'] });
  receiver.stdout!.setEncoding('utf8').on('data', (d: string) => received.push(...d.split('\n').filter(Boolean)));
  expect(await until(() => received.includes('ready'), 5000)).toBe(true);
  lab = await buildLab('kvm', PREFIX);
  agent = await startAgent(lab.ns.host, {
    policy: `${REPO}policies/lab.yaml`,
    stateDir: newStateDir('svc'),
    extraArgs: ['--metrics', '127.0.0.1:9781', '--hook-argv', JSON.stringify(['tee', '-a', hookOut])],
    env: { NOTIFY_SOCKET: notifySock, WATCHDOG_USEC: '400000' },
  });
});

afterAll(async () => {
  try {
    await agent?.stop();
  } finally {
    receiver?.kill();
    await teardownLab(PREFIX);
    removeStateDirs();
  }
  expect(await listNamespaces(PREFIX)).toEqual([]);
});

const scrape = async () => (await run(ns(lab.ns.host, ['python3', '-c', 'import urllib.request;print(urllib.request.urlopen("http://127.0.0.1:9781/metrics").read().decode())']))).stdout;

describe('the agent as a service', () => {
  it('tells systemd it is ready and pings the watchdog from its sampling loop', async () => {
    expect(await until(() => received.some((m) => m.startsWith('READY=1')), 3000)).toBe(true);
    expect(await until(() => received.filter((m) => m.includes('WATCHDOG=1')).length >= 3, 3000)).toBe(true);
  });

  it('during a storm: metrics show the trip, the hook gets it, systemd gets a STATUS line', async () => {
    const before = await scrape();
    expect(before).toMatch(/stormbreaker_policy_info\{[^}]*hash="/);
    const r = await stormWithAgent(lab, agent!, 300);
    expect(r.downPorts).toEqual(['up1']);
    const after = await scrape();
    expect(after).toMatch(/stormbreaker_trips_total\{[^}]*port="up1"[^}]*\} 1/);
    expect(after).toMatch(/stormbreaker_reaction_seconds_count 1/);
    expect(await until(() => existsSync(hookOut) && readFileSync(hookOut, 'utf8').includes('"event":"trip"'), 5000)).toBe(true);
    const ev = JSON.parse(readFileSync(hookOut, 'utf8').trim().split('\n').find((l) => l.includes('"event":"trip"'))!) as { port: string; evidence: unknown };
    expect(ev.port).toBe('up1');
    expect(ev.evidence).toBeTruthy();
    // The receiver prints each datagram as it comes: waited for, not read at this instant.
    expect(await until(() => received.some((m) => m.startsWith('STATUS=trip up1')), 3000)).toBe(true);
  });

  it('says STOPPING on the way out', async () => {
    await agent!.stop();
    agent = null;
    expect(await until(() => received.some((m) => m.startsWith('STOPPING=1')), 3000)).toBe(true);
  });
});
