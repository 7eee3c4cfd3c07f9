import type { ChildProcess } from 'node:child_process';
import { killGroup, spawnGroup } from '../host/child.js';
import type { FdbMove, PortPolicy, PortRates, TickFrame, TickSource } from '../types.js';

// `bridge monitor fdb` streams RTM_NEWNEIGH for every learn and every move. In a loop the same
// source MAC is re-learned on alternating ports thousands of times a second, which is the
// clearest loop clue there is. The stream can overflow (ENOBUFS) and the process exit under a
// storm: we restart it with backoff and treat it as a clue, never as the only evidence.

export interface FdbLine {
  mac: string;
  dev: string;
  master: string | null;
  deleted: boolean;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Parse one line of `bridge monitor fdb` output; null for lines that are not fdb entries. Pure. */
export function parseFdbLine(line: string): FdbLine | null {
  let s = line.trim();
  let deleted = false;
  if (s.startsWith('Deleted ')) {
    deleted = true;
    s = s.slice(8);
  }
  const parts = s.split(/\s+/);
  const mac = parts[0];
  if (!mac || !MAC.test(mac)) return null;
  let dev: string | null = null;
  let master: string | null = null;
  for (let i = 1; i < parts.length - 1; i++) {
    if (parts[i] === 'dev') dev = parts[i + 1]!;
    else if (parts[i] === 'master') master = parts[i + 1]!;
  }
  // Entries without "master" are the port's own (self) entries, not learned by the bridge.
  if (!dev || !master) return null;
  return { mac, dev, master, deleted };
}

/** Tracks where each MAC was last learned and reports moves. Pure apart from its own map. */
export function createMoveTracker(maxMacs = 65536) {
  const where = new Map<string, string>();
  return (e: FdbLine, tNs: number): FdbMove | null => {
    const key = `${e.master}|${e.mac}`;
    if (e.deleted) {
      where.delete(key);
      return null;
    }
    const prev = where.get(key);
    if (prev === e.dev) return null;
    if (where.size >= maxMacs && prev === undefined) where.clear(); // bounded memory under a random-MAC flood
    where.set(key, e.dev);
    return prev === undefined ? null : { tNs, bridge: e.master, mac: e.mac, port: e.dev };
  };
}

/** A TickSource of clues only: no ports of its own, the moves go into the tick's frame. */
export interface FdbSource extends TickSource {
  /** Moves since the last drain, oldest first (the array is reused; copy if kept). */
  drain(): readonly FdbMove[];
  /** Moves dropped (the oldest) because the buffer was full, since start. */
  readonly dropped: number;
  close(): void;
}

const MAX_BUFFERED = 4096;
const NO_PORTS: ReadonlyMap<string, PortPolicy> = new Map();
const NO_RATES: readonly PortRates[] = Object.freeze([]);

export function createFdbSource(opts: {
  now: () => number;
  warn?: (obj: object, msg: string) => void;
  bridgeBin?: string;
}): FdbSource {
  let buf: FdbMove[] = [];
  let spare: FdbMove[] = [];
  let dropped = 0;
  let child: ChildProcess | null = null;
  let closed = false;
  let backoffMs = 100;
  const track = createMoveTracker();

  function start(): void {
    if (closed) return;
    let rest = '';
    // Its own process group, killed with the agent even by kill -9 (see host/child.ts).
    const c = spawnGroup(opts.bridgeBin ?? 'bridge', ['monitor', 'fdb'], { stdio: ['ignore', 'pipe', 'pipe'], tied: true });
    child = c;
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (chunk: string) => {
      backoffMs = 100;
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      const t = opts.now();
      for (const line of lines) {
        const e = parseFdbLine(line);
        if (!e) continue;
        const mv = track(e, t);
        if (!mv) continue;
        // Full (a storm between two slow ticks): drop the OLDEST half. The detector judges moves
        // of the last few tens of ms, so keeping the first 4096 of a long interval would keep
        // only moves too old to count and hide the flap.
        if (buf.length >= MAX_BUFFERED) {
          buf.copyWithin(0, MAX_BUFFERED / 2);
          buf.length = MAX_BUFFERED / 2;
          dropped += MAX_BUFFERED / 2;
        }
        buf.push(mv);
      }
    });
    c.stderr!.setEncoding('utf8');
    c.stderr!.on('data', (d: string) => opts.warn?.({ stderr: d.trim().slice(0, 200) }, 'bridge monitor fdb stderr'));
    c.on('error', (err) => opts.warn?.({ err: err.message }, 'bridge monitor fdb failed to start'));
    c.on('exit', (code, signal) => {
      child = null;
      if (closed) return;
      opts.warn?.({ code, signal, retryMs: backoffMs }, 'bridge monitor fdb exited; restarting');
      setTimeout(start, backoffMs).unref();
      backoffMs = Math.min(backoffMs * 2, 5000);
    });
  }
  start();

  function drain(): readonly FdbMove[] {
    const out = buf;
    buf = spare;
    buf.length = 0;
    spare = out;
    return out;
  }

  return {
    id: 'fdb',
    ports: () => NO_PORTS,
    rates: () => NO_RATES,
    fresh: () => true,
    collect(f: TickFrame) {
      f.fdbMoves = drain();
    },
    consume() {},
    drain,
    get dropped() {
      return dropped;
    },
    close() {
      closed = true;
      if (child) killGroup(child, 'SIGTERM');
    },
  };
}
