import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
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
    const line = lines[i]!;
    if (line.trim() === '') continue;
    try {
      const e = JSON.parse(line) as JournalEvent;
      if (typeof e !== 'object' || e === null || typeof e.event !== 'string' || typeof e.port !== 'string') throw new Error('not an event');
      events.push(e);
    } catch {
      badLines.push(i + 1);
    }
  }
  return { events, badLines };
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
    if (e.event === 'trip') out.set(e.port, { port: e.port, since: e.ts, reason: e.reason, event: e });
    else if (e.event === 'restore') out.delete(e.port);
  }
  return out;
}
