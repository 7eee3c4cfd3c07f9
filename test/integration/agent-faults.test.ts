// Faults, hostile clients and full disks (issue 13), against the real agent in one kvm lab:
// kill -9 at random instants of storms and at the instant of a link-down (no trip lost, every tripped port down after restart),
// a hold with forMs 1e300, SIGSTOP, many idle connections, a client that never reads, clients
// looping `events` during a storm, a journal that is a symlink, a state dir on a full or read-only tmpfs, a FIFO
// as policy. After each: the next storm is still broken by shutting exactly one loop member. Storms are bounded (stormWithAgent opens
// the loop by hand after observeMs; a guard downs both loop members); tmpfs mounts are unmounted
// and the lab torn down in finally / afterAll.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { downHostPorts, openLoop, resetPorts, stormWithAgent } from '../../scripts/lab/scenario.js';
import { armInject, type ArmedInject } from '../../scripts/lab/traffic.js';
import { armKillOnLinkDown } from '../../scripts/lab/kill-watch.js';
import { openIdle } from '../../scripts/lab/idle-conns.js';
import { run, ns } from '../../scripts/lab/exec.js';
import type { Lab } from '../../scripts/lab/topology.js';
import { request } from '../../agent/control/client.js';
import { eventsOf, isUp, newStateDir, readJournalStrict, REPO, runCli, sleep, stormGuard, until, useKvmLab, waitForNew } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-ft-';
const POLICY = `${REPO}policies/lab-bench.yaml`;
let lab: Lab;
useKvmLab(PREFIX, (l) => (lab = l));

const mounts: string[] = [];
/** A small real tmpfs (the state dir of an agent on a small or failing disk). */
function tmpfs(tag: string, size: string): string {
  const d = newStateDir(tag);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0750`, `sb-${tag}`, d]);
  mounts.push(d);
  return d;
}
afterAll(() => {
  for (const d of mounts.splice(0)) execFileSync('umount', ['-l', d]);
});

/** One storm against a running agent: it must be broken by shutting exactly up1. Ports reset after. */
async function stormBroken(a: AgentHandle): Promise<number | null> {
  // stormWithAgent bounds the storm itself (the loop is opened by hand after 400 ms if the agent
  // has not broken it); the guard only ends a storm whose run hangs. Armed before the observer and
  // the sender start, at 2.5 s it can fire under this file's loads after the agent's trip and
  // before the run reads the ports, and up2 looks shut too. Both were seen down once with one core
  // busy, cause not recorded: a failure now says what the agent tripped and whether the loop was
  // opened by hand.
  const cancel = stormGuard(lab, 10_000);
  try {
    const r = await stormWithAgent(lab, a, 400);
    const trips = r.trips.map((l) => `${String(l.msg)} ${String(l.port)}`).join(', ') || 'none';
    expect(r.downPorts, `agent's trips: ${trips}; loop opened by hand after 400 ms: ${r.openedByHand}`).toEqual(['up1']);
    return r.stats.framesLeaked;
  } finally {
    cancel();
    await a.ask('restore', { port: 'up1', reason: 'sbt faults: next case' }).catch(() => undefined);
    await until(async () => (await a.ask('status') as { ports: Array<{ port: string; state: string }> }).ports.every((p) => p.state === 'forwarding'), 3000);
    await resetPorts(lab);
    await sleep(200);
  }
}

const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** This process's hard RLIMIT_NOFILE (what a client like it may open). */
function nofileHard(): number {
  const hard = /Max open files\s+\S+\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return hard === undefined ? 4096 : hard === 'unlimited' ? 1 << 20 : Number(hard);
}

/** A journal of ~9 MB (3,000 lines of 3 kB) for `events` to read back. */
function bigJournal(): string {
  const pad = 'x'.repeat(3000);
  return Array.from({ length: 3000 }, (_, i) => JSON.stringify({ ts: new Date(Date.now() - 60_000 + i).toISOString(), event: 'flood-observed', port: 'vm1', reason: pad })).join('\n') + '\n';
}

