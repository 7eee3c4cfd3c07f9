import { constants } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { open, type FileHandle } from 'node:fs/promises';
import type { JournalEvent } from '../types.js';
import type { Pacer } from './pacer.js';

// Reading the journal's end back (`events`) while the sampler shares the event loop. Two passes
// over one open file: the first walks back from the end in CHUNK-sized reads and keeps only the
// byte ranges of the lines it selects; the second reads those ranges forward, SLICE bytes at a
// time, as the client takes them, and hands out the lines as they are on disk. Neither pass
// holds more than a slice (or one line) of the file in memory, and nothing of it lives long on
// the JS heap: the parsed object of a line is garbage at once. Building the whole answer as
// objects (9 MB of journal: 3,000 events of 3 kB) cost scavenges that copied every live string,
// 10-25 ms each, and a stringify per batch; four clients looping `events` then held the sampler
// for up to 350 ms and a storm leaked 17k frames instead of ~1k.

/** A line longer than this is not a record the agent wrote (~3.5 kB with evidence): skipped as bad. */
export const MAX_RECORD_BYTES = 1024 * 1024;
/** Bytes read per step of the backward pass; its lines are parsed before the next yield. */
const CHUNK = 16 * 1024;
/** Bytes of selected lines read per step of the forward pass (a longer line is read alone). */
const SLICE = 32 * 1024;

/** One journal line: the event, null when it does not parse as one, undefined when blank. */
export function parseLine(line: string): JournalEvent | null | undefined {
  if (line.trim() === '') return undefined;
  try {
    const e = JSON.parse(line) as JournalEvent;
    if (typeof e !== 'object' || e === null || typeof e.event !== 'string' || typeof e.port !== 'string') return null;
    return e;
  } catch {
    return null;
  }
}

export interface TailOptions {
  /** Select at most this many lines (the newest). */
  maxLines: number;
  /** Look at most this far back from the end of the file. */
  maxBytes?: number;
  /** Which events to select (default: all). */
  keep?: (e: JournalEvent) => boolean;
  /** Shared byte budget, taken before every read of both passes (journal/pacer.ts). */
  pace?: Pacer;
}

/** The lines a backward pass selected, still on disk; read them with lines(), then close(). */
export interface TailSelection {
  /** Lines selected. */
  readonly count: number;
  /** Lines looked at that do not parse (1-based, counted from the oldest line looked at). */
  readonly badLines: number[];
  /**
   * The selected lines, oldest first, in slices of about SLICE bytes, each line as JSON text
   * (as on disk; re-encoded only if it is not valid UTF-8). Single use. Each line is parsed
   * again on the way: one that changed under the reader (the file cut by hand) is left out.
   */
  lines(): AsyncGenerator<Buffer[]>;
  close(): Promise<void>;
}

export type TailResult = TailSelection | { error: string };

const yieldLoop = (): Promise<void> => new Promise((r) => setImmediate(r));
const unpaced: Pacer = { take: async () => undefined };

/**
 * Select the newest lines of a journal file that `keep` accepts, walking back from its end at
 * most maxBytes. A missing file selects nothing; a symlink or a non-regular file is refused
 * (the journal is opened O_NOFOLLOW, like the writer does). Yields to the event loop after every
 * CHUNK read; a line over MAX_RECORD_BYTES is counted as bad without being decoded.
 */
export async function selectTail(path: string, o: TailOptions): Promise<TailResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return emptySelection();
    if (code === 'ELOOP') return { error: `${path} is a symlink: refused` };
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      return { error: `${path} is not a regular file: refused` };
    }
    const pace = o.pace ?? unpaced;
    const picked = await scanBack(fh, st.size, o, pace);
    return selection(fh, picked, pace);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
}

interface Picked {
  /** [start, end) byte ranges of the selected lines, newest first. */
  ranges: number[];
  badLines: number[];
  keep: (e: JournalEvent) => boolean;
}

