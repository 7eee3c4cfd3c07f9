import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import type { JournalEvent } from '../types.js';
import { parseLine, selectTail } from './tail.js';

// Append-only JSON lines: the journal is the truth across crashes and restarts. Writing (fsync'd
// records, intents before link-downs, failure handling) is journal/writer.ts; reading and the
// replay rules are here; reading back the end of the file in slices is journal/tail.ts.

export { MAX_RECORD_BYTES, selectTail, type TailSelection, type TailResult } from './tail.js';
export { openJournal, type Journal, type JournalHealth, type JournalOptions } from './writer.js';

export interface ReadResult {
  events: JournalEvent[];
  /** Lines that could not be parsed (1-based line numbers): a torn last line after a crash. */
  badLines: number[];
  /** Why the journal could not be read at all (a symlink, not a regular file, EIO), if so. */
  error?: string;
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
 * The last maxLines lines of a journal file (within its last maxBytes) as events, read as
 * journal/tail.ts reads them for `events` (bad lines reported, numbered from the oldest line
 * looked at). A missing file is an empty journal; a symlink or non-regular file is refused.
 */
export async function readJournalTail(path: string, maxLines: number, maxBytes = 16 * 1024 * 1024): Promise<ReadResult> {
  const sel = await selectTail(path, { maxLines, maxBytes });
  if ('error' in sel) return { events: [], badLines: [], error: sel.error };
  const events: JournalEvent[] = [];
  try {
    for await (const slice of sel.lines()) for (const line of slice) events.push(JSON.parse(line.toString('utf8')) as JournalEvent);
  } finally {
    await sel.close();
  }
  return { events, badLines: sel.badLines };
}
