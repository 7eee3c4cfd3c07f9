import { closeSync, constants, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { JournalEvent } from '../types.js';

// The journal's writer. It never throws and never blocks protection: a record that cannot be
// written (disk full, read-only, journal path refused) is kept in memory, bounded, and written
// when the disk takes it again, while the agent keeps acting and says loudly that its journal is
// failing (onCondition, once when it starts and once when it ends).
//
// Durability: every record is written synchronously: a write() that returned is in the page
// cache and survives a kill -9 of the agent (the kernel keeps it). The fdatasync that follows
// runs on libuv's pool, one at a time, covering every record written before it: against power
// loss a record is durable once that sync ends (about a millisecond later); a link's admin state
// does not survive a power loss either. The sync ran on the JS thread until session 12: during a
// storm each trip's and escalation's record held the sampler there 0.6-5 ms (lab probes, three
// uplinks), in front of the next member's verdict. `intent` syncs after the current turn of the
// event loop, so a link-down never waits for even the sync's start.

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
  /** fs.fdatasync (tests give a slower or failing one). */
  sync?: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;
}

/** Records that decide what is down after a restart: dropped from a full queue last. */
const KEEP = new Set(['trip', 'trip-intent', 'restore', 'hold', 'release', 'hold-expired', 'undo']);

/**
 * Open (create) the journal file for appending: O_NOFOLLOW (a symlink is refused), O_NONBLOCK
 * (a FIFO would wait for a reader forever: ENXIO instead), a regular file owned by `uid`.
 */
function openJournalFd(path: string, uid: number): number {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
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
  return f;
}

/**
 * Write one whole line or nothing: a short write on a full disk is cut back off the file. When
 * it cannot be cut, the error is marked `torn`: the caller writes the record again on a new line
 * (the torn part is then one bad line on replay, reported and skipped).
 */
function writeWholeLine(f: number, b: Buffer): void {
  const size = fstatSync(f).size;
  let off = 0;
  try {
    while (off < b.length) off += writeSync(f, b, off, b.length - off);
  } catch (err) {
    if (off > 0) {
      try {
        ftruncateSync(f, size);
      } catch {
        throw Object.assign(new Error((err as Error).message), { torn: true, cause: err });
      }
    }
    throw err;
  }
}

/** Records waiting for the disk, at most max; a full queue drops the oldest record that decides no port first. */
function pendingQueue(max: number, h: JournalHealth) {
  const lines: Buffer[] = [];
  const keep: boolean[] = [];
  return {
    lines,
    push(e: JournalEvent): void {
      let line: string;
      try {
        line = JSON.stringify(e) + '\n';
      } catch (err) {
        line = JSON.stringify({ ts: e.ts, event: e.event, port: e.port, reason: e.reason, unserializable: String(err) }) + '\n';
      }
      if (lines.length >= max) {
        let i = keep.indexOf(false);
        if (i < 0) i = 0;
        lines.splice(i, 1);
        keep.splice(i, 1);
        h.dropped++;
      }
      lines.push(Buffer.from(line));
      keep.push(KEEP.has(e.event));
    },
    shift(): void {
      lines.shift();
      keep.shift();
    },
  };
}

/**
 * The journal: append (write + fdatasync) and intent (write now, sync right after). A refused
 * path, ENOSPC, EROFS or EIO is not fatal: records wait in memory and the condition is reported
 * (onCondition) once when it starts and once when it ends; the agent protects anyway.
 */
export function openJournal(path: string, opts: JournalOptions = {}): Journal {
  const uid = opts.uid ?? process.geteuid?.() ?? 0;
  const h: JournalHealth = { failing: false, error: null, since: null, pending: 0, dropped: 0, failures: 0 };
  const queue = pendingQueue(opts.maxPending ?? 10_000, h);
  let fd: number | null = null;
  let closed = false;
  let syncDue = false;
  let retry: NodeJS.Timeout | null = null;
  let syncTimer: NodeJS.Immediate | null = null;

  /** The last sync, on this thread (shutdown may wait), then the fd closes. */
  const finishClose = (): void => {
    if (fd === null) return;
    try {
      fdatasyncSync(fd);
    } catch {
      // nothing more to do at close: the records were written
    }
    closeSync(fd);
    fd = null;
  };
  const fail = (err: unknown): void => {
    h.failures++;
    h.error = err instanceof Error ? err.message : String(err);
    if (!h.failing) {
      h.failing = true;
      h.since = new Date().toISOString();
      opts.onCondition?.({ ...h, pending: queue.lines.length });
    }
    if (!retry && !closed) {
      retry = setTimeout(() => ((retry = null), flush()), opts.retryMs ?? 1000);
      retry.unref();
    }
  };
  const recovered = (): void => {
    h.pending = 0;
    if (!h.failing) return;
    h.failing = false;
    opts.onCondition?.({ ...h });
    h.error = null;
    h.since = null;
  };
  const syncFd = opts.sync ?? fdatasync;
  let syncing = false;
  let syncFailed = false;
  /** One fdatasync at a time on the pool; one more after it if records were written meanwhile. */
  const startSync = (f: number): void => {
    if (syncing || !syncDue) return;
    syncing = true;
    syncDue = false;
    syncFd(f, (err) => {
      syncing = false;
      if (closed) return finishClose();
      if (err) {
        syncFailed = true;
        syncDue = true; // the retry syncs again
        return fail(err);
      }
      syncFailed = false;
      recovered();
      startSync(f);
    });
  };
  /** Write queued records in order (and sync, unless `sync` is false); false when the disk refused (they stay queued). */
  const flush = (sync = true): boolean => {
    if (closed && fd === null) return false;
    try {
      fd ??= openJournalFd(path, uid);
      while (queue.lines.length > 0) {
        writeWholeLine(fd, queue.lines[0]!);
        queue.shift();
      }
      if (sync) startSync(fd);
    } catch (err) {
      // A torn line that could not be cut off: the record is written again on a line of its own.
      if ((err as { torn?: boolean }).torn) queue.lines[0] = Buffer.concat([Buffer.from('\n'), queue.lines[0]!]);
      fail(err);
      return false;
    }
    if (!syncFailed) recovered(); // else when a sync succeeds again
    return true;
  };

  return {
    path,
    append(e) {
      if (closed) return;
      queue.push(e);
      syncDue = true;
      flush();
    },
    intent(e) {
      if (closed) return;
      queue.push(e);
      // No sync here, not even one owed by an earlier intent: the link-down waits on this write only.
      if (!flush(false)) return;
      syncDue = true;
      syncTimer ??= setImmediate(() => {
        syncTimer = null;
        if (syncDue) flush();
      });
    },
    health: () => ({ ...h, pending: queue.lines.length }),
    close() {
      if (closed) return;
      if (queue.lines.length > 0) flush(false);
      closed = true;
      if (retry) clearTimeout(retry);
      if (syncTimer) clearImmediate(syncTimer);
      if (!syncing) finishClose(); // else when the sync in flight ends (its fd must stay open)
    },
  };
}
