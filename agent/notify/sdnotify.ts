import { addonPath, loadAddon } from '../host/addon.js';

// systemd's notification protocol (sd_notify(3)): one datagram of KEY=VALUE lines to the
// AF_UNIX socket named by $NOTIFY_SOCKET. Node core has no unix datagram sockets (dgram
// rejects AF_UNIX), the `systemd-notify` card package spawns a binary per call (~10 ms) and has
// no watchdog, and `sd-notify` needs libsystemd-dev to build (LAB-FACTS). We already ship an
// N-API addon, so it gained one function, sdNotify(path, message) (native/packet_stats.c):
// no new dependency, a few µs per call. Spawning `systemd-notify` is no fallback either: with
// NotifyAccess=main systemd drops messages whose sender is not the main PID.

/** The addon's part used here (build/Release/packet_stats.node). */
export interface SdNotifyAddon {
  /** Sends one datagram; returns bytes sent; throws Error with `code` (ENOENT, ECONNREFUSED, EAGAIN, EINVAL...). */
  sdNotify(socketPath: string, message: string): number;
}

export interface Notifier {
  /** false when NOTIFY_SOCKET is unset (not under systemd) or the addon is missing: every call is a no-op. */
  readonly enabled: boolean;
  /** Why it is disabled while NOTIFY_SOCKET is set (addon missing), else null: log it loudly. */
  readonly problem: string | null;
  /** How often to ping: half of WATCHDOG_USEC, or null when systemd runs no watchdog for us. */
  readonly watchdogIntervalMs: number | null;
  /** READY=1 (+ STATUS=): start-up is complete; a Type=notify unit counts as started only now. */
  ready(status?: string): void;
  /** STATUS=: one line shown by `systemctl status`. */
  status(text: string): void;
  /** WATCHDOG=1: we are alive. */
  watchdog(): void;
  /**
   * WATCHDOG=1 only if watchdogIntervalMs has passed since the last ping (monotonic ms). Cheap
   * enough for every sampling tick (one comparison): the ping then proves the sampler runs.
   */
  watchdogTick(nowMs: number): void;
  /** STOPPING=1 (+ STATUS=): shutting down on purpose. */
  stopping(status?: string): void;
  /** Sends that failed (each reported once to onError). */
  readonly failures: number;
}

export interface NotifierOptions {
  /** A failed send never throws into the caller (protection goes on); it is reported here. */
  onError?: (err: Error, message: string) => void;
}

/** Half the watchdog timeout in ms, or null (sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be us). */
export function watchdogIntervalFromEnv(env: NodeJS.ProcessEnv, pid: number = process.pid): number | null {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return null;
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== '' && Number(pidText) !== pid) return null;
  return usec / 2000;
}

/** STATUS= is one line of the datagram: a newline in the text would start a new KEY=. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 1024);
}

/** The sdNotify part of the native addon, or why not. */
export function loadSdNotifyAddon(): SdNotifyAddon | { error: string } {
  const a = loadAddon();
  if ('error' in a) return { error: String(a.error) };
  return typeof a.sdNotify === 'function' ? (a as unknown as SdNotifyAddon) : { error: `${addonPath()}: no sdNotify (rebuild: npm run build:native)` };
}

const NOOP = (): void => {};

export function createNotifier(env: NodeJS.ProcessEnv = process.env, addon?: SdNotifyAddon | null, opts: NotifierOptions = {}): Notifier {
  const socketPath = env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === '') {
    return { enabled: false, problem: null, watchdogIntervalMs: null, ready: NOOP, status: NOOP, watchdog: NOOP, watchdogTick: NOOP, stopping: NOOP, failures: 0 };
  }
  let a: SdNotifyAddon | null = addon ?? null;
  let problem: string | null = null;
  if (addon === undefined) {
    const loaded = loadSdNotifyAddon();
    if ('error' in loaded) problem = `NOTIFY_SOCKET is set but sd_notify is unavailable: ${loaded.error}`;
    else a = loaded;
  } else if (addon === null) {
    problem = 'NOTIFY_SOCKET is set but no sd_notify addon was given';
  }
  const intervalMs = watchdogIntervalFromEnv(env);
  let failures = 0;
  let lastPingMs = -Infinity;

  const send = (message: string): void => {
    if (!a) return;
    try {
      a.sdNotify(socketPath, message);
    } catch (err) {
      failures++;
      opts.onError?.(err as Error, message);
    }
  };
  const ping = 'WATCHDOG=1';

  return {
    enabled: a !== null,
    problem,
    watchdogIntervalMs: a ? intervalMs : null,
    ready: (status) => send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`),
    status: (text) => send(`STATUS=${oneLine(text)}`),
    watchdog: () => send(ping),
    watchdogTick: (nowMs) => {
      if (intervalMs === null || nowMs - lastPingMs < intervalMs) return;
      lastPingMs = nowMs;
      send(ping);
    },
    stopping: (status) => send(status === undefined ? 'STOPPING=1' : `STOPPING=1\nSTATUS=${oneLine(status)}`),
    get failures() {
      return failures;
    },
  };
}
