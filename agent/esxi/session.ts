// The SSH edge for one ESXi host: a ControlMaster connection, the paced counter stream on it,
// remote commands on it, and reconnection with backoff. Everything it learns goes out through
// callbacks; it decides nothing about storms.
//
// States: connecting -> streaming <-> stale -> (torn down) -> backoff -> connecting ...
//         refused: the host key is unknown or changed, or the key was not accepted. Retried at
//         the longest backoff (an operator fixes known_hosts or the key; a restart is not needed),
//         and shown as refused, not as a network blip.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { classifySshError, masterArgv, remoteLine, sessionArgv, type SshFailure, type SshTarget } from './ssh-argv.js';
import { createStreamParser, streamScript, type Block, type StreamItem } from './stream.js';

export type SessionState = 'connecting' | 'streaming' | 'stale' | 'backoff' | 'refused' | 'stopped';

export interface RemoteResult {
  code: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** Set when it did not run to completion: not connected, timed out, or ssh failed. */
  error?: string;
}

export interface SessionStatus {
  state: SessionState;
  since: number;
  /** ms since the last block; null before the first. */
  lastBlockAgeMs: number | null;
  blocks: number;
  /** Ticks sent with no block back before the next was due (the remote side is slower than sampleMs). */
  late: number;
  connects: number;
  lastError: string | null;
  lastFailure: SshFailure | null;
  /** ms from a tick written to its block parsed: the median of the last 64. */
  roundTripMs: number | null;
}

export interface SessionHooks {
  /**
   * After the master is up: read what to stream (inventory), return the items. Throwing (or an
   * empty list) tears the connection down and retries later.
   */
  prepare(exec: RemoteExec): Promise<StreamItem[]>;
  /** A complete block; tRecvNs = monotonic time its begin marker arrived. */
  onBlock(block: Block, tRecvNs: number): void;
  onState(state: SessionState, why: string): void;
  warn(obj: object, msg: string): void;
}

export type RemoteExec = (argv: readonly string[], timeoutMs?: number) => Promise<RemoteResult>;

export interface SessionOptions extends SshTarget {
  name: string;
  sampleMs: number;
  staleMs: number;
  commandTimeoutMs: number;
  /** The ssh binary (tests may point at a wrapper); default "ssh" from PATH. */
  ssh?: string;
}

export interface Session {
  exec: RemoteExec;
  status(): SessionStatus;
  /** The last tick written to the stream (a block answers one tick). */
  sentTick(): number;
  /** Drop the connection now (it reconnects after backoff); for the control socket and tests. */
  drop(why: string): void;
  /** Start the counter stream again on the same connection (prepare() runs again: new items). */
  restream(why: string): void;
  stop(): Promise<void>;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Streaming this long without trouble resets the backoff. */
const BACKOFF_RESET_MS = 30_000;
const hrNs = (): number => Number(process.hrtime.bigint());

/** One ssh session to completion. Never rejects: failures come back in `error`. */
function runSsh(ssh: string, args: string[], timeoutMs: number, track?: Set<ChildProcess>): Promise<RemoteResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = execFile(ssh, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      track?.delete(child);
      const durationMs = performance.now() - t0;
      if (!err) return resolve({ code: 0, stdout, stderr, durationMs });
      const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string | null };
      const code = typeof e.code === 'number' ? e.code : null;
      if (e.killed || e.signal === 'SIGKILL') return resolve({ code, stdout, stderr, durationMs, error: `timed out after ${timeoutMs} ms` });
      // ssh's own failure is 255; the remote command's status is passed through otherwise.
      if (code === 255) return resolve({ code, stdout, stderr, durationMs, error: `ssh: ${stderr.trim().split('\n').pop() || 'failed'}` });
      if (code === null) return resolve({ code, stdout, stderr, durationMs, error: e.message });
      resolve({ code, stdout, stderr, durationMs });
    });
    track?.add(child);
  });
}

