// The real agent proves, after each automatic link-down, that the host still reaches its management
// gateway (policy.reachability, issue 5 item 7), and undoes a link-down that cut it.
//
// The lab: the kvm lab (host bridge br0 with uplinks up1/up2 to the switch sw0, which also carries
// the production host prod), changed in the smallest way that puts the gateway behind up1 ONLY:
//
//     host ns: br0 (10.99.0.2) --up1--sw1--+
//                              --up2--sw2--+-- sw0 --swp-- prod eth0 (10.99.0.1, "the gateway")
//
//   - sw2 and swp are isolated bridge ports (`bridge link set ... isolated on`): isolated ports do
//     not forward to each other, so prod is reached through sw1/up1 only, while sw1<->sw2 still
//     forwards and the up1/up2 loop through sw0 is intact (the storm circles as in every kvm lab).
//   - The policy's shut order takes the uplinks by name: up1 is shut first, and up1 carries the
//     management path. The echo after it goes unanswered, so the agent must undo it (journal
//     'undo'), shut up2 instead (escalate + trip), and then find the gateway answering.
//
// Quiet-lab care (LAB-FACTS: in a closed loop any broadcast or multicast is a storm): the addresses
// go on after buildLab proved the lab quiet, on interfaces with IFF_MULTICAST cleared first (no
// IGMP), with permanent neighbour entries on both ends (no ARP) and static FDB entries for both
// MACs on the path (no unknown-unicast flooding, which would circle the loop too). The lab is then
// proved quiet again before the agent starts. The echoes themselves are known unicast.
//
// Bounds: the storm lasts until the first shut (a few ms); a guard downs both loop members 6 s
// after injection whatever happens; labs are torn down in afterAll and on every failure path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { inject } from '../../scripts/lab/traffic.js';
import { readLinkStats } from '../../scripts/lab/counters.js';
import { assertQuiet, buildLab, listNamespaces, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import { eventsOf, isUp, type Line, newStateDir, readJournalStrict, removeStateDirs, REPO, requireBuiltAgent, sleep, stopAgentAndLab, stormGuard, until } from '../helpers/agent-lab.js';

const PREFIX = 'sbq-rc-';
const GW = '10.99.0.1';
const HOST_IP = '10.99.0.2';

async function macOf(netns: string, dev: string): Promise<string> {
  const { stdout } = await run(ns(netns, ['ip', '-j', 'link', 'show', 'dev', dev]));
  const mac = (JSON.parse(stdout) as Array<{ address: string }>)[0]?.address;
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error(`no MAC for ${dev} in ${netns}`);
  return mac;
}

/** Management address on br0, gateway on prod, reachable through up1 only; see the header. */
async function addManagementPath(lab: Lab): Promise<void> {
  const { host, sw, prod } = lab.ns;
  for (const p of ['sw2', 'swp']) await run(['bridge', '-n', sw, 'link', 'set', 'dev', p, 'isolated', 'on']);
  const brMac = await macOf(host, 'br0');
  const gwMac = await macOf(prod, 'eth0');
  await run(['ip', '-n', host, 'link', 'set', 'dev', 'br0', 'multicast', 'off']);
  await run(['ip', '-n', prod, 'link', 'set', 'dev', 'eth0', 'multicast', 'off']);
  await run(['bridge', '-n', host, 'fdb', 'replace', gwMac, 'dev', 'up1', 'master', 'static']);
  await run(['bridge', '-n', sw, 'fdb', 'replace', gwMac, 'dev', 'swp', 'master', 'static']);
  await run(['bridge', '-n', sw, 'fdb', 'replace', brMac, 'dev', 'sw1', 'master', 'static']);
  await run(['ip', '-n', host, 'addr', 'add', `${HOST_IP}/24`, 'dev', 'br0']);
  await run(['ip', '-n', prod, 'addr', 'add', `${GW}/24`, 'dev', 'eth0']);
  await run(['ip', '-n', host, 'neigh', 'replace', GW, 'lladdr', gwMac, 'dev', 'br0', 'nud', 'permanent']);
  await run(['ip', '-n', prod, 'neigh', 'replace', HOST_IP, 'lladdr', brMac, 'dev', 'eth0', 'nud', 'permanent']);
}

/**
 * Echoes from the host namespace by a separate process (this machine has no `ping` binary): the
 * compiled pinger module, but its own socket and its own verdict, not the agent's status.
 */
async function gatewayAnswers(lab: Lab): Promise<boolean> {
  const mod = join(REPO, 'dist/agent/actions/reachability.js');
  const script = `import(${JSON.stringify(mod)}).then(async (m) => { const p = m.createPinger(); const o = await p.check(${JSON.stringify(GW)}, 500, 2); p.close(); process.stdout.write(JSON.stringify(o)); })`;
  const { stdout } = await run(ns(lab.ns.host, [process.execPath, '-e', script]), { timeoutMs: 5000 });
  return (JSON.parse(stdout) as { reachable: boolean }).reachable;
}

/** The lab policy plus reachability; 4 shuts per window, as the two stories here take up to 3. */
function writePolicy(path: string, target: string): void {
  writeFileSync(
    path,
    [
      'version: 1',
      'breaker: { maxShuts: 4 }',
      'ports:',
      '  - { match: "up*", role: uplink }',
      '  - { match: "vm*", role: vm }',
      '  - { match: "mgmt*", role: mgmt, protected: true }',
      `reachability: { target: "${target}", timeoutMs: 300, tries: 2 }`,
      '',
    ].join('\n'),
  );
}

beforeAll(async () => {
  requireBuiltAgent();
  await teardownLab(PREFIX);
});

afterAll(async () => {
  await teardownLab(PREFIX);
  removeStateDirs();
  expect(await listNamespaces(PREFIX)).toEqual([]);
});

describe('agent undoes a link-down that cut the management path', () => {
  let lab: Lab;
  let agent: AgentHandle | null = null;
  let stateDir = '';
  let policy = '';

  beforeAll(async () => {
    lab = await buildLab('kvm', PREFIX);
    try {
      await addManagementPath(lab);
      await assertQuiet(lab); // the addresses made no frame: the loop is closed and still quiet
      stateDir = newStateDir('rc');
      policy = join(stateDir, 'policy.yaml');
      writePolicy(policy, GW);
      agent = await startAgent(lab.ns.host, { policy, stateDir });
      // The baseline check at start must have seen the gateway (else checks would be skipped).
      await until(async () => ((await agent!.ask('status')) as { health: { reachability: { state: string } } }).health.reachability.state === 'ok', 3000);
    } catch (err) {
      await agent?.stop('SIGKILL').catch(() => undefined);
      await teardownLab(PREFIX);
      throw err;
    }
  });

  afterAll(() => stopAgentAndLab(agent, PREFIX));

  it('shuts up1, finds the gateway gone, undoes up1 and shuts up2 instead; the gateway answers at the end', async () => {
    const a = agent!;
    const st0 = (await a.ask('status')) as { health: { reachability: { state: string; target: string; lastRttMs: number } } };
    expect(st0.health.reachability).toMatchObject({ state: 'ok', target: GW });
    expect(await gatewayAnswers(lab)).toBe(true);

    // The guard only ends a storm the agent failed to break; armed before the sender's start (a
    // python in the namespace), at 2.5 s it left a slower or busier machine ~3x the story's ~0.8 s.
    const cancel = stormGuard(lab);
    let tInject = 0;
    try {
      tInject = Date.now();
      await inject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
      // trip(up1) -> 2 unanswered echoes of 300 ms -> undo(up1) + escalate(up2) -> trip(up2) -> verified.
      await a.waitFor((l) => l.msg === 'trip' && l.port === 'up2', 5000);
      await a.waitFor((l) => l.msg === 'management path intact after link-down' && l.port === 'up2', 2000);
    } finally {
      cancel();
    }
    const journal = readJournalStrict(stateDir);
    const story = journal.filter((l) => ['trip', 'undo', 'escalate', 'action-failed'].includes(String(l.event))).map((l) => `${String(l.event)}(${String(l.port)})`);
    const at = (l: Line | undefined): number => (l ? Date.parse(String(l.ts)) - tInject : NaN);
    const undo = eventsOf(journal, 'undo', 'up1')[0];
    console.log(
      `[agent-reachability] story=${story.join(' ')} trip(up1)=+${at(eventsOf(journal, 'trip', 'up1')[0])}ms undo=+${at(undo)}ms trip(up2)=+${at(eventsOf(journal, 'trip', 'up2')[0])}ms`,
    );
    expect(story).toEqual(['trip(up1)', 'undo(up1)', 'escalate(up2)', 'trip(up2)']);
    expect(undo).toMatchObject({ reason: `link-down of up1 cut reachability of ${GW}`, target: GW, bridge: 'br0' });
    expect(eventsOf(journal, 'escalate', 'up2')[0]).toMatchObject({ previous: 'up1', reason: `link-down of up1 cut reachability of ${GW}; escalating to up2` });
    // The undo is an alert: logged at error level (pino 50).
    expect(a.logs.find((l) => l.msg === 'undo' && l.port === 'up1')?.level).toBe(50);

    // The loop is broken at up2, up1 forwards again, and the lab is quiet.
    expect(await isUp(lab.ns.host, 'up1')).toBe(true);
    expect(await isUp(lab.ns.host, 'up2')).toBe(false);
    expect(await isUp(lab.ns.host, 'mgmt0')).toBe(true);
    const s0 = await readLinkStats(lab.ns.host);
    await sleep(300);
    const s1 = await readLinkStats(lab.ns.host);
    const rx = (p: string): number => (s1.get(p)?.rxPackets ?? 0) - (s0.get(p)?.rxPackets ?? 0);
    expect(rx('up1')).toBeLessThan(50); // a storm is ~100k frames per second per port
    // The gateway answers (a separate process's echo agrees with the agent).
    expect(await gatewayAnswers(lab)).toBe(true);
    const st = (await a.ask('status')) as { ports: Array<{ port: string; state: string }>; health: { reachability: { state: string } } };
    expect(st.ports.find((p) => p.port === 'up1')?.state).toBe('forwarding');
    expect(st.ports.find((p) => p.port === 'up2')?.state).toBe('tripped');
    expect(st.health.reachability.state).toBe('ok');
  });

  it('skips the check, and says so once, when the target did not answer before the action either', async () => {
    const a = agent!;
    // Close the loop again (quietly: nothing is in flight) and point the check at an address with
    // no route from the host: the echo fails at once (ENETUNREACH) and sends no frame at all.
    const restored = a.waitFor((l) => l.msg === 'restore' && l.port === 'up2', 5000);
    const guard = stormGuard(lab, 8000);
    try {
      await a.ask('restore', { port: 'up2', reason: 'sbq reachability test' });
      await restored;
      const dead = '10.55.0.1';
      writePolicy(policy, dead);
      expect(await a.ask('reload')).toMatchObject({ ok: true });
      expect(
        await until(async () => ((await a.ask('status')) as { health: { reachability: { state: string } } }).health.reachability.state === 'reachability-down', 3000),
      ).toBe(true);
      const seen = a.logs.length;
      await inject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
      const trip = await a.waitFor((l) => l.msg === 'trip' && a.logs.indexOf(l) >= seen, 2000);
      await a.waitFor((l) => l.msg === 'reachability check skipped: the target did not answer before the action either' && a.logs.indexOf(l) >= seen, 2000);
      await sleep(2 * 300 + 200); // longer than a real check would take: no undo may follow
      const journal = readJournalStrict(stateDir);
      const downs = eventsOf(journal, 'reachability-down');
      console.log(`[agent-reachability] skip: trip(${String(trip.port)}) reachability-down events=${downs.length} reason=${String(downs[0]?.reason)}`);
      expect(downs).toHaveLength(1);
      expect(downs[0]).toMatchObject({ target: dead });
      expect(String(downs[0]!.reason)).toMatch(/checks after automatic link-downs are skipped/);
      // The only undo is the one of the first story: this good action stands.
      expect(eventsOf(journal, 'undo').map((l) => l.port)).toEqual(['up1']);
      expect(await isUp(lab.ns.host, String(trip.port))).toBe(false);
    } finally {
      guard();
    }
  });
});
