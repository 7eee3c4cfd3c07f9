import { deliverLines, superviseLines } from '../host/line-child.js';
import { createMoveTracker, parseFdbLine } from './fdb-lines.js';
import { createNativeMoves } from './tripwire-moves.js';
import type { FdbMove, PortPolicy, PortRates, TickFrame, TickSource } from '../types.js';

// `bridge monitor fdb` streams RTM_NEWNEIGH for every learn and every move. In a loop the same
// source MAC is re-learned on alternating ports thousands of times a second, which is the
// clearest loop clue there is. The stream can overflow (ENOBUFS) and the process exit under a
// storm: we restart it with backoff and treat it as a clue, never as the only evidence.

export { createMoveTracker, parseFdbLine, type FdbLine } from './fdb-lines.js';

/** A TickSource of clues only: no ports of its own, the moves go into the tick's frame. */
export interface FdbSource extends TickSource {
  /** Ports the bridge was seen learning a MAC on since the monitor (re)started. */
  learning(): ReadonlySet<string>;
  /** Bridges seen learning a MAC (on any of their ports) since the monitor (re)started. */
  learningBridges(): ReadonlySet<string>;
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
  /**
   * A MAC moved: called at most once per chunk of the monitor's output for its own moves
   * (byThread false) and once for the tripwire's taken in with that chunk (byThread true); the
   * scheduler wakes the sampler (see daemon/scheduler.ts onMoves for why the two differ).
   */
  onMove?: (byThread: boolean) => void;
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
  /** The tripwire's moves and where an ifindex is (sources/tripwire-moves.ts): the same flap, ~2 ms sooner. */
  tripwire?: { read: () => ReadonlyArray<number | string>; portAt: (ifindex: number) => { name: string; bridge: string | null } | undefined };
}): FdbSource {
  const budget = opts.lineBudget ?? { perMs: LINES_PER_MS, burst: LINE_BURST };
  const moves = createMoveBuffer();
  let track = createMoveTracker();
  // Where the bridge learns, a loop through the port flaps the circling frames' source MACs
  // (they arrive from both directions): the detector then asks for that flap rather than take
  // rx ≈ tx alone for a loop (a DHCP server answering a PXE wave is rx ≈ tx too). Forgotten
  // when the monitor restarts: moves it missed meanwhile must not count as "no flap".
  const learning = new Set<string>();
  // The same per bridge: a port whose MACs were all learned before the agent started prints no
  // line, yet a loop through it flaps the circling frames' MACs like any port of a learning
  // bridge (an uplink never seen learning let a PXE wave through vm1 and up1 read as a loop by
  // rate alone: clean-clone CI, session 18).
  const bridges = new Set<string>();
  let t = opts.now();
  let woke = false;
  let wokeByThread = false;
  let tokens = budget.burst;
  const native = opts.tripwire ? createNativeMoves(opts.tripwire.read, opts.tripwire.portAt) : null;
  const keep = moves.keep;
  // The thread's moves are taken in at each chunk, and the monitor's lines for those same moves
  // are then not counted again (seen): a flap the thread sees all of (a broadcast loop) woke the
  // sampler only when a line happened to come first. Its moves wake too (see onMove).
  const keepByThread = (mv: FdbMove): void => {
    keep(mv);
    if (wokeByThread) return;
    wokeByThread = true;
    opts.onMove?.(true);
  };
  const child = superviseLines({
    file: opts.bridgeBin ?? 'bridge',
    args: ['monitor', 'fdb'],
    name: 'bridge monitor fdb',
    ...(opts.warn ? { warn: opts.warn } : {}),
    onChunk: () => {
      woke = false;
      wokeByThread = false;
      native?.pull(keepByThread); // first: a line's move the thread saw already is not counted again
      const was = t;
      t = opts.now();
      tokens = Math.min(budget.burst, tokens + ((t - was) / 1e6) * budget.perMs);
      return Math.floor(tokens);
    },
    onExit: () => {
      learning.clear();
      bridges.clear();
    },
    ...(opts.realtimePriority ? { realtimePriority: opts.realtimePriority } : {}),
    onLine: (line) => {
      tokens--;
      const e = parseFdbLine(line);
      if (!e) return;
      if (!e.deleted) {
        if (!learning.has(e.dev) && learning.size < MAX_LEARNING) learning.add(e.dev);
        // Per line, not per new port: a port moved to another bridge learns there under its old name.
        if (e.master && !bridges.has(e.master) && bridges.size < MAX_LEARNING) bridges.add(e.master);
      }
      const mv = track(e, t);
      if (!mv || native?.seen(mv)) return;
      keep(mv);
      if (woke) return;
      woke = true;
      opts.onMove?.(false);
    },
  });

  return {
    id: 'fdb',
    ports: () => NO_PORTS,
    rates: () => NO_RATES,
    fresh: () => true,
    collect(f: TickFrame) {
      native?.pull(keep);
      f.fdbMoves = moves.drain();
      f.fdbPorts = learning;
      f.fdbBridges = bridges;
    },
    learning: () => learning,
    learningBridges: () => bridges,
    consume() {},
    drain: moves.drain,
    get dropped() {
      return moves.dropped();
    },
    restart() {
      track = createMoveTracker();
      child.restart();
    },
    close: () => child.close(),
  };
}