export function startSession(opts: SessionOptions, hooks: SessionHooks): Session {
  const dir = mkdtempSync(join(tmpdir(), 'sb-ssh-'));
  const ctl = join(dir, `${opts.name}.ctl`);
  const ssh = opts.ssh ?? 'ssh';
  let state: SessionState = 'connecting';
  let since = Date.now();
  let master: ChildProcess | null = null;
  let stream: ChildProcess | null = null;
  let masterUp = false;
  let pace: NodeJS.Timeout | null = null;
  let retry: NodeJS.Timeout | null = null;
  let backoffMs = BACKOFF_MIN_MS;
  let streamingSince = 0;
  let generation = 0;
  let streamGen = 0;
  let tick = 0;
  let waiting: { tick: number; sentNs: number } | null = null;
  let lastBlockNs = 0;
  let blocks = 0;
  let late = 0;
  let connects = 0;
  let lastError: string | null = null;
  let lastFailure: SshFailure | null = null;
  const rtts: number[] = [];
  let stopped = false;
  const children = new Set<ChildProcess>();

  const setState = (s: SessionState, why: string): void => {
    if (s === state) return;
    state = s;
    since = Date.now();
    hooks.onState(s, why);
  };

  const exec: RemoteExec = (argv, timeoutMs = opts.commandTimeoutMs) => {
    if (!masterUp) return Promise.resolve({ code: null, stdout: '', stderr: '', durationMs: 0, error: `not connected to ${opts.name} (${state})` });
    return runSsh(ssh, sessionArgv(opts, ctl, remoteLine(argv)).slice(1), timeoutMs, children);
  };

  function teardown(why: string, failure: SshFailure | null): void {
    generation++;
    masterUp = false;
    waiting = null;
    if (pace) clearInterval(pace);
    pace = null;
    for (const c of [stream, master]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    stream = null;
    master = null;
    if (stopped) return;
    lastError = why;
    if (failure) lastFailure = failure;
    const refused = failure === 'host-key-changed' || failure === 'host-key-unknown' || failure === 'auth-failed';
    if (streamingSince && hrNs() - streamingSince > BACKOFF_RESET_MS * 1e6) backoffMs = BACKOFF_MIN_MS;
    streamingSince = 0;
    const wait = refused ? BACKOFF_MAX_MS : backoffMs;
    backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
    setState(refused ? 'refused' : 'backoff', `${why}; next try in ${wait} ms`);
    if (retry) clearTimeout(retry);
    retry = setTimeout(connect, wait);
  }

  function connect(): void {
    retry = null;
    if (stopped) return;
    const gen = ++generation;
    connects++;
    setState('connecting', `connecting to ${opts.user}@${opts.address}:${opts.port}`);
    rmSync(ctl, { force: true });
    // stdin stays open (a pipe nobody writes to) for as long as this process lives: see masterArgv.
    const m = spawn(ssh, masterArgv(opts, ctl).slice(1), { stdio: ['pipe', 'ignore', 'pipe'] });
    m.stdin!.on('error', () => undefined);
    master = m;
    children.add(m);
    let err = '';
    m.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    m.on('error', (e) => gen === generation && teardown(`ssh master: ${e.message}`, 'other'));
    m.on('exit', (code, sig) => {
      children.delete(m);
      if (gen !== generation) return;
      const f = classifySshError(err, code);
      teardown(`ssh master exited (${code ?? sig}): ${err.trim().split('\n').pop() || f}`, f);
    });
    // The control socket appears once authentication succeeded.
    const deadline = Date.now() + opts.connectTimeoutMs + 1000;
    const poll = setInterval(() => {
      if (gen !== generation) return clearInterval(poll);
      if (existsSync(ctl)) {
        clearInterval(poll);
        masterUp = true;
        void startStream(gen);
      } else if (Date.now() > deadline) {
        clearInterval(poll);
        teardown(`no connection within ${opts.connectTimeoutMs} ms`, 'timeout');
      }
    }, 10);
  }

  async function startStream(gen: number): Promise<void> {
    const sg = ++streamGen;
    let items: StreamItem[];
    try {
      items = await hooks.prepare(exec);
    } catch (e) {
      if (gen === generation) teardown(`reading the host failed: ${(e as Error).message}`, 'other');
      return;
    }
    if (gen !== generation || sg !== streamGen) return;
    if (items.length === 0) return teardown('nothing to watch on the host', 'other');
    const nonce = randomBytes(8).toString('hex');
    const parser = createStreamParser(nonce);
    const s = spawn(ssh, sessionArgv(opts, ctl, streamScript(nonce, items)).slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    stream = s;
    children.add(s);
    let err = '';
    let beginNs = 0;
    s.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    s.stdin!.on('error', () => undefined); // EPIPE when the session dies: the exit handler reports it
    s.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (gen !== generation || sg !== streamGen) return;
      const now = hrNs();
      // The begin marker is written just before the first counter is read remotely.
      if (beginNs === 0) beginNs = now;
      for (const b of parser.feed(d)) {
        blocks++;
        lastBlockNs = now;
        if (waiting && b.tick === waiting.tick) {
          rtts.push((now - waiting.sentNs) / 1e6);
          if (rtts.length > 64) rtts.shift();
          waiting = null;
        }
        if (state !== 'streaming') {
          if (!streamingSince) streamingSince = now;
          setState('streaming', `counters arriving from ${opts.name}`);
        }
        hooks.onBlock(b, beginNs);
        beginNs = 0;
      }
      const noise = parser.takeNoise();
      if (noise.length > 0) hooks.warn({ host: opts.name, noise: noise.slice(0, 5) }, 'unexpected output in the counter stream');
    });
    s.on('exit', (code, sig) => {
      children.delete(s);
      if (gen !== generation || sg !== streamGen) return;
      teardown(`counter stream ended (${code ?? sig}): ${err.trim().split('\n').pop() || 'no message'}`, classifySshError(err, code));
    });
    lastBlockNs = hrNs();
    if (pace) clearInterval(pace);
    waiting = null;
    pace = setInterval(() => {
      if (gen !== generation || sg !== streamGen || !stream) return;
      const now = hrNs();
      const age = (now - lastBlockNs) / 1e6;
      if (age > opts.staleMs && state === 'streaming') setState('stale', `no counters from ${opts.name} for ${Math.round(age)} ms`);
      // Give up on the connection once it has been stale for long: reconnecting is cheaper than hoping.
      if (age > Math.max(3 * opts.staleMs, 3000)) return teardown(`no counters for ${Math.round(age)} ms`, 'timeout');
      if (waiting) {
        late++;
        return; // one tick outstanding at most: never queue work on a slow host
      }
      waiting = { tick: ++tick, sentNs: now };
      stream.stdin!.write(`${tick}\n`);
    }, opts.sampleMs);
  }

  connect();

  return {
    exec,
    sentTick: () => tick,
    status(): SessionStatus {
      const sorted = [...rtts].sort((a, b) => a - b);
      return {
        state,
        since,
        lastBlockAgeMs: blocks > 0 ? Math.round((hrNs() - lastBlockNs) / 1e6) : null,
        blocks,
        late,
        connects,
        lastError,
        lastFailure,
        roundTripMs: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null,
      };
    },
    drop(why: string): void {
      if (!stopped) teardown(why, null);
    },
    restream(why: string): void {
      if (stopped || !masterUp) return;
      streamGen++;
      if (pace) clearInterval(pace);
      pace = null;
      const old = stream;
      stream = null;
      if (old && old.exitCode === null) old.kill('SIGKILL');
      hooks.warn({ host: opts.name, why }, 'restarting the counter stream');
      void startStream(generation);
    },
    async stop(): Promise<void> {
      stopped = true;
      if (retry) clearTimeout(retry);
      teardown('stopping', null);
      state = 'stopped';
      const waits = [...children].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
      for (const c of children) c.kill('SIGKILL');
      await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 2000))]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One connection for a one-off job (preflight): the same master and strict options, no stream,
 * no reconnects. Rejects with the classified failure when it cannot connect.
 */
