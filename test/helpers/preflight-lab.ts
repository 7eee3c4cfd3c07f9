// Shared by test/integration/preflight-*.test.ts: the built CLI (run inside lab namespaces, as on
// a host), lab variants the toolkit does not build (STP on the
// switch or the host bridge), and counter snapshots to prove the probe started no storm.
import { afterAll, beforeAll, expect } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLinkStats, type LinkStats } from '../../scripts/lab/counters.js';
import { run } from '../../scripts/lab/exec.js';
import { assertIfName, assertNetns } from '../../scripts/lab/names.js';
import { linkDown, listNamespaces, teardownLab, type Lab } from '../../scripts/lab/topology.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const LAB_POLICY = join(REPO, 'policies/lab.yaml');

export interface PreflightBuild {
  entry: string;
  dir: string;
  cleanup(): Promise<void>;
}

/**
 * The real CLI as built by `npx tsc` (scripts/test.sh builds before the tests): the preflight
 * commands run from dist/agent/cli.js inside lab namespaces, as on a host.
 */
export async function buildPreflightCli(): Promise<PreflightBuild> {
  const entry = join(REPO, 'dist/agent/cli.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run npx tsc -p tsconfig.json`);
  return { entry, dir: join(REPO, 'dist'), cleanup: async () => undefined };
}

/**
 * One test file's lab life: labs with `prefix` removed before the first test and after the last
 * (and none may be left), the CLI built once. Returns the CLI entry (valid inside tests).
 */
export function usePreflightLab(prefix: string): () => string {
  let cli: PreflightBuild | undefined;
  beforeAll(async () => {
    await teardownLab(prefix);
    cli = await buildPreflightCli();
  }, 120_000);
  afterAll(async () => {
    await teardownLab(prefix);
    await cli?.cleanup();
    expect(await listNamespaces(prefix)).toEqual([]);
  });
  return () => {
    if (!cli) throw new Error('no build');
    return cli.entry;
  };
}

export interface CliResult {
  code: number | null;
  /** The signal that ended it, when it did not exit by itself. */
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Start the preflight CLI inside a lab namespace (`ip netns exec` execs node: same pid). */
export function startInNetns(netns: string, entry: string, args: readonly string[], timeoutMs = 30_000): { child: ChildProcess; done: Promise<CliResult> } {
  const t0 = performance.now();
  let child!: ChildProcess;
  const done = new Promise<CliResult>((resolve) => {
    child = execFile(
      'ip',
      ['netns', 'exec', assertNetns(netns), process.execPath, entry, ...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: string | null }) | null;
        const code = e ? (typeof e.code === 'number' ? e.code : null) : 0;
        resolve({ code, signal: e?.signal ?? null, stdout, stderr, ms: performance.now() - t0 });
      },
    );
  });
  return { child, done };
}

/** Run the preflight CLI inside a lab namespace; exit codes are returned, never thrown. */
export function runInNetns(netns: string, entry: string, args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  return startInNetns(netns, entry, args, timeoutMs).done;
}

export interface JsonReport {
  ok: boolean;
  counts: { error: number; warning: number };
  findings: Array<{ rule: string; severity: 'error' | 'warning'; ports: string[]; what: string; fix: string; evidence?: Record<string, unknown> }>;
  notes: string[];
  stats?: Record<string, unknown>;
}

export function parseReport(r: CliResult): JsonReport {
  try {
    return JSON.parse(r.stdout) as JsonReport;
  } catch (err) {
    throw new Error(`preflight output is not JSON (exit ${r.code}): ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 500)}`, { cause: err });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Bridge port states of one namespace, by port name. */
export async function portStates(netns: string): Promise<Map<string, string>> {
  const { stdout } = await run(['bridge', '-n', assertNetns(netns), '-j', 'link', 'show']);
  return new Map((JSON.parse(stdout) as Array<{ ifname: string; state: string }>).map((l) => [l.ifname, l.state]));
}

/**
 * Turn on kernel STP with fast timers (forward delay 2 s, hello 1 s, max age 6 s) on `bridge`.
 * Ports that are forwarding stay forwarding until the first BPDU comes back (measured here:
 * one of two looped ports blocks ~1 s after this); a port that comes up later starts listening.
 */
export async function setStp(netns: string, bridge: string): Promise<void> {
  await run(['ip', '-n', assertNetns(netns), 'link', 'set', 'dev', assertIfName(bridge), 'type', 'bridge', 'forward_delay', '200', 'hello_time', '100', 'max_age', '600', 'stp_state', '1']);
}

/** Wait until exactly one of `ports` is blocking and the others forward (STP converged); returns the blocked one. */
export async function waitStpBlocking(netns: string, ports: readonly string[], timeoutMs = 15_000): Promise<string> {
  const t0 = performance.now();
  for (;;) {
    const st = await portStates(netns);
    const blocked = ports.filter((p) => st.get(p) === 'blocking');
    if (blocked.length === 1 && ports.every((p) => p === blocked[0] || st.get(p) === 'forwarding')) return blocked[0]!;
    if (performance.now() - t0 > timeoutMs) throw new Error(`STP in ${netns} did not block one of ${ports.join(',')} within ${timeoutMs} ms: ${JSON.stringify([...st])}`);
    await sleep(200);
  }
}

export async function snapshot(...namespaces: string[]): Promise<Map<string, Map<string, LinkStats>>> {
  const out = new Map<string, Map<string, LinkStats>>();
  for (const n of namespaces) out.set(n, await readLinkStats(n));
  return out;
}

/** rx/tx packets moved per `ns/ifname` between two snapshots. */
export function moved(a: Map<string, Map<string, LinkStats>>, b: Map<string, Map<string, LinkStats>>, which: ReadonlyArray<[string, string]>): Record<string, { rx: number; tx: number }> {
  const d: Record<string, { rx: number; tx: number }> = {};
  for (const [n, i] of which) {
    const x = a.get(n)?.get(i);
    const y = b.get(n)?.get(i);
    d[`${n}/${i}`] = { rx: (y?.rxPackets ?? 0) - (x?.rxPackets ?? 0), tx: (y?.txPackets ?? 0) - (x?.txPackets ?? 0) };
  }
  return d;
}

/**
 * Down `ports` of the lab's host namespace `ms` from now unless cancelled: if the probe ever did
 * start a storm, it would not outlive a failed test.
 */
export function stormGuard(lab: Lab, ports: readonly string[], ms = 3000): () => void {
  const t = setTimeout(() => {
    for (const p of ports) void linkDown(lab, p).catch(() => undefined);
  }, ms);
  return () => clearTimeout(t);
}

/** `nft list tables` inside a namespace (the probe's table must be gone after every run). */
export async function nftTables(netns: string): Promise<string> {
  return (await run(['ip', 'netns', 'exec', assertNetns(netns), 'nft', 'list', 'tables'])).stdout;
}

/** Admin state (IFF_UP) of one link in a namespace. */
export async function isAdminUp(netns: string, ifname: string): Promise<boolean> {
  const { stdout } = await run(['ip', '-n', assertNetns(netns), '-j', 'link', 'show', 'dev', assertIfName(ifname)]);
  return ((JSON.parse(stdout) as Array<{ flags: string[] }>)[0]?.flags ?? []).includes('UP');
}
