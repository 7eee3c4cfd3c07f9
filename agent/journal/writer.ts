import { closeSync, constants, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { JournalEvent } from '../types.js';

// The journal's writer. It never throws and never blocks protection: a record that cannot be
// written (disk full, read-only, journal path refused) is kept in memory, bounded, and written
// when the disk takes it again, while the agent keeps acting and says loudly that its journal is
// failing (onCondition, once when it starts and once when it ends).
//
// Durability: `append` writes and fdatasyncs each record (trips, restores, overrides are rare).
// `intent` writes synchronously WITHOUT waiting for the disk and syncs right after: a write() that
// returned is in the page cache and survives a kill -9 of the agent (the kernel keeps it), at a
// cost of microseconds on the hot path instead of a millisecond fsync. Against power loss, an
// intent is durable once the sync that follows it ends (about a millisecond later); a link's
// admin state does not survive a power loss either.

export interface JournalHealth {
  /** Records are not reaching the disk right now. */
  failing: boolean;
  /** Why (the last error), or null. */
  error: string | null;
  /** When the current failure began (ISO), or null. */
  since: string | null;
  /** Records kept in memory, waiting to be written. */
  pending: number;
  /** Records lost because the memory queue was full (oldest non-trip records go first). */
  dropped: number;
  /** Write or sync failures since start. */
  failures: number;
}

export interface Journal {
  /** Write and sync one record; never throws (a failure queues it and raises the condition). */
  append(e: JournalEvent): void;
  /** Write one record now and sync it just after (page cache first: a kill -9 cannot lose it). */
  intent(e: JournalEvent): void;
  health(): JournalHealth;
  close(): void;
  readonly path: string;
}

export interface JournalOptions {
  /** The journal started failing (`failing: true`) or recovered (`failing: false`). */
  onCondition?: (h: JournalHealth) => void;
  /** Retry writing queued records this often while failing (ms, default 1000). */
  retryMs?: number;
  /** Records kept in memory at most (default 10,000). */
  maxPending?: number;
  /** The uid the journal file must belong to (default: ours). */
  uid?: number;
}

/** Records that decide what is down after a restart: dropped from a full queue last. */
const KEEP = new Set(['trip', 'trip-intent', 'restore', 'hold', 'release', 'hold-expired', 'undo']);

/**
 * Open (create) the journal for appending. Refuses a symlink (O_NOFOLLOW), anything but a regular
 * file, and a file owned by another user: the agent runs as root and must never append to
 * whatever a path points at (journal.jsonl -> /etc/passwd). A refusal is not fatal: the journal
 * starts failing and retries, the agent protects anyway.
 */
export function openJournal(path: string, opts: JournalOptions = {}): Journal {
  const uid = opts.uid ?? process.geteuid?.() ?? 0;
  const maxPending = opts.maxPending ?? 10_000;
  const queue: Buffer[] = [];
  const queueKeep: boolean[] = [];
  let fd: number | null = null;
  let closed = false;
  let syncDue = false;
  let retry: NodeJS.Timeout | null = null;
  const h: JournalHealth = { failing: false, error: null, since: null, pending: 0, dropped: 0, failures: 0 };

  const fail = (err: unknown): void => {
    h.failures++;
    h.error = err instanceof Error ? err.message : String(err);
    if (!h.failing) {
      h.failing = true;
      h.since = new Date().toISOString();
      opts.onCondition?.({ ...h, pending: queue.length });
    }
    if (!retry && !closed) {
      retry = setTimeout(() => ((retry = null), flush()), opts.retryMs ?? 1000);
      retry.unref();
    }
  };

  const openFd = (): number => {
    if (fd !== null) return fd;
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    // O_NONBLOCK: opening a FIFO for writing would wait for a reader forever (ENXIO instead).
    let f: number;
    try {
      f = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o640);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new Error(`journal ${path} is a symlink: refused`);
      if (code === 'ENXIO') throw new Error(`journal ${path} is not a regular file: refused`);
      throw err;
    }
    const st = fstatSync(f);
    const bad = !st.isFile() ? 'is not a regular file' : st.uid !== uid ? `belongs to uid ${st.uid}, not ${uid}` : null;
    if (bad) {
      closeSync(f);
      throw new Error(`journal ${path} ${bad}: refused`);
    }
    fd = f;
    return f;
  };

  /** Write one whole line or nothing: a short write on a full disk is cut back off the file. */
  const writeLine = (f: number, b: Buffer): void => {
    const size = fstatSync(f).size;
    let off = 0;
    try {
      while (off < b.length) off += writeSync(f, b, off, b.length - off);
    } catch (err) {
      if (off > 0) {
        try {
          ftruncateSync(f, size);
        } catch {
          // cannot cut it: the torn part is a bad line on replay (reported, skipped); the whole
          // record is written again after it, starting on a new line
          queue[0] = Buffer.concat([Buffer.from('\n'), queue[0]!]);
        }
      }
      throw err;
    }
  };

  /** Write queued records in order; false when the disk refused (they stay queued). */
  const flush = (): boolean => {
    if (closed && fd === null) return false;
    try {
      const f = openFd();
      while (queue.length > 0) {
        writeLine(f, queue[0]!);
        queue.shift();
        queueKeep.shift();
      }
      if (syncDue) {
        fdatasyncSync(f);
        syncDue = false;
      }
    } catch (err) {
      if (fd !== null && (err as NodeJS.ErrnoException).code === 'EBADF') fd = null;
      fail(err);
      return false;
    }
    h.pending = 0;
    if (h.failing) {
      h.failing = false;
      opts.onCondition?.({ ...h });
      h.error = null;
      h.since = null;
    }
    return true;
  };

  const enqueue = (e: JournalEvent): void => {
    let line: string;
    try {
      line = JSON.stringify(e) + '\n';
    } catch (err) {
      line = JSON.stringify({ ts: e.ts, event: e.event, port: e.port, reason: e.reason, unserializable: String(err) }) + '\n';
    }
    if (queue.length >= maxPending) {
      // Bounded: the oldest record that does not decide a port's state goes first.
      let i = queueKeep.indexOf(false);
      if (i < 0) i = 0;
      queue.splice(i, 1);
      queueKeep.splice(i, 1);
      h.dropped++;
    }
    queue.push(Buffer.from(line));
    queueKeep.push(KEEP.has(e.event));
    h.pending = queue.length;
  };

  let syncTimer: NodeJS.Immediate | null = null;
  return {
    path,
    append(e) {
      if (closed) return;
      enqueue(e);
      syncDue = true;
      flush();
    },
    intent(e) {
      if (closed) return;
      enqueue(e);
      if (!flush()) return;
      syncDue = true;
      syncTimer ??= setImmediate(() => {
        syncTimer = null;
        if (syncDue) flush();
      });
    },
    health: () => ({ ...h, pending: queue.length }),
    close() {
      if (queue.length > 0 || syncDue) flush();
      closed = true;
      if (retry) clearTimeout(retry);
      if (syncTimer) clearImmediate(syncTimer);
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}
