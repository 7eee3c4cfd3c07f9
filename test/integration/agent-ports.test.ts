// Ports that appear, vanish and are recreated under the same name while the agent runs: the
// agent watches them within its 1 s rescan, drops the vanished one without a false rate, and
// counts a recreated one from scratch (new ifindex, new fds) - and still shuts it on a flood.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { buildHostOnly, listNamespaces, teardownLab, type HostOnlyLab } from '../../scripts/lab/topology.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { inject } from '../../scripts/lab/traffic.js';
import { REPO, newStateDir, removeStateDirs, requireBuiltAgent, until } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-po-';
const POLICY = `${REPO}test/fixtures/policies/agent/host-only.yaml`;
let h: HostOnlyLab;
let agent: AgentHandle;

type Status = { ports: Array<{ port: string; state: string; rxPps: number | null }> };
const status = async () => (await agent.ask('status')) as Status;
const watched = async () => (await status()).ports.map((p) => p.port).sort();

beforeAll(async () => {
  requireBuiltAgent();
  h = await buildHostOnly(PREFIX, 2, { peersNs: true });
  agent = await startAgent(h.ns.host, { policy: POLICY, stateDir: newStateDir('ports') });
});

afterAll(async () => {
  try {
    await agent?.stop();
  } finally {
    await teardownLab(PREFIX);
    removeStateDirs();
  }
  expect(await listNamespaces(PREFIX)).toEqual([]);
});

const host = (argv: string[]) => run(ns(h.ns.host, argv));

describe('ports appearing and vanishing at runtime', () => {
  it('a new matching port is watched within the rescan; a deleted one is dropped', async () => {
    expect(await watched()).toEqual(['p0', 'p1']);
    await host(['ip', 'link', 'add', 'p7', 'type', 'veth', 'peer', 'name', 'q7']);
    await host(['ip', 'link', 'set', 'q7', 'netns', h.ns.vms!]);
    await host(['ip', 'link', 'set', 'p7', 'master', 'br0']);
    await host(['ip', 'link', 'set', 'p7', 'up']);
    await run(ns(h.ns.vms!, ['ip', 'link', 'set', 'q7', 'up']));
    expect(await until(async () => (await watched()).includes('p7'), 3000)).toBe(true);
    expect(agent.logs.some((l) => l.msg === 'watched ports changed' && JSON.stringify(l.added).includes('p7'))).toBe(true);

    await host(['ip', 'link', 'del', 'p7']);
    expect(await until(async () => !(await watched()).includes('p7'), 3000)).toBe(true);
    expect(agent.logs.some((l) => l.msg === 'sampling tick failed')).toBe(false);
  });

  it('a port recreated under the same name is counted afresh and still protected', async () => {
    for (let i = 0; i < 2; i++) {
      await host(['ip', 'link', 'add', 'p8', 'type', 'veth', 'peer', 'name', 'q8']);
      await host(['ip', 'link', 'set', 'q8', 'netns', h.ns.vms!]);
      await host(['ip', 'link', 'set', 'p8', 'master', 'br0']);
      await host(['ip', 'link', 'set', 'p8', 'up']);
      await run(ns(h.ns.vms!, ['ip', 'link', 'set', 'q8', 'up']));
      expect(await until(async () => (await watched()).includes('p8'), 3000)).toBe(true);
      if (i === 0) {
        await host(['ip', 'link', 'del', 'p8']);
        expect(await until(async () => !(await watched()).includes('p8'), 3000)).toBe(true);
      }
    }
    // The recreated p8 has fresh counters: a full-speed flood from its VM is seen and shut.
    await new Promise((r) => setTimeout(r, 1200));
    // Bounded: at most 3 s of flood, into a port the agent shuts after floodHoldMs (300 ms).
    const flood = inject({ prefix: PREFIX, ns: h.ns }, 'vms', 'q8', { duration: 3, kind: 'broadcast' }).catch(() => undefined);
    try {
      const trip = await agent.waitFor((l) => l.msg === 'trip' && l.port === 'p8', 8000);
      expect(String(trip.reason)).toMatch(/flood from p8/);
      expect((await status()).ports.find((p) => p.port === 'p8')?.state).toBe('tripped');
    } finally {
      await flood;
    }
  });
});
