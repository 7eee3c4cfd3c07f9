import { killGroup, spawnGroup } from '../host/child.js';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

// Tells someone else about trips (chat webhook, pager, a local script). Protection comes first:
// notify() only appends a reference to a bounded queue and returns (no serialisation, no I/O,
// no promise); delivery happens later, one event at a time, with a timeout per try, a few tries
// with exponential backoff, and then gives up. A full queue drops its OLDEST event and counts it:
// during an incident the newest state matters most, and memory stays bounded however long the
// receiver is down. Nothing here can throw into the caller or delay a link-down.

/** Any JSON-serialisable object; journal events are the usual payload. Do not mutate after notify(). */
export type NotifyEvent = Readonly<Record<string, unknown>>;

export type NotifyTarget =
  | { kind: 'http'; url: string; headers?: Record<string, string> }
  /** argv[0] runs with argv[1..] (no shell), the event JSON on stdin; exit 0 is success. */
  | { kind: 'exec'; argv: readonly string[] };

export interface WebhookOptions {
  target: NotifyTarget;
  /** Per try, ms (default 2000): an HTTP request or a hook that takes longer is aborted / killed. */
  timeoutMs?: number;
  /** Tries per event including the first (default 3). */
  tries?: number;
  /** Wait before the 2nd try; doubles per further try (default 500 ms: 500, 1000, ...). */
  backoffMs?: number;
  /** Events waiting at most (default 100); beyond, the oldest is dropped. */
  queueMax?: number;
  /** An event that was given up on (after all tries), or a drop. Never throws into notify(). */
  onError?: (err: NotifyError, event: NotifyEvent | null) => void;
}