const KILLS = Number(process.env.STORMBREAKER_KILLS ?? 24);
const hrNs = (): number => Number(process.hrtime.bigint());
type Status = { ports: Array<{ port: string; state: string }>; health: { lateTicks: number; journal: { state: string; pending: number }; stalls: { count: number; longestMs: number } } };

describe('faults and hostile clients (kvm)', () => {
  it(`kill -9 at ${KILLS} instants of storms, half of them at a link-down: no trip lost, every tripped port down after restart`, async () => {
    const stateDir = newStateDir('ft-kill');
    let a: AgentHandle | null = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
    const stats = { withTrip: 0, withIntentOnly: 0, none: 0, offsetsMs: [] as number[], atDown: [] as number[] };
    // Each frame comes from a sender started ahead and waiting (armInject): it leaves within a
    // pipe wake-up of fire(), not the few hundred ms of `ip netns exec` + python that spread the
    // kills -940..+1056 ms around the frame with a core busy. Even kills, at random: aimed at
    // 0-30 ms after the frame using the delay the previous fire() had. Odd kills, at the worst
    // instant: 0-500 us after a loop member went down (armKillOnLinkDown, a real-time watcher
    // of the kernel's link notifications), the window where the old agent had downed the port
    // and not yet journaled the trip; random kills fell in it in only a few of 24 per run.
    let latencyMs = 2;
    // The next kill's sender is armed while the agent restarts (it only waits, socket open, for
    // fire()): its ~0.6 s start (1 s with a core busy) no longer adds to every one of the kills.
    const arm = (): Promise<ArmedInject> => armInject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
    let nextArmed: Promise<ArmedInject> | null = null;
    try {
      for (let k = 0; k < KILLS; k++) {
        await sleep(150);
        const before = readJournalStrict(stateDir).length;
        const delay = latencyMs + Math.random() * 30;
        const armed = await (nextArmed ?? arm());
        nextArmed = null;
        // Armed after the sender (whose start can take a second with a core busy), so its wait
        // for the link-down starts close to the frame.
        const watch = k % 2 === 1 ? await armKillOnLinkDown(lab.ns.host, a.child.pid!, lab.loopPorts, { delayUs: Math.random() * 500, timeoutMs: 5000 }).catch((e: unknown) => (armed.disarm(), Promise.reject(e))) : null;
        let t0: number;
        let fireNs: number;
        let killNs: number;
        try {
          fireNs = hrNs();
          const sent = armed.fire();
          const hit = watch ? await watch.result : null;
          if (hit?.killed) stats.atDown.push((hit.tKillNs! - hit.tDownNs!) / 1e3);
          else await sleep(delay);
          killNs = hit?.killed ? hit.tKillNs! : hrNs();
          await a.stop('SIGKILL');
          a = null;
          t0 = (await sent).tFirstNs;
        } finally {
          armed.disarm();
        }
        stats.offsetsMs.push((killNs - t0) / 1e6);
        latencyMs = Math.max(0, (t0 - fireNs) / 1e6);
        const down = (await downHostPorts(lab)).filter((p) => lab.loopPorts.includes(p));
        // Bound the storm whatever happened: a loop left closed is opened by hand.
        if (down.length === 0) await openLoop(lab);
        await sleep(50);
        const journal = readJournalStrict(stateDir).slice(before);
        const recorded = new Set([...eventsOf(journal, 'trip'), ...eventsOf(journal, 'trip-intent')].map((e) => e.port as string));
        // No trip lost: every port the agent put down is in the journal (as a trip or its intent).
        for (const p of down) expect(recorded.has(p), `kill ${k} at ${stats.offsetsMs.at(-1)!.toFixed(1)} ms: ${p} down, journal has ${[...recorded]}`).toBe(true);
        if (down.length > 0) eventsOf(journal, 'trip').some((e) => down.includes(e.port as string)) ? stats.withTrip++ : stats.withIntentOnly++;
        else stats.none++;
        // A human brings everything up; the loop is closed again, quietly.
        await resetPorts(lab);
        if (k + 1 < KILLS) (nextArmed = arm()).catch(() => undefined); // its failure is thrown where it is awaited
        a = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
        // Every port the journal holds as tripped, and every port that was down at the kill, is
        // down again, and says so.
        for (const p of new Set([...recorded, ...down])) {
          expect(await until(async () => !(await isUp(lab.ns.host, p)), 3000), `${p} down again after restart`).toBe(true);
          expect(((await a.ask('status')) as Status).ports.find((x) => x.port === p)?.state).toBe('tripped');
          await a.ask('restore', { port: p, reason: 'sbt faults: next kill' });
        }
        expect(await until(async () => (await downHostPorts(lab)).length === 0, 3000)).toBe(true);
      }
      const sorted = [...stats.offsetsMs].sort((x, y) => x - y);
      console.log(`kill -9 x${KILLS}: ${stats.atDown.length} at a link-down (${stats.atDown.map((u) => u.toFixed(0)).join(', ')} us after it), ${stats.withTrip} after the trip was journaled, ${stats.withIntentOnly} with only its intent, ${stats.none} before any link-down; kill instants ${sorted[0]!.toFixed(1)}..${sorted.at(-1)!.toFixed(1)} ms from the frame (median ${sorted[sorted.length >> 1]!.toFixed(1)}; ${sorted.filter((x) => x >= 0 && x <= 30).length} in 0..30 ms, ${sorted.filter((x) => x >= 7 && x <= 10).length} in 7..10 ms)`);
      expect(stats.withTrip + stats.withIntentOnly).toBeGreaterThan(0);
      expect(stats.atDown.length).toBeGreaterThanOrEqual(KILLS >> 2); // the aimed kills did land at a link-down
    } finally {
      await nextArmed?.then((x) => x.disarm(), () => undefined);
      await openLoop(lab);
      await a?.stop('SIGTERM');
      await resetPorts(lab);
    }
  }, 240_000);

  it('hold forMs 1e300 and 8.64e15 are refused at the edge; trip of a protected port is refused at once; SIGSTOP is journaled with its length; storms still broken', async () => {
    const stateDir = newStateDir('ft-args');
    const a = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
    try {
      for (const forMs of [1e300, 8.64e15]) {
        await expect(a.ask('hold', { port: 'vm1', reason: 'sbt', forMs })).rejects.toMatchObject({ code: 'E_BAD_ARGS' });
      }
      await stormBroken(a);
      expect(a.logs.filter((l) => l.msg === 'sampling tick failed')).toEqual([]);
      const refused = await runCli(['trip', 'mgmt0', '--reason', 'sbt', '--socket', a.socket]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/refused: the port is protected/);
      const done = await runCli(['trip', 'vm1', '--reason', 'sbt', '--socket', a.socket]);
      expect(done.code).toBe(0);
      expect(done.stdout).toMatch(/^trip vm1: done \(verified via /);
      const back = await runCli(['restore', 'vm1', '--reason', 'sbt', '--socket', a.socket]);
      expect(back.stdout).toMatch(/^restore vm1: done/);
      // SIGSTOP for 2 s: journaled and logged with its length once the agent runs again.
      const stall = waitForNew(a, (l) => l.msg === 'stall', 6000);
      process.kill(a.child.pid!, 'SIGSTOP');
      await sleep(2000);
      process.kill(a.child.pid!, 'SIGCONT');
      const line = await stall;
      expect(line.gapMs as number).toBeGreaterThan(1800);
      expect(eventsOf(readJournalStrict(stateDir), 'stall')).toHaveLength(1);
      expect(((await a.ask('status')) as Status).health.stalls.count).toBe(1);
    } finally {
      await a.stop('SIGTERM');
    }
  }, 60_000);

  it('four clients looping `events` on a 9 MB journal: the sampler is not held 10 ms, a storm is still broken by shutting one member', async () => {
    const stateDir = newStateDir('ft-ev');
    writeFileSync(join(stateDir, 'journal.jsonl'), bigJournal());
    // Ticks every 5 ms even when quiet, so that any hold of the event loop of 10 ms or more
    // makes a late tick (status health.lateTicks), not only the ones that meet a 100 ms tick.
    const policy = join(stateDir, 'policy.yaml');
    writeFileSync(policy, readFileSync(POLICY, 'utf8') + 'sampling:\n  idleMs: 5\n');
    const a = await startAgent(lab.ns.host, { policy, stateDir });
    const late = async (): Promise<number> => ((await a.ask('status')) as Status).health.lateTicks;
    let load: ChildProcess | null = null;
    try {
      // The same 4 s without the clients first: a late tick the machine causes (other work on a
      // shared host delaying even a real-time sampler) is not the readers'. What is asserted is
      // the clients' share: late ticks with them minus late ticks without.
      await sleep(500);
      const quiet0 = await late();
      await sleep(4000);
      const quiet = (await late()) - quiet0;
      // The clients are another process: the load is the agent's, not this test's.
      const clients = (load = spawn(process.execPath, [join(REPO, 'dist/scripts/lab/events-load.js'), a.socket, '4'], { stdio: ['ignore', 'pipe', 'pipe'] }));
      let out = '';
      clients.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await sleep(500);
      const late0 = await late();
      await sleep(4000);
      const late1 = await late();
      console.log(`late ticks in 4 s: ${late1 - late0} with 4 clients looping events, ${quiet} in the 4 s before without them`);
      const leaked = await stormBroken(a);
      clients.kill('SIGTERM');
      await new Promise((r) => clients.once('close', r));
      const r = JSON.parse(out) as { answered: number; failed: number; bytes: number; medianMs: number };
      console.log(`4 clients looping events on a 9 MB journal: ${r.answered} answers (${(r.bytes / 1e6).toFixed(0)} MB, median ${r.medianMs} ms), ${r.failed} failed; storm meanwhile: ${leaked} frames leaked`);
      // Before (each answer parsed whole into objects and re-serialized): 20-60 late ticks in 4 s.
      expect(late1 - late0 - quiet).toBeLessThanOrEqual(2);
      expect(r.bytes).toBeGreaterThan(4e6); // the clients were answered meanwhile
      expect(r.failed).toBe(0);
    } finally {
      load?.kill('SIGKILL');
      await a.stop('SIGTERM');
    }
  }, 60_000);

  it('thousands of idle connections: the storm is still broken; a client that never reads: memory stays bounded, the operator still gets in', async () => {
    const stateDir = newStateDir('ft-cl');
    writeFileSync(join(stateDir, 'journal.jsonl'), bigJournal());
    const a = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
    const socks: Socket[] = [];
    const loads: ChildProcess[] = [];
    try {
      const rss0 = rssMb(a.child.pid!);
      // 20,000 idle connections, as issue 13 asks, from client processes of their own: one
      // process may hold fewer (20,000 descriptors here, and raising that needs CAP_SYS_RESOURCE,
      // which this machine's root lacks), so each makes at most 10,000.
      const n = 20_000;
      const share = Math.min(10_000, nofileHard() - 500);
      const clients = Array.from({ length: Math.ceil(n / share) }, (_, i) => spawn(process.execPath, [join(REPO, 'dist/scripts/lab/idle-load.js'), a.socket, String(Math.min(share, n - i * share))], { stdio: ['pipe', 'pipe', 'inherit'] }));
      loads.push(...clients);
      const made = await Promise.all(clients.map((c) => new Promise<{ connected: number; ms: number }>((resolve, reject) => {
        let out = '';
        c.stdout!.on('data', (d: Buffer) => (out += d.toString(), out.includes('\n') && resolve(JSON.parse(out) as { connected: number; ms: number })));
        c.once('close', (code) => reject(new Error(`idle-load ended (${code}) before its connections were made`)));
      })));
      const connected = made.reduce((t, m) => t + m.connected, 0);
      console.log(`${connected} of ${n} idle connections made by ${clients.length} clients in ${made.map((m) => m.ms).join(', ')} ms`);
      expect(connected).toBe(n);
      const leaked = await stormBroken(a);
      console.log(`storm with ${connected} idle connections made: ${leaked} frames leaked`);
      // A client that asks for the whole journal 40 times and never reads.
      const greedy = connect(a.socket);
      socks.push(greedy);
      greedy.pause();
      greedy.on('error', () => undefined);
      greedy.write(Array.from({ length: 40 }, (_, i) => JSON.stringify({ v: 1, id: i + 1, cmd: 'events' })).join('\n') + '\n');
      await sleep(3000);
      // An `events` answer still comes to a client that reads.
      expect(((await request(a.socket, 'events', {}, 10_000)) as unknown[]).length).toBeGreaterThan(3000);
      // The operator still gets in (the longest-idle connection makes room), and it is answered.
      expect(await request(a.socket, 'status')).toBeTruthy();
      const rss = rssMb(a.child.pid!);
      console.log(`agent RSS ${Math.round(rss0)} MB -> ${Math.round(rss)} MB`);
      expect(rss - rss0).toBeLessThan(300); // before: 117 MB -> 1.08 GB
      expect(a.child.exitCode).toBeNull();
    } finally {
      for (const c of loads) c.kill('SIGKILL');
      for (const s of socks) s.destroy();
      await a.stop('SIGTERM');
    }
  }, 120_000);

  it('a low descriptor limit: the connection cap leaves the actions their descriptors, a storm is still broken', async () => {
    const stateDir = newStateDir('ft-nofile');
    const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
    // What this agent holds when it runs (ports, children, sockets), then a limit 40 above it.
    let a = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
    await sleep(300);
    const base = fdsOf(a.child.pid!);
    await a.stop('SIGTERM');
    const limit = base + 40;
    a = await startAgent(lab.ns.host, { policy: POLICY, stateDir, wrap: ['prlimit', `--nofile=${limit}:${limit}`, '--'] });
    const socks: Socket[] = [];
    try {
      const idle = await openIdle(a.socket, 1000);
      socks.push(...idle.socks);
      await sleep(200);
      const held = fdsOf(a.child.pid!);
      console.log(`descriptor limit ${limit} (agent alone: ${base}): with 1,000 idle connections tried, the agent holds ${held}`);
      // Before, the cap of 64 let connections take every descriptor: the link-down found none.
      const leaked = await stormBroken(a);
      console.log(`storm under that limit: ${leaked} frames leaked`);
      expect(await request(a.socket, 'status')).toBeTruthy(); // an operator still gets in
      expect(a.logs.some((l) => l.msg === 'file descriptor limit low: fewer control connections allowed')).toBe(true);
    } finally {
      for (const s of socks) s.destroy();
      await a.stop('SIGTERM');
    }
  }, 60_000);

  it('a journal that is a symlink to a system file: refused, the file untouched, protection intact', async () => {
    const stateDir = newStateDir('ft-ln');
    const victim = join(stateDir, 'passwd');
    writeFileSync(victim, 'root:x:0:0:root:/root:/bin/bash\n');
    symlinkSync(victim, join(stateDir, 'journal.jsonl'));
    const a = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
    try {
      await stormBroken(a);
      expect(readFileSync(victim, 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n');
      expect(a.child.exitCode).toBeNull();
    } finally {
      await a.stop('SIGTERM');
    }
  }, 60_000);

  it('a state dir that fills up while running (a torn write), and one read-only at start: the agent keeps protecting; the trip reaches the journal once there is room', async () => {
    const full = tmpfs('ft-full', '256k');
    const socket = join(newStateDir('ft-sock'), 'control.sock');
    const ask = (cmd: string, args: Record<string, unknown> = {}) => request(socket, cmd, args);
    const journal = join(full, 'journal.jsonl');
    // A journal whose last page has ~600 bytes free once the agent's start line is in: the trip
    // line that follows is cut short by the full disk (a torn write), not refused whole.
    const pad = JSON.stringify({ ts: new Date().toISOString(), event: 'flood-observed', port: 'vm9', reason: 'x'.repeat(4096 - 900) });
    writeFileSync(journal, pad + '\n');
    let a = await startAgent(lab.ns.host, { policy: POLICY, stateDir: full, extraArgs: ['--socket', socket] });
    try {
      // The disk fills up while the agent runs.
      const filler = join(full, 'filler');
      try {
        for (;;) appendFileSync(filler, Buffer.alloc(16 * 1024));
      } catch {
        // ENOSPC: full
      }
      try {
        for (;;) appendFileSync(filler, Buffer.alloc(512));
      } catch {
        // full to the last block
      }
      const handle = { ...a, ask } as AgentHandle;
      await stormBroken(handle);
      expect(a.child.exitCode).toBeNull();
      // Said loudly: status while it lasts, the log once at its start (not per record).
      expect(((await ask('status')) as Status).health.journal.state).toBe('failing');
      expect(a.logs.filter((l) => /journal FAILING/.test(String(l.msg)))).toHaveLength(1);
      // Room again: the records kept in memory are written within the retry period, whole.
      unlinkSync(filler);
      expect(await until(() => /"event":"trip","port":"up1"/.test(readFileSync(journal, 'utf8')), 3000)).toBe(true);
      for (const l of readFileSync(journal, 'utf8').split('\n').filter(Boolean)) JSON.parse(l);
      await a.waitFor((l) => /journal writing again/.test(String(l.msg)), 3000);
      expect(((await ask('status')) as Status).health.journal).toMatchObject({ state: 'ok', pending: 0 });
    } finally {
      await a.stop('SIGTERM');
    }
    // Read-only at start.
    const ro = tmpfs('ft-ro', '256k');
    execFileSync('mount', ['-o', 'remount,ro', ro]);
    a = await startAgent(lab.ns.host, { policy: POLICY, stateDir: ro, extraArgs: ['--socket', socket] });
    try {
      await stormBroken({ ...a, ask } as AgentHandle);
      expect(a.child.exitCode).toBeNull();
    } finally {
      await a.stop('SIGTERM');
    }
  }, 60_000);

  it('a FIFO as policy: start refused in one line, reload answered with an error, the agent still stops on SIGTERM', async () => {
    const dir = newStateDir('ft-fifo');
    const fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    const start = await runCli(['run', '--policy', fifo, '--state-dir', dir, '--socket', join(dir, 's.sock')], 10_000);
    expect(start.code).toBe(1);
    expect(start.stderr.trim().split('\n')).toEqual([`${fifo}: (file): not a regular file (a FIFO, socket or device is never read)`]);
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, readFileSync(POLICY));
    const stateDir = newStateDir('ft-fifo-st');
    const a = await startAgent(lab.ns.host, { policy, stateDir });
    try {
      unlinkSync(policy);
      execFileSync('mkfifo', [policy]);
      const t0 = performance.now();
      const r = (await a.ask('reload')) as { ok: boolean; errors: string[] };
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(r.ok).toBe(false);
      expect(r.errors[0]).toMatch(/not a regular file/);
      await stormBroken(a);
    } finally {
      expect(await a.stop('SIGTERM')).toBe(0);
      rmSync(policy, { force: true });
    }
  }, 60_000);
});
