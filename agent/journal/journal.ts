import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { JournalEvent } from '../types.js';

// Append-only JSON lines: the journal is the truth across crashes and restarts. Writing (fsync'd
// records, intents before link-downs, failure handling) is journal/writer.ts; reading and the
// replay rules are here.

export { openJournal, type Journal, type JournalHealth, type JournalOptions } from './writer.js';

export interface ReadResult {
  events: JournalEvent[];
  /** Lines that could not be parsed (1-based line numbers): a torn last line after a crash. */
  badLines: number[];
  /** Why the journal could not be read at all (a symlink, not a regular file, EIO), if so. */
  error?: string;
}

/** A line longer than this is not a record the agent wrote (~3.5 kB with evidence): skipped as bad. */
export const MAX_RECORD_BYTES = 1024 * 1024;

/** Parse journal text; a torn or corrupt line is reported and skipped, never fatal. Pure. */
export function parseJournal(text: string): ReadResult {
  const events: JournalEvent[] = [];
  const badLines: number[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const e = parseLine(lines[i]!);
    if (e === null) badLines.push(i + 1);
    else if (e !== undefined) events.push(e);
  }
  return { events, badLines };
}

/** One journal line: the event, null when it does not parse as one, undefined when blank. */
function parseLine(line: string): JournalEvent | null | undefined {
  if (line.trim() === '') return undefined;
  try {
    const e = JSON.parse(line) as JournalEvent;
    if (typeof e !== 'object' || e === null || typeof e.event !== 'string' || typeof e.port !== 'string') return null;
    return e;
  } catch {
    return null;
  }
}

/**
 * The whole journal, for the replay at start. Never throws: a missing file is empty; a symlink,
 * a non-regular file or a read error is an empty journal with `error` set (the agent then
 * protects without its memory and says so, rather than not protecting at all).
 */
export function readJournal(path: string): ReadResult {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { events: [], badLines: [] };
    return { events: [], badLines: [], error: code === 'ELOOP' ? `${path} is a symlink: refused` : (err as Error).message };
  }
  try {
    if (!fstatSync(fd).isFile()) return { events: [], badLines: [], error: `${path} is not a regular file: refused` };
    return parseJournal(readFileSync(fd, 'utf8'));
  } catch (err) {
    return { events: [], badLines: [], error: (err as Error).message };
  } finally {
    closeSync(fd);
  }
}

export interface TrippedPort {
  port: string;
  since: string;
  reason: string;
  event: JournalEvent;
}

/**
 * Which ports must be down after a restart: the last trip of a port not followed by a restore.
 * A "would-trip" (dry run) never counts. Pure.
 */
export function trippedPorts(events: readonly JournalEvent[]): Map<string, TrippedPort> {
  const out = new Map<string, TrippedPort>();
  for (const e of events) {
    // A hold that ended (released or expired) leaves the port down until a restore, like a trip;
    // the trip's own event is kept when there was one, for `why`.
    if (e.event === 'trip') out.set(e.port, { port: e.port, since: e.ts, reason: e.reason, event: e });
    // Written before the link-down: without its completion (a kill in between), the port may be
    // down already, so it counts as tripped. A failed link-down ends it (the port stayed up).
    else if (e.event === 'trip-intent') out.set(e.port, { port: e.port, since: e.ts, reason: e.reason, event: e });
    else if (e.event === 'action-failed' && out.get(e.port)?.event.event === 'trip-intent' && e.action?.kind === 'link-down') out.delete(e.port);
    else if (e.event === 'release' || e.event === 'hold-expired') out.set(e.port, { port: e.port, since: e.ts, reason: e.reason, event: out.get(e.port)?.event ?? e });
    // An undo (the link-down cut the management path, so it was brought back up) ends a trip
    // as a restore does: a restart must not put the management path down again.
    else if (e.event === 'restore' || e.event === 'undo') out.delete(e.port);
  }
  return out;
}

export interface HeldPort {
  port: string;
  since: string;
  reason: string;
  /** Who held it, as journaled (a string or the kernel's { uid, source }). */
  by: unknown;
  /** Wall-clock ms (epoch) when the hold expires, or null: until released. */
  untilMs: number | null;
}