/** The backward pass: ranges of the newest kept lines. */
async function scanBack(fh: FileHandle, size: number, o: TailOptions, pace: Pacer): Promise<Picked> {
  const keep = o.keep ?? (() => true);
  const ranges: number[] = [];
  const badFromEnd: number[] = [];
  let seen = 0;
  const take = (text: string | null, start: number, end: number): void => {
    const e = text === null ? null : parseLine(text);
    if (e === undefined) return;
    seen++;
    if (e === null) badFromEnd.push(seen);
    else if (keep(e)) ranges.push(start, end);
  };
  const full = (): boolean => ranges.length >= 2 * o.maxLines;
  const picked = (): Picked => ({ ranges, badLines: badFromEnd.map((n) => seen - n + 1).reverse(), keep });
  const floor = Math.max(0, size - (o.maxBytes ?? 16 * 1024 * 1024));
  const b = Buffer.allocUnsafe(CHUNK);
  // The end of a line whose start is further back: its pieces (kept while under the record
  // limit), newest last, and the file offset where the line ends.
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let carryEnd = size;
  const takeCarry = (head: Buffer, start: number): void => {
    const len = head.length + carryBytes;
    take(len > MAX_RECORD_BYTES ? null : Buffer.concat([head, ...carry]).toString('utf8'), start, carryEnd);
    carry = [];
    carryBytes = 0;
  };
  let pos = size;
  while (pos > floor && !full()) {
    const len = Math.min(CHUNK, pos - floor);
    pos -= len;
    await pace.take(len);
    const { bytesRead } = await fh.read(b, 0, len, pos);
    // The file was cut while we read it (by hand: the agent only appends): keep what was found.
    if (bytesRead < len) return picked();
    let e = len;
    let nl = b.lastIndexOf(0x0a, e - 1);
    if (nl >= 0 && (carryBytes > 0 || nl + 1 < e)) takeCarry(b.subarray(nl + 1, e), pos + nl + 1);
    if (nl >= 0) carryEnd = pos + nl;
    while (nl >= 0 && !full()) {
      e = nl;
      nl = e > 0 ? b.lastIndexOf(0x0a, e - 1) : -1;
      if (nl < 0) break;
      take(b.toString('utf8', nl + 1, e), pos + nl + 1, pos + e);
      carryEnd = pos + nl;
    }
    if (full()) break;
    const head = b.subarray(0, e);
    // Over the record limit: only its length is kept (counted as bad when its start is found).
    if (carryBytes + head.length > MAX_RECORD_BYTES) carry = [];
    else carry.unshift(Buffer.from(head));
    carryBytes += head.length;
    await yieldLoop();
  }
  if (pos === 0 && !full() && carryBytes > 0) takeCarry(Buffer.alloc(0), 0);
  return picked();
}

function emptySelection(): TailSelection {
  return {
    count: 0,
    badLines: [],
    async *lines() {},
    close: async () => undefined,
  };
}

/** The forward pass over the picked ranges, oldest first. */
function selection(fh: FileHandle, p: Picked, pace: Pacer): TailSelection {
  const { ranges, keep } = p;
  let closed = false;
  async function* lines(): AsyncGenerator<Buffer[]> {
    // ranges holds newest first: walk it from its end.
    let i = ranges.length - 2;
    while (i >= 0 && !closed) {
      // Lines whose span fits one slice together (or one line alone) are read in one go.
      const from = ranges[i]!;
      let j = i;
      while (j - 2 >= 0 && ranges[j - 1]! - from <= SLICE) j -= 2;
      const to = ranges[j + 1]!;
      await pace.take(to - from);
      if (closed) return;
      const buf = Buffer.allocUnsafe(to - from);
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      const out: Buffer[] = [];
      for (let k = i; k >= j; k -= 2) {
        const s = ranges[k]! - from;
        const e = ranges[k + 1]! - from;
        if (e > bytesRead) break;
        const line = buf.subarray(s, e);
        const ev = parseLine(line.toString('utf8'));
        if (!ev || !keep(ev)) continue;
        out.push(isUtf8(line) ? line : Buffer.from(JSON.stringify(ev)));
      }
      if (bytesRead < buf.length) {
        if (out.length > 0) yield out;
        return; // cut under us: the rest is gone
      }
      if (out.length > 0) yield out;
      i = j - 2;
    }
  }
  return {
    count: ranges.length / 2,
    badLines: p.badLines,
    lines,
    async close() {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}
