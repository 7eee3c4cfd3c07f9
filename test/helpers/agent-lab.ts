// Shared by test/integration/agent-*.test.ts: what every test of the real agent in a real lab
// needs and would otherwise copy: the compiled entry check, a strict journal reader, link state,
// a storm guard and a CLI runner that reports exit codes instead of throwing.
import { afterAll, beforeAll, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, ns } from '../../scripts/lab/exec.js';
import { assertIfName } from '../../scripts/lab/names.js';
import { buildLab, linkDown, listNamespaces, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(REPO, 'dist/agent/cli.js');

export type Line = Record<string, unknown>;

/** The agent runs from dist/ (as in production); vitest only runs the TS tests themselves. */
export function requireBuiltAgent(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npx tsc -p tsconfig.json`);
}

const stateDirs: string[] = [];

/** A fresh state directory (journal + control socket) for one agent's life. */
export function newStateDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `sbt-agent-${tag}-`));
  stateDirs.push(d);
  return d;
}

/** Remove every state directory this test file created (call in afterAll, after agents stopped). */
export function removeStateDirs(): void {
  for (const d of stateDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * Every line of the journal, parsed strictly: a line that does not parse fails the test (the
 * journal is fsync'd per event, so even a SIGKILL must leave only whole lines).
 */
export function readJournalStrict(stateDir: string): Line[] {
  const text = readFileSync(join(stateDir, 'journal.jsonl'), 'utf8');
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('journal does not end with a newline (torn last line)');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Line;
      } catch (err) {
        throw new Error(`journal line ${i + 1} does not parse: ${l.slice(0, 200)}`, { cause: err });
      }
    });
}

export const eventsOf = (lines: readonly Line[], event: string, port?: string): Line[] =>
  lines.filter((l) => l.event === event && (port === undefined || l.port === port));

/** Breaker events in the agent's own log (msg is the event name). */
export const logsOf = (lines: readonly Line[], msg: string, port?: string): Line[] =>
  lines.filter((l) => l.msg === msg && (port === undefined || l.port === port));

/** Administrative state (IFF_UP) of every link in a namespace. */
export async function adminUp(netns: string): Promise<Map<string, boolean>> {
  const { stdout } = await run(ns(netns, ['ip', '-j', 'link', 'show']));
  const links = JSON.parse(stdout) as Array<{ ifname: string; flags: string[] }>;
  return new Map(links.map((l) => [l.ifname, l.flags.includes('UP')]));
}

export async function isUp(netns: string, port: string): Promise<boolean> {
  const up = (await adminUp(netns)).get(assertIfName(port));
  if (up === undefined) throw new Error(`${port} does not exist in ${netns}`);
  return up;
}

/** Poll until cond() holds or timeoutMs passes; returns whether it held. */
export async function until(cond: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Until the agent's port listing (status: the watched and observed ports as last listed) has each
 * port of `want` in its bridge; false after timeoutMs. For a case that changed the host's ports and
 * needs the agent's rescan (every 1 s, later on a busy machine) to have seen the change before its
 * storm: waited for, not assumed from a fixed sleep.
 */
export async function listedIn(agent: AgentHandle, want: Readonly<Record<string, string>>, timeoutMs = 5000): Promise<boolean> {
  return until(async () => {
    const st = (await agent.ask('status')) as { ports: Array<{ port: string; bridge: string | null }> };
    return Object.entries(want).every(([port, bridge]) => st.ports.some((p) => p.port === port && p.bridge === bridge));
  }, timeoutMs);
}

/**
 * Down every loop member afterMs from now unless cancelled: no storm outlives a failed or hung
 * test, whatever the agent does. 6 s by default: at 2.5 s it once fired on a loaded machine while
 * agent-loops' storm helper was still observing, and downed the loop member the agent had rightly
 * left up (the test then failed on a port the agent never touched).
 */
export function stormGuard(lab: Lab, afterMs = 6000, ports: readonly string[] = lab.loopPorts): () => void {
  const t = setTimeout(() => {
    for (const p of ports) void linkDown(lab, p).catch(() => undefined);
  }, afterMs);
  return () => clearTimeout(t);
}

export interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** `node dist/agent/cli.js ...args` with a timeout; a non-zero exit is a result, not an error. */
export function runCli(args: readonly string[], timeoutMs = 15_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: REPO, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: string | null }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

/**
 * Like agent.waitFor, but only for lines logged from now on: agent.waitFor also matches lines
 * already logged, so a second trip of the same port would otherwise "arrive" at once.
 */
export function waitForNew(agent: AgentHandle, pred: (l: Line) => boolean, timeoutMs: number): Promise<Line> {
  const from = agent.logs.length;
  return agent.waitFor((l) => agent.logs.indexOf(l) >= from && pred(l), timeoutMs);
}

/** afterAll of a file's lab: stop the agent (SIGTERM), tear the labs with `prefix` down whatever happens, and none may be left. */
/**
 * A file's kvm lab with one agent in its host namespace (the agent built first; `prepare` runs on
 * the lab before the agent starts). The lab is torn down if anything fails before the agent runs;
 * pair it with stopAgentAndLab in afterAll.
 */
export async function kvmLabWithAgent(prefix: string, o: { policy: string; stateDir: string; prepare?: (lab: Lab) => Promise<void> }): Promise<{ lab: Lab; agent: AgentHandle }> {
  requireBuiltAgent();
  const lab = await buildLab('kvm', prefix);
  try {
    await o.prepare?.(lab);
    const agent = await startAgent(lab.ns.host, { policy: o.policy, stateDir: o.stateDir });
    await sleep(300);
    return { lab, agent };
  } catch (err) {
    await teardownLab(prefix);
    throw err;
  }
}

export async function stopAgentAndLab(agent: AgentHandle | null | undefined, prefix: string): Promise<void> {
  try {
    await agent?.stop('SIGTERM');
  } finally {
    await teardownLab(prefix);
  }
  expect(await listNamespaces(prefix)).toEqual([]);
}

/**
 * One file's kvm lab: built before the first test (after checking the agent is built), torn down
 * with the state dirs after the last; none may be left. `set` receives the lab.
 */
export function useKvmLab(prefix: string, set: (lab: Lab) => void): void {
  beforeAll(async () => {
    requireBuiltAgent();
    set(await buildLab('kvm', prefix));
  });
  afterAll(async () => {
    await teardownLab(prefix);
    removeStateDirs();
    expect(await listNamespaces(prefix)).toEqual([]);
  });
}

/**
 * SIGSTOP the agent's `ip` children (its link monitor: `ip -o monitor link`), as a storm or a busy
 * core can hold their lines back; returns the SIGCONT. Expects at least one.
 */
export async function pauseLinkMonitors(a: AgentHandle): Promise<() => void> {
  const { stdout } = await run(['pgrep', '-P', String(a.child.pid), '-x', 'ip']);
  const pids = stdout.split('\n').filter((x) => x.trim() !== '').map(Number);
  expect(pids.length).toBeGreaterThan(0);
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  return () => {
    for (const pid of pids) process.kill(pid, 'SIGCONT');
  };
}