export class NotifyError extends Error {
  constructor(
    readonly code: 'E_NOTIFY_HTTP_STATUS' | 'E_NOTIFY_TIMEOUT' | 'E_NOTIFY_NETWORK' | 'E_NOTIFY_HOOK' | 'E_NOTIFY_GAVE_UP' | 'E_NOTIFY_DROPPED',
    message: string,
    readonly details: { status?: number; argv?: readonly string[]; exitCode?: number | null; signal?: string | null; stderrTail?: string; tries?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class WebhookConfigError extends Error {
  readonly code = 'E_NOTIFY_CONFIG';
}

export interface EventNotifier {
  /** Enqueue and return at once. */
  notify(event: NotifyEvent): void;
  readonly stats: { readonly sent: number; readonly failed: number; readonly dropped: number; readonly tries: number; readonly pending: number };
  /** Resolves when nothing is queued or in flight (tests, graceful stop with a deadline of your own). */
  idle(): Promise<void>;
  /** Stop: pending events are discarded, backoff timers cleared; a try in flight finishes on its own. */
  close(): void;
}

/** One delivery try; resolves on success, rejects with NotifyError (retryable or not). */
type Deliver = (body: string, timeoutMs: number) => Promise<void>;

function validate(opts: WebhookOptions): Required<Omit<WebhookOptions, 'onError'>> {
  const t = opts.target;
  if (t.kind === 'http') {
    let u: URL;
    try {
      u = new URL(t.url);
    } catch {
      throw new WebhookConfigError(`notify.target.url: not a URL: ${JSON.stringify(t.url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WebhookConfigError(`notify.target.url: must be http(s), got ${u.protocol}`);
  } else if (t.kind === 'exec') {
    if (!Array.isArray(t.argv) || t.argv.length === 0 || t.argv.some((a) => typeof a !== 'string') || t.argv[0] === '') {
      throw new WebhookConfigError('notify.target.argv: must be a non-empty array of strings (program first)');
    }
  } else {
    throw new WebhookConfigError(`notify.target.kind: must be "http" or "exec"`);
  }
  const o = { target: t, timeoutMs: opts.timeoutMs ?? 2000, tries: opts.tries ?? 3, backoffMs: opts.backoffMs ?? 500, queueMax: opts.queueMax ?? 100 };
  if (!(o.timeoutMs > 0)) throw new WebhookConfigError('notify.timeoutMs: must be > 0');
  if (!Number.isInteger(o.tries) || o.tries < 1) throw new WebhookConfigError('notify.tries: must be an integer >= 1');
  if (!(o.backoffMs >= 0)) throw new WebhookConfigError('notify.backoffMs: must be >= 0');
  if (!Number.isInteger(o.queueMax) || o.queueMax < 1) throw new WebhookConfigError('notify.queueMax: must be an integer >= 1');
  return o;
}

function httpDeliver(url: string, headers: Record<string, string> = {}): Deliver {
  const u = new URL(url);
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return (body, timeoutMs) =>
    new Promise<void>((resolve, reject) => {
      let settled = false;
      const done = (err?: NotifyError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const r = req(u, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'stormbreaker', ...headers } }, (res: IncomingMessage) => {
        res.resume(); // the body is not ours to read; drain it so the socket is freed
        res.on('end', () => {
          const s = res.statusCode ?? 0;
          if (s >= 200 && s < 300) done();
          else done(new NotifyError('E_NOTIFY_HTTP_STATUS', `webhook answered HTTP ${s}`, { status: s }));
        });
        res.on('error', (e) => done(new NotifyError('E_NOTIFY_NETWORK', `webhook response: ${e.message}`, {}, { cause: e })));
      });
      // One deadline for the whole try (connect + send + answer), not an idle timeout.
      const timer = setTimeout(() => {
        done(new NotifyError('E_NOTIFY_TIMEOUT', `webhook did not answer within ${timeoutMs} ms`));
        r.destroy();
      }, timeoutMs);
      timer.unref();
      r.on('error', (e) => done(new NotifyError('E_NOTIFY_NETWORK', `webhook: ${e.message}`, {}, { cause: e })));
      r.end(body);
    });
}

/** Hooks still running, killed (whole process group) when the notifier closes. */
const running = new Set<import('node:child_process').ChildProcess>();

function execDeliver(argv: readonly string[]): Deliver {
  const file = argv[0]!;
  const args = argv.slice(1);
  return (body, timeoutMs) =>
    new Promise<void>((resolve, reject) => {
      // Own process group: a timeout kills the hook and everything it started (`sh -c` children).
      const child = spawnGroup(file, args, { stdio: ['pipe', 'ignore', 'pipe'] });
      running.add(child);
      let stderr = '';
      let timedOut = false;
      const timer = setTimeout(() => ((timedOut = true), killGroup(child, 'SIGKILL')), timeoutMs);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (d: string) => (stderr = (stderr + d).slice(-64 * 1024)));
      const fail = (message: string, exitCode: number | null, signal: NodeJS.Signals | null, cause?: unknown): void =>
        reject(new NotifyError(timedOut ? 'E_NOTIFY_TIMEOUT' : 'E_NOTIFY_HOOK', message, { argv, exitCode, signal, stderrTail: stderr.slice(-500) }, cause === undefined ? undefined : { cause }));
      child.on('error', (err) => {
        clearTimeout(timer);
        running.delete(child);
        fail(`hook ${file} failed: ${err.message.split('\n')[0]}`, null, null, err);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        running.delete(child);
        // The group may hold more than the hook itself: nothing it started outlives it.
        killGroup(child, 'SIGKILL');
        if (code === 0) return resolve();
        fail(timedOut ? `hook ${file} killed after ${timeoutMs} ms` : `hook ${file} failed: exit ${code ?? signal}`, code, signal);
      });
      // A hook that exits without reading stdin closes the pipe: EPIPE here is not an error of ours.
      child.stdin?.on('error', () => {});
      // One line per event: a shell hook's `read -r line` needs the newline to see the last one.
      child.stdin?.end(body + '\n');
    });
}

/** Kill every running hook's process group (the agent is stopping). */
export function killRunningHooks(): void {
  for (const c of running) killGroup(c, 'SIGKILL');
}

/** A 4xx other than 408/429 will not change by asking again. */
function retryable(err: NotifyError): boolean {
  const s = err.details.status;
  return !(err.code === 'E_NOTIFY_HTTP_STATUS' && s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 429);
}

export function createNotifier(options: WebhookOptions): EventNotifier {
  const o = validate(options);
  const onError = options.onError ?? (() => {});
  const deliver: Deliver = o.target.kind === 'http' ? httpDeliver(o.target.url, o.target.headers) : execDeliver(o.target.argv);
  // A ring would avoid shift()'s O(n), but n <= queueMax (100) and this runs off the hot path.
  const queue: NotifyEvent[] = [];
  let busy = false;
  let closed = false;
  let scheduled = false;
  let backoffTimer: NodeJS.Timeout | null = null;
  let backoffDone: (() => void) | null = null;
  const stats = { sent: 0, failed: 0, dropped: 0, tries: 0, pending: 0 };
  let idleWaiters: Array<() => void> = [];

  const report = (err: NotifyError, ev: NotifyEvent | null): void => {
    try {
      onError(err, ev);
    } catch {
      /* a reporting bug must not stop delivery */
    }
  };
  const settleIdle = (): void => {
    stats.pending = queue.length + (busy ? 1 : 0);
    if (stats.pending === 0 && idleWaiters.length) {
      const w = idleWaiters;
      idleWaiters = [];
      for (const f of w) f();
    }
  };

  async function pump(): Promise<void> {
    scheduled = false;
    if (busy || closed) return;
    const ev = queue.shift();
    if (ev === undefined) return settleIdle();
    busy = true;
    let body: string;
    try {
      body = JSON.stringify(ev);
    } catch (err) {
      busy = false;
      stats.failed++;
      report(new NotifyError('E_NOTIFY_GAVE_UP', `event is not JSON: ${(err as Error).message}`, { tries: 0 }, { cause: err }), ev);
      return kick();
    }
    for (let attempt = 1; attempt <= o.tries && !closed; attempt++) {
      stats.tries++;
      try {
        await deliver(body, o.timeoutMs);
        stats.sent++;
        break;
      } catch (err) {
        const e = err as NotifyError;
        if (attempt === o.tries || !retryable(e)) {
          stats.failed++;
          report(new NotifyError('E_NOTIFY_GAVE_UP', `gave up after ${attempt} ${attempt === 1 ? 'try' : 'tries'}: ${e.message}`, { ...e.details, tries: attempt }, { cause: e }), ev);
          break;
        }
        await new Promise<void>((res) => {
          backoffDone = res;
          backoffTimer = setTimeout(res, o.backoffMs * 2 ** (attempt - 1));
          backoffTimer.unref(); // a pending retry never keeps the process alive
        });
        backoffTimer = null;
        backoffDone = null;
      }
    }
    busy = false;
    kick();
  }

  function kick(): void {
    if (scheduled || busy || closed) return settleIdle();
    scheduled = true;
    // Deliver on a later turn: the caller (the breaker) finishes its tick first.
    setImmediate(() => void pump());
    settleIdle();
  }

  return {
    notify(event) {
      if (closed) return;
      if (queue.length >= o.queueMax) {
        const old = queue.shift() ?? null;
        stats.dropped++;
        if (options.onError) report(new NotifyError('E_NOTIFY_DROPPED', `notify queue full (${o.queueMax}): dropped the oldest event`), old);
      }
      queue.push(event);
      if (!scheduled && !busy) {
        scheduled = true;
        setImmediate(() => void pump());
      }
      stats.pending = queue.length + (busy ? 1 : 0);
    },
    stats,
    idle: () => (stats.pending === 0 && !busy && !scheduled ? Promise.resolve() : new Promise<void>((r) => idleWaiters.push(r))),
    close() {
      closed = true;
      if (o.target.kind === 'exec') killRunningHooks(); // no hook (nor what it started) outlives the agent
      if (backoffTimer) clearTimeout(backoffTimer);
      backoffDone?.(); // ends the retry loop (it checks `closed`)
      queue.length = 0;
      busy = false;
      settleIdle();
    },
  };
}

/** Same as createNotifier, under a name that does not clash with sdnotify.ts when both are imported. */
export const createWebhookNotifier = createNotifier;
