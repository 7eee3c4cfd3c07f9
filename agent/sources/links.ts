import { superviseLines } from '../host/line-child.js';

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
  let events = 0;
  let pending: LinkEvent | null = null;
  let closed = false;

  function flush(): void {
    const e = pending;
    pending = null;
    if (e && !closed) opts.onChange(e);
  }

  const child = superviseLines({
    file: opts.ipBin ?? 'ip',
    args: ['-o', 'monitor', 'link'],
    name: 'ip monitor link',
    ...(opts.warn ? { warn: opts.warn } : {}),
    onLine: (line) => {
      const e = parseLinkLine(line);
      if (!e) return;
      events++;
      if (pending === null) setImmediate(flush);
      pending = e;
    },
  });

  return {
    get events() {
      return events;
    },
    close() {
      closed = true;
      child.close();
    },
  };
}
