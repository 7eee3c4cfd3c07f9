import { superviseLines } from '../host/line-child.js';
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
  /** Ports the bridge was seen learning a MAC on since the monitor (re)started. */
  learning(): ReadonlySet<string>;
  /** Moves since the last drain, oldest first (the array is reused; copy if kept). */
  drain(): readonly FdbMove[];
  /** Moves dropped (the oldest) because the buffer was full, since start. */
  readonly dropped: number;
  /**
   * Start a fresh monitor now: `bridge monitor fdb` resolves ifindex -> name once, at its start,
   * and prints a port renamed afterwards under its OLD name (checked by hand: 'dev p1' after
   * 'ip link set p1 name p1x'), so a flap through renamed ports would land on ports that no
   * longer exist. Where each MAC was is forgotten too (it was under the old names).
   */
  restart(): void;
  close(): void;
}

const MAX_BUFFERED = 4096;
/**
 * Lines parsed per ms at most (a token bucket, LINE_BURST deep). A loop storm makes `bridge
 * monitor fdb` print ~50-100k lines/s (lab, kvm loop: 31k lines in the first 0.67 s); parsing
 * each on the JS thread held it for ~1 ms per 64 KiB chunk, in front of the tripwire's wake and
 * the sampling ticks (event-loop utilisation 1.0 between ticks). A flap verdict needs
 * FDB_MIN_MOVES moves within 50 ms: 8 lines per ms keeps ~400. A chunk past the budget is
 * skipped whole, never split into strings; a MAC's next parsed line still shows where it went.
 * The burst is what the first chunk of a storm costs, parsed before the tick that judges it:
 * 256 lines held the JS thread ~2.7 ms in a cold storm (cold code, the storm's softirqs on the
 * same CPU; lab probe, session 13), where 48 lines still hold a loop's flapping MAC many times.
 */
export const LINES_PER_MS = 8;
export const LINE_BURST = 48;
/** Ports remembered as learning (a namespace has far fewer; bounds memory against odd input). */
const MAX_LEARNING = 4096;
const NO_PORTS: ReadonlyMap<string, PortPolicy> = new Map();
const NO_RATES: readonly PortRates[] = Object.freeze([]);

export function createFdbSource(opts: {
  now: () => number;
  /** A MAC moved: called at most once per chunk of the monitor's output (the scheduler wakes the sampler). */
  onMove?: () => void;
  warn?: (obj: object, msg: string) => void;
  bridgeBin?: string;
  /**
   * SCHED_FIFO priority for the monitor (0: normal), as the sampling thread's. It is the wake for
   * a loop circling unknown unicast (no broadcast counter moves: the tripwire stays silent); at
   * normal priority a storm delayed its lines: a cold agent's verdict on such a loop came at
   * 38-99 ms against 4 ms with it (bench-reaction, kvm-unicast).
   */
  realtimePriority?: number;
  /** Lines parsed at most (default LINES_PER_MS, LINE_BURST; see there). */
  lineBudget?: { perMs: number; burst: number };
}): FdbSource {
  const budget = opts.lineBudget ?? { perMs: LINES_PER_MS, burst: LINE_BURST };
  let buf: FdbMove[] = [];
  let spare: FdbMove[] = [];
  let dropped = 0;
  let track = createMoveTracker();
  // Where the bridge learns, a loop through the port flaps the circling frames' source MACs
  // (they arrive from both directions): the detector then asks for that flap rather than take
  // rx ≈ tx alone for a loop (a DHCP server answering a PXE wave is rx ≈ tx too). Forgotten
  // when the monitor restarts: moves it missed meanwhile must not count as "no flap".
  const learning = new Set<string>();
  let t = opts.now();
  let woke = false;
  let tokens = budget.burst;
  const child = superviseLines({
    file: opts.bridgeBin ?? 'bridge',
    args: ['monitor', 'fdb'],
    name: 'bridge monitor fdb',
    ...(opts.warn ? { warn: opts.warn } : {}),
    onChunk: () => {
      const was = t;
      t = opts.now();
      woke = false;
      tokens = Math.min(budget.burst, tokens + ((t - was) / 1e6) * budget.perMs);
      return Math.floor(tokens);
    },
    onExit: () => learning.clear(),
    ...(opts.realtimePriority ? { realtimePriority: opts.realtimePriority } : {}),
    onLine: (line) => {
      tokens--;
      const e = parseFdbLine(line);
      if (!e) return;
      if (!e.deleted && !learning.has(e.dev) && learning.size < MAX_LEARNING) learning.add(e.dev);
      const mv = track(e, t);
      if (!mv) return;
      // Full (a storm between two slow ticks): drop the OLDEST half. The detector judges moves
      // of the last few tens of ms, so keeping the first 4096 of a long interval would keep
      // only moves too old to count and hide the flap.
      if (buf.length >= MAX_BUFFERED) {
        buf.copyWithin(0, MAX_BUFFERED / 2);
        buf.length = MAX_BUFFERED / 2;
        dropped += MAX_BUFFERED / 2;
      }
      buf.push(mv);
      if (!woke) {
        woke = true;
        opts.onMove?.();
      }
    },
  });

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
      f.fdbPorts = learning;
    },
    learning: () => learning,
    consume() {},
    drain,
    get dropped() {
      return dropped;
    },
    restart() {
      track = createMoveTracker();
      child.restart();
    },
    close: () => child.close(),
  };
}
