// A kill aimed at the instant a link goes down (kill-on-link-down.py, inside the namespace, at a
// real-time priority above the agent's): the kill -9 lands microseconds after the agent's
// link-down, inside any window between an action and its journal line. A random sleep after
// the storm's first frame hits such a window only by luck (it is a millisecond or two wide;
// under load the kills spread over tens of ms).
import { spawn } from 'node:child_process';
import { ns } from './exec.js';
import { labAsset } from './assets.js';
import { assertIfName } from './names.js';

export interface LinkDownKill {
  killed: boolean;
  port?: string;
  /** CLOCK_MONOTONIC ns (as process.hrtime.bigint()): the link-down seen, and the kill sent. */
  tDownNs?: number;
  tKillNs?: number;
}

/** Resolves once the watcher is subscribed; `result` settles when it killed `pid` or timed out. */
export function armKillOnLinkDown(netns: string, pid: number, ports: readonly string[], o: { delayUs?: number; timeoutMs?: number; rtPriority?: number } = {}): Promise<{ result: Promise<LinkDownKill> }> {
  const timeoutMs = o.timeoutMs ?? 2000;
  const argv = ns(netns, ['python3', labAsset('kill-on-link-down.py'), '--pid', String(pid), '--ports', ports.map(assertIfName).join(','), '--delay-us', String(Math.round(o.delayUs ?? 0)), '--timeout-ms', String(timeoutMs), '--rt-priority', String(o.rtPriority ?? 50)]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 10_000);
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) (lines.push(out.slice(0, nl)), (out = out.slice(nl + 1)));
    wake?.();
  });
  const closed = new Promise<void>((r) => child.once('close', () => (clearTimeout(killer), r(), wake?.())));
  const next = async (): Promise<Record<string, unknown>> => {
    while (lines.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kill-on-link-down.py ended: ${err.trim() || 'no output'}`);
      await new Promise<void>((r) => (wake = r));
    }
    return JSON.parse(lines.shift()!) as Record<string, unknown>;
  };
  return next().then((ready) => {
    if (ready.ready !== true) throw new Error(`kill-on-link-down.py: ${JSON.stringify(ready)}`);
    const result = next().then(async (r) => {
      await closed;
      return { killed: r.killed === true, port: r.port as string | undefined, tDownNs: r.t_down_ns as number | undefined, tKillNs: r.t_kill_ns as number | undefined };
    });
    return { result };
  }, (e: unknown) => (child.kill('SIGKILL'), Promise.reject(e)));
}
