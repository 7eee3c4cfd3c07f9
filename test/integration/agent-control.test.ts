// Operators' control against the real agent on its real unix socket (host-only lab, no storm):
// policy reload (control command and SIGHUP; a bad policy is rejected whole and the last good
// one stays, visible in status and the journal), hold/release with and without expiry, holds
// across a restart, the CLI's events/why/top/exit codes, the socket's owner group, concurrent
// clients, hostile input, and the requester's uid as the kernel reports it (SO_PEERCRED).
// The lab is torn down in afterAll; state directories are removed.
import { spawn } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { buildHostOnly, teardownLab, type HostOnlyLab } from '../../scripts/lab/topology.js';
import { request } from '../../agent/control/client.js';
import { CLI, eventsOf, isUp, type Line, newStateDir, readJournalStrict, removeStateDirs, requireBuiltAgent, runCli, sleep, stopAgentAndLab, until, waitForNew } from '../helpers/agent-lab.js';

const PREFIX = 'sbo-ct-';

// p0 protected (the agent never shuts it; an operator may hold it), the rest plain VM ports.
const POLICY_A = `version: 1
ports:
  - match: "p0"
    role: mgmt
    protected: true
  - match: "p*"
    role: vm
`;
// Same ports, p3 becomes an uplink: a different hash and a visible role change.
const POLICY_B = `version: 1
ports:
  - match: "p0"
    role: mgmt
    protected: true
  - match: "p3"
    role: uplink
  - match: "p*"
    role: vm
`;
// The typo from the bad fixture: line 3, col 3.
const POLICY_BAD = `version: 1
sampling:
  activeMS: 5
ports:
  - match: "p*"
    role: vm
`;

type Status = {
  policy: { file: string; hash: string; dryRun: boolean; reloads: number; lastError: { errors: string[]; trigger: string } | null };
  health: { ticks: number; ticksPerSec: number; lastTickAgeMs: number; maxLagMs: number; sources: string[] };
  ports: Array<{ port: string; role: string; state: string; heldUntil?: string }>;
};

let h: HostOnlyLab;
let agent: AgentHandle | null = null;
let stateDir: string;
let policyFile: string;

const status = async (): Promise<Status> => (await agent!.ask('status')) as Status;
const stateOf = async (port: string) => (await status()).ports.find((p) => p.port === port)?.state;
const journal = (): Line[] => readJournalStrict(stateDir);
const upByHand = (port: string) => run(ns(h.ns.host, ['ip', 'link', 'set', 'dev', port, 'up']));

beforeAll(async () => {
  requireBuiltAgent();
  h = await buildHostOnly(PREFIX, 4);
  stateDir = newStateDir('sbo-ct');
  policyFile = join(stateDir, 'policy.yaml');
  writeFileSync(policyFile, POLICY_A);
  try {
    // --dry-run on the command line: it must stay in force across reloads. Operator actions
    // (hold, trip, restore) are carried out in dry run all the same.
    agent = await startAgent(h.ns.host, { policy: policyFile, stateDir, dryRun: true });
  } catch (err) {
    await teardownLab(PREFIX);
    throw err;
  }
});

/**
 * Every port forwarding again after each case, whatever it asserted: the cases share one agent,
 * and a port a failed case left held or tripped failed the cases after it for a reason not their
 * own (hostile input asserts every port forwarding; the hold cases expect their port up first).
 */
afterEach(async () => {
  const a = agent;
  if (!a || a.child.exitCode !== null || a.child.signalCode !== null) return;
  const left = ((await status().catch(() => null))?.ports ?? []).filter((p) => p.state !== 'forwarding');
  for (const p of left) {
    const reason = 'sbo test: next case';
    if (p.state === 'held') await a.ask('release', { port: p.port, reason }).catch(() => undefined);
    await until(async () => ['tripped', 'forwarding'].includes((await stateOf(p.port)) ?? ''), 3000);
    if ((await stateOf(p.port)) === 'tripped') await a.ask('restore', { port: p.port, reason }).catch(() => undefined);
  }
  if (left.length > 0) await until(async () => (await status()).ports.every((p) => p.state === 'forwarding'), 5000);
});

