import type { ChildProcess } from 'node:child_process';
import { killGroup, spawnGroup } from './child.js';
import { runArgv } from './exec.js';
import { stderrCondition } from './stderr-condition.js';

// A long-lived child whose stdout is read line by line (`bridge monitor fdb`, `ip -o monitor link`):
// argv array, its own process group tied to the agent (host/child.ts), restarted with backoff
// when it exits, killed whole on close. One place for what both monitors need.

export interface LineChild {
  /**
   * Kill the running child and start a fresh one now (no backoff, no warning): what it cached at
   * start (e.g. ifindex -> name) is out of date. Lines the old child still had buffered are
   * dropped. No-op while a restart after an exit is pending (that one starts fresh anyway).
   */
  restart(): void;
  close(): void;
}

export function superviseLines(opts: {
  file: string;
  args: readonly string[];
  /** Names the child in warnings, e.g. 'bridge monitor fdb'. */
  name: string;
  /** Each complete line, in order. */
  onLine: (line: string) => void;
  /**
   * Called once per chunk, before its lines (e.g. one clock read per chunk, not per line).
   * Returns how many of the chunk's lines to deliver (default all): the rest are skipped without
   * being split into strings (a monitor that prints ~100k lines/s during a storm).
   */
  onChunk?: () => number | void;
  /** The child exited (it is restarted after a backoff): what it reported may be out of date. */
  onExit?: () => void;
  /**
   * SCHED_FIFO priority for the child (0 or absent: normal). A monitor that is a wake for the
   * sampler must not be delayed by a storm's softirq load while the sampling thread runs FIFO
   * (whose priority its children do not inherit: SCHED_RESET_ON_FORK). It sleeps in a read between
   * lines, so this costs nothing at rest. Set by `chrt -p` after each start: if that is refused
   * (no CAP_SYS_NICE) the child runs on at normal priority, with one warning per start.
   */
  realtimePriority?: number;
  warn?: (obj: object, msg: string) => void;
}): LineChild {
  let child: ChildProcess | null = null;
  let closed = false;
  let backoffMs = 100;
  const stderr = stderrCondition({ name: opts.name, ...(opts.warn ? { warn: opts.warn } : {}) });

  function start(): void {
    if (closed) return;
    let rest = '';
    const c = spawnGroup(opts.file, opts.args, { stdio: ['ignore', 'pipe', 'pipe'], tied: true });
    child = c;
    if (c.pid !== undefined && (opts.realtimePriority ?? 0) > 0) raisePriority(c.pid, opts.realtimePriority!, opts.name, opts.warn);
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (chunk: string) => {
      if (child !== c) return; // replaced by restart()
      backoffMs = 100;
      rest = deliverLines(rest + chunk, opts.onChunk?.() ?? Infinity, opts.onLine);
    });
    c.stderr!.setEncoding('utf8');
    c.stderr!.on('data', (d: string) => stderr.chunk(d));
    c.on('error', (err) => opts.warn?.({ err: err.message }, `${opts.name} failed to start`));
    c.on('exit', (code, signal) => {
      if (child !== c) return; // replaced by restart()
      child = null;
      stderr.flush();
      if (closed) return;
      opts.onExit?.();
      opts.warn?.({ code, signal, retryMs: backoffMs }, `${opts.name} exited; restarting`);
      setTimeout(start, backoffMs).unref();
      backoffMs = Math.min(backoffMs * 2, 5000);
    });
  }
  start();

  return {
    restart() {
      const old = child;
      if (closed || !old) return;
      child = null;
      killGroup(old, 'SIGTERM');
      opts.onExit?.();
      start();
    },
    close() {
      closed = true;
      if (child) killGroup(child, 'SIGTERM');
    },
  };
}

/** Hands at most `max` complete lines of `text` to onLine; returns the unfinished last line. */
export function deliverLines(text: string, max: number, onLine: (line: string) => void): string {
  let from = 0;
  for (let n = 0; n < max; n++) {
    const nl = text.indexOf('\n', from);
    if (nl < 0) return text.slice(from);
    onLine(text.slice(from, nl));
    from = nl + 1;
  }
  return text.slice(text.lastIndexOf('\n') + 1);
}

function raisePriority(pid: number, prio: number, name: string, warn?: (obj: object, msg: string) => void): void {
  runArgv(['chrt', '-f', '-p', String(Math.floor(prio)), String(pid)], 2000).catch((e: Error) =>
    warn?.({ err: e.message.slice(0, 200) }, `${name} stays at normal priority: a storm may delay it`),
  );
}