export async function openConnection(opts: SshTarget & { name: string; commandTimeoutMs: number; ssh?: string }): Promise<{ exec: RemoteExec; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-ssh-'));
  const ctl = join(dir, `${opts.name}.ctl`);
  const ssh = opts.ssh ?? 'ssh';
  const m = spawn(ssh, masterArgv(opts, ctl).slice(1), { stdio: ['pipe', 'ignore', 'pipe'] });
  m.stdin!.on('error', () => undefined);
  let err = '';
  m.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  const exited = new Promise<number | null>((r) => m.on('exit', (code) => r(code)));
  const close = async (): Promise<void> => {
    if (m.exitCode === null && m.signalCode === null) m.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + opts.connectTimeoutMs + 1000;
  for (;;) {
    if (existsSync(ctl)) break;
    if (m.exitCode !== null || Date.now() > deadline) {
      await close();
      const f = m.exitCode !== null ? classifySshError(err, m.exitCode) : 'timeout';
      throw new Error(`${opts.name}: cannot connect (${f}): ${err.trim().split('\n').pop() || 'no answer'}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const exec: RemoteExec = (argv, timeoutMs = opts.commandTimeoutMs) => runSsh(ssh, sessionArgv(opts, ctl, remoteLine(argv)).slice(1), timeoutMs);
  return { exec, close };
}