/**
 * Which ports were held when the journal ends: the last operator 'hold' of a port not followed by
 * 'release', 'hold-expired' or 'restore'. Confirmation lines (`applied: true`) do not start a hold.
 * Pure.
 */
export function heldPorts(events: readonly JournalEvent[]): Map<string, HeldPort> {
  const out = new Map<string, HeldPort>();
  for (const e of events) {
    if (e.event === 'hold' && e.applied !== true) {
      const u = typeof e.untilMs === 'number' && Number.isFinite(e.untilMs) ? e.untilMs : null;
      out.set(e.port, { port: e.port, since: e.ts, reason: e.reason, by: e.by, untilMs: u });
    } else if (e.event === 'release' || e.event === 'hold-expired' || e.event === 'restore') {
      out.delete(e.port);
    }
  }
  return out;
}

/**
 * The last maxLines lines of a journal file (at most maxBytes of it), read backwards in chunks so
 * that a large journal costs only what is returned. Parsed as parseJournal (bad lines reported,
 * line numbers relative to the tail); a line over MAX_RECORD_BYTES is skipped as bad without
 * being decoded. A missing file is an empty journal; a symlink or non-regular file is refused.
 *
 * Asynchronous and yielding: the daemon serves `events` from here while the sampler must keep its
 * period. Reads are async and parsing yields to the event loop after every 16 kB chunk. The
 * unfinished line at the front of what was read is kept as a list of chunks, joined once when its
 * start is found: concatenating it chunk by chunk cost quadratic time (a 32 MB line: 27.7 s).
 */
export async function readJournalTail(path: string, maxLines: number, maxBytes = 16 * 1024 * 1024): Promise<ReadResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { events: [], badLines: [] };
    if (code === 'ELOOP') return { events: [], badLines: [], error: `${path} is a symlink: refused` };
    throw err;
  }
  const rev: JournalEvent[] = [];
  const badFromEnd: number[] = [];
  let count = 0;
  const take = (line: string | null): void => {
    const e = line === null ? null : parseLine(line);
    if (e === undefined) return;
    count++;
    if (e === null) badFromEnd.push(count);
    else rev.push(e);
  };
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { events: [], badLines: [], error: `${path} is not a regular file: refused` };
    const CHUNK = 16 * 1024;
    const floor = Math.max(0, st.size - maxBytes);
    let pos = st.size;
    // The end of a line whose start is further back: chunks, newest last; its length in bytes.
    let carry: Buffer[] = [];
    let carryBytes = 0;
    const takeCarry = (head: Buffer): void => {
      const len = head.length + carryBytes;
      take(len > MAX_RECORD_BYTES ? null : Buffer.concat([head, ...carry]).toString('utf8'));
      carry = [];
      carryBytes = 0;
    };
    while (pos > floor && count < maxLines) {
      const len = Math.min(CHUNK, pos - floor);
      pos -= len;
      const b = Buffer.alloc(len);
      await fh.read(b, 0, len, pos);
      let e = len;
      let nl = b.lastIndexOf(0x0a, e - 1);
      if (nl >= 0 && (carryBytes > 0 || nl + 1 < e)) takeCarry(b.subarray(nl + 1, e));
      while (nl >= 0 && count < maxLines) {
        e = nl;
        nl = e > 0 ? b.lastIndexOf(0x0a, e - 1) : -1;
        if (nl < 0) break;
        take(b.toString('utf8', nl + 1, e));
      }
      if (count >= maxLines) break;
      const head = b.subarray(0, e);
      // Over the record limit: remember only its length (skipped as bad when its start is found).
      if (carryBytes + head.length > MAX_RECORD_BYTES) carry = [];
      else carry.unshift(head);
      carryBytes += head.length;
      // One chunk's worth of parsing at a time: the sampler gets the event loop in between.
      await new Promise<void>((r) => setImmediate(r));
    }
    if (pos === 0 && count < maxLines && carryBytes > 0) takeCarry(Buffer.alloc(0));
  } finally {
    await fh.close();
  }
  const events = rev.reverse();
  const badLines = badFromEnd.map((n) => count - n + 1).reverse();
  return { events, badLines };
}
