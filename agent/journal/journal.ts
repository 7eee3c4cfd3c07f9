import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { JournalEvent } from '../types.js';

// Append-only JSON lines, fsync'd per event: the journal is the truth across crashes and
// restarts. Events are rare (trips, restores, overrides), so a synchronous fsync is cheap
// enough and keeps ordering trivial.

export interface Journal {
  append(e: JournalEvent): void;
  close(): void;
  readonly path: string;
}

export function openJournal(path: string): Journal {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  const fd = openSync(path, 'a', 0o640);
  return {
    path,
    append(e: JournalEvent): void {
      writeSync(fd, JSON.stringify(e) + '\n');
      fsyncSync(fd);
    },
    close(): void {
      closeSync(fd);
    },
  };
}

export interface ReadResult {
  events: JournalEvent[];
  /** Lines that could not be parsed (1-based line numbers): a torn last line after a crash. */
  badLines: number[];
}

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

export function readJournal(path: string): ReadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { events: [], badLines: [] };
    throw err;
  }
  return parseJournal(text);
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
 * The last maxLines lines of a journal file, read backwards in chunks so that a large journal
 * costs only what is returned. Parsed as parseJournal (bad lines reported, line numbers relative
 * to the tail). A missing file is an empty journal.
 *
 * Asynchronous and yielding: the daemon serves `events` from here while the sampler must keep its
 * period, and 10,000 evidence-carrying lines take ~0.5 s to parse in one go (measured: 3.5 kB
 * trip lines). Reads are async and parsing yields to the event loop after every 16 kB chunk
 * (longest block measured: ~10 ms, mostly GC, for a 10,000-line tail of 3.5 kB lines).
 */
export async function readJournalTail(path: string, maxLines: number): Promise<ReadResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { events: [], badLines: [] };
    throw err;
  }
  const rev: JournalEvent[] = [];
  const badFromEnd: number[] = [];
  let count = 0;
  const take = (line: string): void => {
    const e = parseLine(line);
    if (e === undefined) return;
    count++;
    if (e === null) badFromEnd.push(count);
    else rev.push(e);
  };
  try {
    // Small chunks: each is read, decoded and parsed in about a millisecond.
    const CHUNK = 16 * 1024;
    let pos = (await fh.stat()).size;
    // Bytes before the first newline of the region read last: the end of an earlier line.
    let carry = Buffer.alloc(0);
    while (pos > 0 && count < maxLines) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const b = Buffer.alloc(len);
      await fh.read(b, 0, len, pos);
      const region = carry.length > 0 ? Buffer.concat([b, carry]) : b;
      let e = region.length;
      while (e > 0 && count < maxLines) {
        const nl = region.lastIndexOf(0x0a, e - 1);
        if (nl < 0) break;
        take(region.toString('utf8', nl + 1, e));
        e = nl;
      }
      carry = region.subarray(0, e);
      // One chunk's worth of parsing at a time: the sampler gets the event loop in between.
      await new Promise<void>((r) => setImmediate(r));
    }
    if (pos === 0 && count < maxLines && carry.length > 0) take(carry.toString('utf8'));
  } finally {
    await fh.close();
  }
  const events = rev.reverse();
  const badLines = badFromEnd.map((n) => count - n + 1).reverse();
  return { events, badLines };
}
