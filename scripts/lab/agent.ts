// Run the real agent (dist/agent/cli.js) inside a lab's host namespace, exactly as on a host:
// `ip netns exec HOST node dist/agent/cli.js run --policy ...`. Used by the demo, the
// benchmarks and the integration tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ns } from './exec.js';
import { request } from '../../agent/control/client.js';

export interface AgentHandle {
  readonly child: ChildProcess;
  readonly stateDir: string;
  readonly socket: string;
  /** Every JSON log line so far, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolve with the first log line matching pred (past or future), or reject after timeoutMs. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  /** A control-socket request. */
  ask(cmd: string, args?: Record<string, unknown>): Promise<unknown>;
  /** SIGTERM (clean stop) or SIGKILL (crash); resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  stderr(): string;
}

export function agentEntry(): string {
  for (const rel of ['../../agent/cli.js', '../../dist/agent/cli.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (p.includes('/dist/') && existsSync(p)) return p;
  }
  throw new Error('compiled agent not found: build first (npx tsc -p tsconfig.json)');
}

export async function startAgent(
  netns: string,
  o: {
    policy: string;
    stateDir?: string;
    dryRun?: boolean;
    extraArgs?: string[];
    readyTimeoutMs?: number;
    env?: Record<string, string>;
    /** argv to run the agent under, e.g. ['chrt', '-f', '20'] as a service unit would set priority. */
    wrap?: string[];
  },
): Promise<AgentHandle> {
  const stateDir = o.stateDir ?? mkdtempSync(join(tmpdir(), 'sb-agent-'));
  const socket = join(stateDir, 'control.sock');
  const argv = ns(netns, [...(o.wrap ?? []), process.execPath, agentEntry(), 'run', '--policy', o.policy, '--state-dir', stateDir, '--socket', socket, ...(o.dryRun ? ['--dry-run'] : []), ...(o.extraArgs ?? [])]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let rest = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (rest + d).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(line) as Record<string, unknown>;
      } catch {
        l = { msg: line, unparsed: true };
      }
      logs.push(l);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(l)) {
          waiters[i]!.resolve(l);
          waiters.splice(i, 1);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));

  const waitFor = (pred: (l: Record<string, unknown>) => boolean, timeoutMs: number) => {
    const hit = logs.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const w = { pred, resolve: (l: Record<string, unknown>) => (clearTimeout(t), resolve(l)) };
      const t = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`agent: no matching log line within ${timeoutMs} ms; stderr: ${err.slice(-600)}`));
      }, timeoutMs);
      waiters.push(w);
      void exited.then((code) => {
        if (waiters.includes(w)) {
          clearTimeout(t);
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`agent exited (${code}) before the expected log line; stderr: ${err.slice(-600)}`));
        }
      });
    });
  };

  const handle: AgentHandle = {
    child,
    stateDir,
    socket,
    logs,
    waitFor,
    ask: (cmd, args = {}) => request(socket, cmd, args),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // `ip netns exec` execs node in place, so the signal reaches the agent itself.
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
    stderr: () => err,
  };
  await waitFor((l) => l.msg === 'stormbreaker running', o.readyTimeoutMs ?? 10_000);
  return handle;
}
