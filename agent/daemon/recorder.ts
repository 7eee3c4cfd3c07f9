import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { JournalEvent, Policy } from '../types.js';
import { openJournal, readJournal, type Journal, type JournalHealth, type ReadResult } from '../journal/journal.js';
import { createNotifier as createSdNotifier, type Notifier as SdNotifier } from '../notify/sdnotify.js';
import type { EventNotifier, WebhookOptions } from '../notify/webhook.js';
import { startNotifiers, type Notifiers } from './notifiers.js';

// Everything that happens is recorded once, here: the journal line (fsync'd), the notifiers
// (enqueued, never awaited), systemd's STATUS, the log at the event's level, and the in-memory
// views the control socket answers from (recent events, each port's last trip).

/** The events sent to webhooks and hooks (the rest are journaled and logged only). */
const NOTIFIED: ReadonlySet<string> = new Set(['trip', 'would-trip', 'restore', 'escalate', 'action-failed', 'reassert', 'hold', 'release', 'recovery-exhausted', 'reload-failed', 'undo', 'reachability-down', 'reachability-up']);
const LAST_EVENTS = 200;

export interface Recorder {
  record(e: JournalEvent): void;
  /** A trip-intent, written before the link-down without waiting for the disk (see journal/writer.ts). */
  intent(e: JournalEvent): void;
  /** Is the journal reaching the disk? */
  journalHealth(): JournalHealth;
  /** Every event recorded from now on (a waiting CLI command); returns the unsubscribe. */
  onRecord(fn: (e: JournalEvent) => void): () => void;
  /** The last events, oldest first (for status). */
  recent(): readonly JournalEvent[];
  /** Each port's last trip or would-trip (for `why`, and an ESXi undo's record). */
  readonly lastTrip: ReadonlyMap<string, JournalEvent>;
  /** Trips per port since start (metrics). */
  readonly tripsTotal: ReadonlyMap<string, number>;
  readonly journalPath: string;
  close(): void;
}

export interface RecorderDeps {
  journal: Journal;
  /** The journal read at start: the views begin where the last run ended. */
  replayed: readonly JournalEvent[];
  log: Logger;
  sd: Pick<SdNotifier, 'status'>;
  hooks: EventNotifier | null;
}

export function createRecorder(d: RecorderDeps): Recorder {
  const recent: JournalEvent[] = d.replayed.slice(-LAST_EVENTS);
  const lastTrip = new Map<string, JournalEvent>();
  for (const e of d.replayed) {
    if (e.event === 'trip' || e.event === 'would-trip') lastTrip.set(e.port, e);
    else if (e.event === 'capture') withCapture(lastTrip, e);
  }
  const tripsTotal = new Map<string, number>();
  const listeners = new Set<(e: JournalEvent) => void>();
  return {
    record(e) {
      d.journal.append(e);
      for (const fn of listeners) fn(e);
      if (e.event === 'trip') tripsTotal.set(e.port, (tripsTotal.get(e.port) ?? 0) + 1);
      if (d.hooks && NOTIFIED.has(e.event)) d.hooks.notify(e); // enqueue only: never waits on the network
      if (e.event === 'trip' || e.event === 'action-failed') d.sd.status(`${e.event} ${e.port}: ${e.reason}`);
      recent.push(e);
      if (recent.length > LAST_EVENTS) recent.shift();
      if (e.event === 'trip' || e.event === 'would-trip') lastTrip.set(e.port, e);
      else if (e.event === 'capture') withCapture(lastTrip, e);
      d.log[levelOf(e.event)]({ component: 'breaker', ...e }, e.event);
    },
    intent: (e) => d.journal.intent(e),
    onRecord(fn) {
      listeners.add(fn);
      return () => void listeners.delete(fn);
    },
    journalHealth: () => d.journal.health(),
    recent: () => recent,
    lastTrip,
    tripsTotal,
    journalPath: d.journal.path,
    close: () => d.journal.close(),
  };
}

/** A capture follows its trip (daemon/captures.ts): `why` shows the trip with the file it names. */
function withCapture(lastTrip: Map<string, JournalEvent>, c: JournalEvent): void {
  const trip = lastTrip.get(c.port);
  if (trip && trip.event === 'trip' && trip.ts === c.tripTs) lastTrip.set(c.port, { ...trip, capture: c.capture, captureFrames: c.frames });
}

/** The journal started failing or recovered: said once each way, in the log and systemd STATUS. */
export function journalCondition(h: JournalHealth, log: Pick<Logger, 'error' | 'info'>, sd: Pick<SdNotifier, 'status'>): void {
  if (h.failing) {
    log.error({ component: 'journal', err: h.error, pending: h.pending }, 'journal FAILING: records kept in memory and written when the disk takes them; protection continues');
    sd.status(`JOURNAL FAILING: ${h.error ?? 'unknown error'}; protecting, records kept in memory`);
  } else {
    log.info({ component: 'journal', dropped: h.dropped, failures: h.failures }, 'journal writing again: records kept in memory are on disk');
    sd.status('journal writing again');
  }
}

/** An undo means an action cut the management path: an alert, like a failed action. */
function levelOf(event: JournalEvent['event']): 'error' | 'warn' | 'info' {
  if (event === 'action-failed' || event === 'reload-failed' || event === 'undo') return 'error';
  if (event === 'flood-observed' || event === 'reachability-down' || event === 'stall') return 'warn';
  return 'info';
}

export interface Recording {
  rec: Recorder;
  /** The journal as the last run left it (the breaker restores tripped and held ports from it). */
  replay: ReadResult;
  sd: SdNotifier;
  notifiers: Notifiers;
}

/**
 * Open the journal (read back first), systemd notification and the notifiers, and the recorder
 * over them. systemd (Type=notify): READY once sampling runs, WATCHDOG from the tick itself (a
 * stalled sampler is a dead agent), STATUS on trips, STOPPING on the way out.
 */
export async function openRecording(stateDir: string, log: Logger, webhook: WebhookOptions | undefined, policy: Policy): Promise<Recording> {
  const sd = createSdNotifier(process.env, undefined, { onError: (err: Error, msg: string) => log.warn({ component: 'sdnotify', err: err.message, msg }, 'sd_notify failed') });
  // A journal that cannot be written never stops protection: records wait in memory and the
  // condition is said once when it starts and once when it ends (log, systemd STATUS, status,
  // metrics). Degraded protection rather than none: see README "What it survives".
  const journal = openJournal(join(stateDir, 'journal.jsonl'), { onCondition: (h) => journalCondition(h, log, sd) });
  const replay = readJournal(journal.path);
  if (replay.error) log.error({ component: 'journal', path: journal.path, err: replay.error }, 'journal cannot be read: starting without its record of tripped ports');
  if (replay.badLines.length > 0) log.warn({ component: 'journal', badLines: replay.badLines }, 'journal has unreadable lines (skipped)');
  if (sd.problem) log.error({ component: 'sdnotify', err: sd.problem }, 'systemd notification unavailable: a Type=notify unit will time out');
  const notifiers = await startNotifiers(webhook, policy, log);
  return { rec: createRecorder({ journal, replayed: replay.events, log, sd, hooks: notifiers.hooks }), replay, sd, notifiers };
}
