import { spawn, type ChildProcess } from 'node:child_process';

// Ports that appear at runtime, watched from their first frame (issue 11): `ip -o monitor link`
// prints one line per RTM_NEWLINK / RTM_DELLINK as the kernel sends it (a veth created, enslaved
// to a bridge, set up, deleted), so the agent re-reads its ports when something changed instead
// of at its next 1 s rescan. One long-lived child (argv array, no shell), restarted with backoff;
// events arriving together are coalesced into one onChange on the next turn of the event loop.

export interface LinkEvent {
  ifindex: number;
  name: string;
  deleted: boolean;
  /** Bridge (or bond) the link is enslaved to, when the line says so. */
  master: string | null;
}

/** Parse one line of `ip -o monitor link`; null for anything that is not a link line. Pure. */
export function parseLinkLine(line: string): LinkEvent | null {
  let s = line.trim();
  let deleted = false;
  if (s.startsWith('Deleted ')) {
    deleted = true;
    s = s.slice(8);
  }
  const m = /^(\d+):\s+([^:\s]+):\s/.exec(s);
  if (!m) return null;
  // "up3@if2": the peer's ifindex after @ is not part of the name.
  const name = m[2]!.split('@')[0]!;
  const master = / master (\S+)/.exec(s)?.[1] ?? null;
  return { ifindex: Number(m[1]), name, deleted, master };
}

export interface LinkMonitor {
  close(): void;
  /** Link lines seen since start. */
  readonly events: number;
}

export function createLinkMonitor(opts: {
  onChange: (last: LinkEvent) => void;
  warn?: (obj: object, msg: string) => void;
  ipBin?: string;
}): LinkMonitor {
  let child: ChildProcess | null = null;
  let closed = false;
  let backoffMs = 100;
  let events = 0;
  let pending: LinkEvent | null = null;

  function flush(): void {
    const e = pending;
    pending = null;
    if (e && !closed) opts.onChange(e);
  }

  function start(): void {
    if (closed) return;
    let rest = '';
    const c = spawn(opts.ipBin ?? 'ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (chunk: string) => {
      backoffMs = 100;
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const e = parseLinkLine(line);
        if (!e) continue;
        events++;
        if (pending === null) setImmediate(flush);
        pending = e;
      }
    });
    c.stderr!.setEncoding('utf8');
    c.stderr!.on('data', (d: string) => opts.warn?.({ stderr: d.trim().slice(0, 200) }, 'ip monitor link stderr'));
    c.on('error', (err) => opts.warn?.({ err: err.message }, 'ip monitor link failed to start'));
    c.on('exit', (code, signal) => {
      child = null;
      if (closed) return;
      opts.warn?.({ code, signal, retryMs: backoffMs }, 'ip monitor link exited; restarting');
      setTimeout(start, backoffMs).unref();
      backoffMs = Math.min(backoffMs * 2, 5000);
    });
  }
  start();

  return {
    get events() {
      return events;
    },
    close() {
      closed = true;
      child?.kill('SIGTERM');
    },
  };
}