afterAll(async () => {
  try {
    await stopAgentAndLab(agent, PREFIX);
  } finally {
    removeStateDirs();
  }
});

describe('policy reload', () => {
  it('a good policy is swapped in, a bad one is rejected whole (last good kept, error in status, both journaled)', async () => {
    const before = await status();
    expect(before.policy.dryRun).toBe(true);
    expect(before.ports.find((p) => p.port === 'p3')?.role).toBe('vm');

    writeFileSync(policyFile, POLICY_B);
    const good = await runCli(['reload', '--socket', agent!.socket]);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(new RegExp(`^reloaded: ${before.policy.hash} -> [0-9a-f]{12}$`, 'm'));
    const mid = await status();
    expect(mid.policy.hash).not.toBe(before.policy.hash);
    expect(mid.policy.dryRun).toBe(true); // --dry-run outlives the reload
    expect(mid.policy.lastError).toBeNull();
    expect(mid.ports.find((p) => p.port === 'p3')?.role).toBe('uplink'); // re-resolved at once

    writeFileSync(policyFile, POLICY_BAD);
    const bad = await runCli(['reload', '--socket', agent!.socket]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${policyFile}:3:3: sampling.activeMS: unknown key "activeMS"`);
    const after = await status();
    expect(after.policy.hash).toBe(mid.policy.hash); // the last good policy stays in force
    expect(after.policy.dryRun).toBe(true);
    expect(after.ports.find((p) => p.port === 'p3')?.role).toBe('uplink');
    const typo = `${policyFile}:3:3: sampling.activeMS: unknown key "activeMS"`;
    expect(after.policy.lastError?.errors.some((e) => e.startsWith(typo))).toBe(true);
    for (const l of after.policy.lastError!.errors) expect(l).toMatch(/^.+:\d+:\d+: [\w.[\]]+: .+/);
    const human = await runCli(['status', '--socket', agent!.socket]);
    expect(human.stdout).toMatch(/policy reload REJECTED/);
    expect(human.stdout).toContain(`hash ${mid.policy.hash}`);

    const j = journal();
    const reloads = eventsOf(j, 'reload');
    expect(reloads).toHaveLength(1);
    expect(reloads[0]).toMatchObject({ oldHash: before.policy.hash, newHash: mid.policy.hash, policyHash: mid.policy.hash, trigger: 'control' });
    expect((reloads[0]!.by as { source: string }).source).toBe('kernel');
    const failed = eventsOf(j, 'reload-failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.policyHash).toBe(mid.policy.hash);
    expect((failed[0]!.errors as string[]).some((e) => e.startsWith(typo))).toBe(true);
    expect(agent!.logs.some((l) => l.msg === 'reload-failed' && l.level === 50)).toBe(true); // logged as an error
  });

  it('SIGHUP reloads the same path', async () => {
    writeFileSync(policyFile, POLICY_A);
    const hashBefore = (await status()).policy.hash;
    const reloaded = waitForNew(agent!, (l) => l.msg === 'reload' && l.trigger === 'SIGHUP', 5000);
    agent!.child.kill('SIGHUP'); // `ip netns exec` execs node: the signal reaches the agent
    const l = await reloaded;
    const s = await status();
    expect(s.policy.hash).toBe(l.newHash);
    expect(s.policy.hash).not.toBe(hashBefore);
    expect(s.policy.lastError).toBeNull(); // a good reload clears the last error
    expect(s.policy.dryRun).toBe(true);
    expect(s.ports.find((p) => p.port === 'p3')?.role).toBe('vm');
    expect(agent!.child.exitCode).toBeNull();
    expect(eventsOf(journal(), 'reload').map((e) => e.trigger)).toEqual(['control', 'SIGHUP']);
  });
});

describe('hold and release', () => {
  it('hold --for 1s: down at once, journaled with the kernel uid, expires into tripped (still down), restore brings it up', async () => {
    const held = waitForNew(agent!, (l) => l.msg === 'hold' && l.port === 'p2' && l.applied === true, 5000);
    const r = await runCli(['hold', 'p2', '--reason', 'sbo test: swap cable', '--for', '1s', '--socket', agent!.socket]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^hold p2: done \(verified via \S+\) until \d{4}-/);
    await held;
    expect(await isUp(h.ns.host, 'p2')).toBe(false);
    const s = await status();
    const p2 = s.ports.find((p) => p.port === 'p2')!;
    expect(p2.state).toBe('held');
    expect(p2.heldUntil).toBeDefined();

    const hold = eventsOf(journal(), 'hold', 'p2').find((e) => e.applied !== true)!;
    expect(String(hold.reason)).toContain('sbo test: swap cable');
    expect(hold.by).toMatchObject({ uid: process.getuid!(), source: 'kernel' });
    expect(typeof hold.untilMs).toBe('number');

    const expired = await waitForNew(agent!, (l) => l.msg === 'hold-expired' && l.port === 'p2', 4000);
    expect(String(expired.reason)).toMatch(/still down until an operator restores it/);
    expect(await stateOf('p2')).toBe('tripped');
    expect(await isUp(h.ns.host, 'p2')).toBe(false);

    const restored = waitForNew(agent!, (l) => l.msg === 'restore' && l.port === 'p2', 5000);
    expect((await runCli(['restore', 'p2', '--reason', 'sbo test: cable fixed', '--socket', agent!.socket])).code).toBe(0);
    const rl = await restored;
    expect(rl.by).toMatchObject({ source: 'kernel', uid: process.getuid!() });
    expect(await isUp(h.ns.host, 'p2')).toBe(true);
  });

  it('a protected port can be held; restore is refused while held; release leaves it tripped; held ports are reasserted', async () => {
    // Protection stops the automaton, and an operator trip, but not a hold.
    // Refused at once (E_PROTECTED), not a tick later in the journal.
    await expect(agent!.ask('trip', { port: 'p0', reason: 'sbo test' })).rejects.toMatchObject({ code: 'E_PROTECTED' });
    expect(await isUp(h.ns.host, 'p0')).toBe(true);

    const applied = waitForNew(agent!, (l) => l.msg === 'hold' && l.port === 'p0' && l.applied === true, 5000);
    await agent!.ask('hold', { port: 'p0', reason: 'sbo test: maintenance window' });
    await applied;
    expect(await isUp(h.ns.host, 'p0')).toBe(false);
    const hold = eventsOf(journal(), 'hold', 'p0')[0]!;
    expect(String(hold.reason)).toMatch(/protected port: held by operator decision/);
    expect(hold.untilMs).toBeUndefined();

    const refused = waitForNew(agent!, (l) => l.msg === 'action-failed' && l.port === 'p0', 5000);
    await agent!.ask('restore', { port: 'p0', reason: 'sbo test: too early' });
    expect(String((await refused).reason)).toMatch(/release the hold first/);

    // Brought up by hand while held: down again within about a second.
    const re = waitForNew(agent!, (l) => l.msg === 'reassert' && l.port === 'p0', 5000);
    await upByHand('p0');
    expect(await until(async () => !(await isUp(h.ns.host, 'p0')), 3000, 20)).toBe(true);
    expect(String((await re).reason)).toMatch(/held/);

    const released = waitForNew(agent!, (l) => l.msg === 'release' && l.port === 'p0', 5000);
    const rel = await runCli(['release', 'p0', '--reason', 'sbo test: window over', '--socket', agent!.socket]);
    expect(rel.code).toBe(0);
    await released;
    expect(await stateOf('p0')).toBe('tripped');
    expect(await isUp(h.ns.host, 'p0')).toBe(false);
    const restored = waitForNew(agent!, (l) => l.msg === 'restore' && l.port === 'p0', 5000);
    await agent!.ask('restore', { port: 'p0', reason: 'sbo test: done' });
    await restored;
    expect(await isUp(h.ns.host, 'p0')).toBe(true);
    expect(await stateOf('p0')).toBe('forwarding');
  });

  it('a hold survives a restart (journal replay), expiry and all', async () => {
    const a1 = waitForNew(agent!, (l) => l.msg === 'hold' && l.port === 'p1' && l.applied === true, 5000);
    await agent!.ask('hold', { port: 'p1', reason: 'sbo test: across restart' });
    await a1;
    const a3 = waitForNew(agent!, (l) => l.msg === 'hold' && l.port === 'p3' && l.applied === true, 5000);
    await agent!.ask('hold', { port: 'p3', reason: 'sbo test: expires later', forMs: 3_600_000 });
    await a3;
    const until3 = (await status()).ports.find((p) => p.port === 'p3')!.heldUntil;
    expect(await agent!.stop('SIGKILL')).toBeNull();
    agent = null;
    // While no agent runs, someone brings p1 up.
    await upByHand('p1');
    agent = await startAgent(h.ns.host, { policy: policyFile, stateDir, dryRun: true });
    const s = await status();
    expect(s.ports.find((p) => p.port === 'p1')?.state).toBe('held');
    const p3 = s.ports.find((p) => p.port === 'p3')!;
    expect(p3.state).toBe('held');
    expect(p3.heldUntil).toBe(until3);
    await agent.waitFor((l) => l.msg === 'reassert' && l.port === 'p1', 5000);
    expect(await until(async () => !(await isUp(h.ns.host, 'p1')), 3000)).toBe(true);

    for (const p of ['p1', 'p3']) {
      const done = waitForNew(agent, (l) => l.msg === 'restore' && l.port === p, 5000);
      await agent.ask('release', { port: p, reason: 'sbo test' });
      await until(async () => (await stateOf(p)) === 'tripped', 3000);
      await agent.ask('restore', { port: p, reason: 'sbo test' });
      await done;
      expect(await isUp(h.ns.host, p)).toBe(true);
    }
  });
});

describe('cli', () => {
  it('events reads the journal file (filters --port, --since; --json), why summarises, exit codes 2 for usage', async () => {
    const j = await runCli(['events', '--port', 'p2', '--json', '--socket', agent!.socket]);
    expect(j.code).toBe(0);
    const evs = JSON.parse(j.stdout) as Line[];
    expect(evs.length).toBeGreaterThan(0);
    expect(evs.every((e) => e.port === 'p2')).toBe(true);
    expect(evs.map((e) => e.event)).toEqual(expect.arrayContaining(['hold', 'hold-expired', 'restore']));
    // Both agent lives are in the file, the 'stop'-less crash included: more than the memory tail of one life.
    const all = JSON.parse((await runCli(['events', '--json', '--socket', agent!.socket])).stdout) as Line[];
    expect(all.filter((e) => e.event === 'start')).toHaveLength(2);
    expect(all.length).toBe(journal().length); // the whole file (it is under the 10,000-line bound)
    const recent = JSON.parse((await runCli(['events', '--since', '2s', '--json', '--socket', agent!.socket])).stdout) as Line[];
    expect(recent.length).toBeLessThan(all.length);
    for (const e of recent) expect(Date.parse(String(e.ts))).toBeGreaterThanOrEqual(Date.now() - 10_000);
    const text = await runCli(['events', '--port', 'p2', '--socket', agent!.socket]);
    expect(text.stdout).toMatch(/hold-expired\s+p2\s+hold expired/);
    expect(text.stdout).toMatch(/\(kernel\)\]/);

    expect((await runCli(['events', '--since', 'yesterday', '--socket', agent!.socket])).code).toBe(2);
    expect((await runCli(['hold', 'p9', '--reason', 'x', '--socket', agent!.socket])).code).toBe(2);
    expect((await runCli(['hold', 'p1', '--reason', 'x', '--for', '10 parsecs', '--socket', agent!.socket])).code).toBe(2);

    const tripped = waitForNew(agent!, (l) => l.msg === 'trip' && l.port === 'p3', 5000);
    await agent!.ask('trip', { port: 'p3', reason: 'sbo test: for why' });
    await tripped;
    const why = await runCli(['why', 'p3', '--socket', agent!.socket]);
    expect(why.code).toBe(0);
    expect(why.stdout).toMatch(/^trip of p3 at /m);
    expect(why.stdout).toMatch(/^verdict: operator trip by uid \d+.*sbo test: for why/m);
    expect(why.stdout).toMatch(/^by: uid \d+ \(kernel\)$/m);
    expect(why.stdout).toMatch(/^action: via \S+, [\d.]+ ms, \d+ attempt\(s\), verified yes/m);
    const whyJson = JSON.parse((await runCli(['why', 'p3', '--json', '--socket', agent!.socket])).stdout) as Line;
    expect(whyJson.event).toBe('trip');
    const restored = waitForNew(agent!, (l) => l.msg === 'restore' && l.port === 'p3', 5000);
    await agent!.ask('restore', { port: 'p3', reason: 'sbo test' });
    await restored;
  });

  it('status shows hash and agent health; top redraws until Ctrl-C and exits 3 without a daemon', async () => {
    const st = await runCli(['status', '--socket', agent!.socket]);
    const s = await status();
    expect(st.stdout).toContain(`hash ${s.policy.hash}`);
    expect(st.stdout).toMatch(/^agent [\d.]+ ticks\/s, period [\d.]+ ms, last tick [\d.]+ ms ago, max lag [\d.-]+ ms, sources \S+/m);
    expect(s.health.ticksPerSec).toBeGreaterThan(0);

    // Ctrl-C once the fourth frame has begun (three whole frames drawn), not at a fixed 1.2 s:
    // node's start under load took part of that budget. 10 s at most: a top that never redraws
    // is killed then and fails on the frame count below.
    const CLEAR = '\x1b[2J\x1b[H';
    const out = await new Promise<{ stdout: string; code: number | null }>((resolve) => {
      const c = spawn(process.execPath, [CLI, 'top', '--interval', '200', '--socket', agent!.socket]);
      let stdout = '';
      const interrupt = setTimeout(() => c.kill('SIGINT'), 10_000);
      c.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        if (stdout.split(CLEAR).length - 1 >= 4 && !c.killed) c.kill('SIGINT');
      });
      c.on('close', (code) => (clearTimeout(interrupt), resolve({ stdout, code })));
    });
    expect(out.code).toBe(0);
    const frames = out.stdout.split(CLEAR).filter((f) => f.length > 0);
    expect(frames.length).toBeGreaterThanOrEqual(3);
    for (const f of frames.slice(0, -1)) expect(f).toMatch(/^p1\s+br0\s+vm\s/m);

    const none = await runCli(['top', '--socket', join(stateDir, 'none.sock')]);
    expect(none.code).toBe(3);
  });
});

describe('control socket', () => {
  it('run --socket-group: socket 0660 and its new directory 0750, both owned by the group', async () => {
    const dir = newStateDir('sbo-grp');
    const sockDir = join(dir, 'run', 'stormbreaker');
    const sock = join(sockDir, 'control.sock');
    const p = join(dir, 'policy.yaml');
    writeFileSync(p, POLICY_A);
    const a = await startAgent(h.ns.host, { policy: p, stateDir: dir, extraArgs: ['--socket', sock, '--socket-group', 'nogroup'] });
    try {
      const ss = statSync(sock);
      expect(ss.mode & 0o777).toBe(0o660);
      expect(ss.gid).toBe(65534);
      const ds = statSync(sockDir);
      expect(ds.mode & 0o777).toBe(0o750);
      expect(ds.gid).toBe(65534);
      expect((await runCli(['status', '--json', '--socket', sock])).code).toBe(0);
    } finally {
      await a.stop('SIGTERM');
    }
    mkdirSync(join(dir, 'x'), { recursive: true });
    const bad = await runCli(['run', '--policy', p, '--state-dir', join(dir, 'x'), '--socket', join(dir, 'x', 's.sock'), '--socket-group', 'sbo-no-such-group']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--socket-group: no such group/);
  });

  it('two clients at once: parallel status and a trip are all answered', async () => {
    const tripped = waitForNew(agent!, (l) => l.msg === 'trip' && l.port === 'p1', 5000);
    const answers = await Promise.all([
      ...Array.from({ length: 20 }, () => request(agent!.socket, 'status')),
      request(agent!.socket, 'trip', { port: 'p1', reason: 'sbo test: parallel' }),
      ...Array.from({ length: 20 }, () => request(agent!.socket, 'status')),
    ]);
    expect(answers).toHaveLength(41);
    for (const a of answers) expect(a).toBeTruthy();
    expect(answers[20]).toMatchObject({ accepted: true, port: 'p1', by: { source: 'kernel' } });
    await tripped;
    expect(await isUp(h.ns.host, 'p1')).toBe(false);
    const restored = waitForNew(agent!, (l) => l.msg === 'restore' && l.port === 'p1', 5000);
    await agent!.ask('restore', { port: 'p1', reason: 'sbo test' });
    await restored;
  });

  it('hostile input: garbage, a 10 MB line, half a message, wrong types: errors, never a crash', async () => {
    // Garbage, then a valid request on the same connection: the connection stays usable.
    const g = await exchange(agent!.socket, 'this is not json\n{"v":1,"id":7,"cmd":"status"}\n', 2);
    expect(g.lines[0]).toMatchObject({ ok: false, error: { code: 'E_BAD_JSON' } });
    expect(g.lines[1]).toMatchObject({ ok: true, id: 7 });

    // 10 MB in one line: E_TOO_LARGE, that client closed, nothing buffered.
    const big = await exchange(agent!.socket, Buffer.concat([Buffer.from('{"v":1,"id":1,"cmd":"status","args":{"x":"'), Buffer.alloc(10 * 1024 * 1024, 0x61), Buffer.from('"}}\n')]), 1);
    expect(big.lines[0]).toMatchObject({ ok: false, error: { code: 'E_TOO_LARGE' } });
    expect(big.closed).toBe(true);

    // Half a message, then the client goes away.
    await exchange(agent!.socket, '{"v":1,"id":1,"cm', 0);

    // Well-formed JSON with the wrong types.
    const bad = [
      '{"v":1,"id":1,"cmd":42}',
      '{"v":1,"id":2,"cmd":"hold","args":{"port":5,"reason":"x"}}',
      '{"v":1,"id":3,"cmd":"hold","args":{"port":"p1","forMs":"soon"}}',
      '{"v":1,"id":4,"cmd":"events","args":{"sinceMs":"x"}}',
      '{"v":1,"id":5,"cmd":"trip","args":{"port":"p1","reason":["a"]}}',
      '{"v":1,"id":6,"cmd":"nope"}',
      '[1,2,3]',
      '{"v":1,"id":8,"cmd":"why","args":{"port":{"a":1}}}',
    ];
    const t = await exchange(agent!.socket, bad.join('\n') + '\n', bad.length);
    const byId = new Map(t.lines.filter((l) => l.id !== null).map((l) => [l.id as number, l] as const));
    expect(t.lines.filter((l) => l.id === null).map((l) => (l.error as { code: string }).code).sort()).toEqual(['E_BAD_REQUEST', 'E_BAD_REQUEST']);
    for (const id of [2, 3, 4, 5, 8]) expect(byId.get(id), `id ${id}`).toMatchObject({ ok: false, error: { code: 'E_BAD_ARGS' } });
    expect(byId.get(6)).toMatchObject({ ok: false, error: { code: 'E_UNKNOWN_CMD' } });

    // Still alive, still answering, and nothing was held or tripped by any of it.
    await sleep(100);
    expect(agent!.child.exitCode).toBeNull();
    const s = await status();
    expect(s.ports.every((p) => p.state === 'forwarding')).toBe(true);
    expect(agent!.logs.some((l) => l.msg === 'sampling tick failed')).toBe(false);
  });
});

/** Write raw bytes to the socket, collect `want` answer lines (or until the server closes). */
function exchange(path: string, payload: string | Buffer, want: number, timeoutMs = 5000): Promise<{ lines: Line[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const lines: Line[] = [];
    let buf = '';
    let closed = false;
    const done = () => {
      clearTimeout(t);
      sock.destroy();
      resolve({ lines, closed });
    };
    const t = setTimeout(() => (want === 0 ? done() : reject(new Error(`only ${lines.length}/${want} answers: ${JSON.stringify(lines)}`))), want === 0 ? 200 : timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      sock.write(payload);
      if (want === 0) sock.end();
    });
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)) as Line);
        buf = buf.slice(nl + 1);
      }
      if (want > 0 && lines.length >= want && want !== 1) done();
    });
    // A refused client is closed by the server while it may still be writing: that is expected.
    sock.on('error', () => undefined);
    sock.on('close', () => {
      closed = true;
      if (want > 0 && lines.length >= want) done();
    });
  });
}