/** Moves between two drains, in two arrays reused in turn (drain hands one out, the other fills). */
function createMoveBuffer(): { keep(mv: FdbMove): void; drain(): readonly FdbMove[]; dropped(): number } {
  let buf: FdbMove[] = [];
  let spare: FdbMove[] = [];
  let dropped = 0;
  return {
    keep(mv) {
      // Full (a storm between two slow ticks): drop the OLDEST half. The detector judges moves
      // of the last few tens of ms, so keeping the first 4096 of a long interval would keep
      // only moves too old to count and hide the flap.
      if (buf.length >= MAX_BUFFERED) {
        buf.copyWithin(0, MAX_BUFFERED / 2);
        buf.length = MAX_BUFFERED / 2;
        dropped += MAX_BUFFERED / 2;
      }
      buf.push(mv);
    },
    drain() {
      const out = buf;
      buf = spare;
      buf.length = 0;
      spare = out;
      return out;
    },
    dropped: () => dropped,
  };
}

/**
 * Pay the FDB path's first-run costs at start (issue 11 item 4): the parser's regular expressions
 * compile on their first use and its code runs interpreted until warm, and an idle bridge prints
 * no line for months. A cold kvm storm's first chunk (48 lines) held the JS thread 0.57-0.80 ms,
 * in front of the tick that judged the loop (lab trace, session 17), against ~0.1 ms warm.
 * Synthetic chunks in `bridge monitor fdb`'s format (learns, a MAC flapping between two ports,
 * self entries, deletes) go through deliverLines, parseFdbLine and a throwaway move tracker:
 * 60 chunks cost ~11-15 ms at start and bring a first 48-line chunk from 0.46-0.54 ms to
 * ~0.19 ms (node, this machine). Pure; returns the moves seen (a warm-up that saw none warmed nothing).
 */
export function warmUpFdbParsing(chunks = 60): number {
  const track = createMoveTracker();
  let moves = 0;
  let rest = '';
  const onLine = (line: string): void => {
    const e = parseFdbLine(line);
    if (e !== null && track(e, moves) !== null) moves++;
  };
  for (let c = 0; c < chunks; c++) {
    const port = c % 2 === 0 ? 'warm-a' : 'warm-b';
    let text = rest;
    for (let i = 0; i < 24; i++) {
      const mac = `02:00:5e:00:00:${i.toString(16).padStart(2, '0')}`;
      text += i % 8 === 7 ? `Deleted ${mac} dev ${port} master (warm-up) stale\n` : `${mac} dev ${port} master (warm-up) \n`;
      if (i % 12 === 0) text += `${mac} dev ${port} self permanent\n`;
    }
    rest = deliverLines(`${text}02:00:5e:ff:ff`, c % 3 === 0 ? 8 : Infinity, onLine);
  }
  return moves;
}

