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
import { spawnGroup } from '../host/child.js';
import { createStreamParser, itemKey, streamScript, type Block, type StreamItem } from './stream.js';
import { fuseRemoteLine, type FuseProgram } from './fuse/program.js';
import { startFuse, type FuseClient, type FuseState } from './fuse/client.js';
import type { FuseCut } from './fuse/lines.js';
import type { FusePlan } from './fuse/plan.js';
import { lateness } from './fuse/lateness.js';

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
  /** What streams the counters now: the on-host fuse, or the shell loop (and why). */
  streamer: 'fuse' | 'shell' | null;
  fuse: FuseStatus | null;
}

export interface FuseStatus {
  /** armed, not-armed (the shell loop streams instead), exited, starting. */
  state: FuseState;
  why: string;
  version: number;
  sha256: string;
  samples: number;
  /** Samples dropped as delivered more than staleMs late (old numbers). */
  lateDropped: number;
}

/** The on-host fuse for this session (policy `fuse` not off). */
export interface SessionFuse {
  program: FuseProgram;
  python: string;
  stateDir: string;
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
  /** What to stream now, from the inventory already read (restream after a refresh: no second read). */
  items?(): StreamItem[];
  /** Fuse only: the plan for these items; throwing means the shell loop streams instead. */
  fusePlan?(items: readonly StreamItem[]): FusePlan;
  /** Fuse only: one sample; keys[i] (`nic:vmnic0`, `port:<id>`) owns values[i*6 ...]. */
  /** tReadNs: when the host read it (on this clock, lateness.readAt); tRecvNs: when it arrived. */
  onFuseSample?(keys: readonly string[], values: Float64Array, tReadNs: number, tRecvNs: number): void;
  /** Fuse only: a cut the fuse made (or refused, or would make); ack(id) once it is journaled. */
  onFuseCut?(cut: FuseCut, replayed: boolean): void;
  /** Fuse only: armed, not-armed (fell back to the shell loop) or exited. */
  onFuseState?(state: FuseState, why: string): void;
  /** Fuse only: the plan last made (fusePlan) was armed on the running fuse, or refused. */
  onFuseRearmed?(ok: boolean): void;
}

export type RemoteExec = (argv: readonly string[], timeoutMs?: number) => Promise<RemoteResult>;

export interface SessionOptions extends SshTarget {
  name: string;
  sampleMs: number;
  staleMs: number;
  commandTimeoutMs: number;
  /** The ssh binary (tests may point at a wrapper); default "ssh" from PATH. */
  ssh?: string;
  fuse?: SessionFuse;
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
  /** Tell the fuse these cut events are journaled (a later fuse will not replay them). */
  fuseAck(ids: readonly string[]): void;
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
  let masterUp = false;
  let retry: NodeJS.Timeout | null = null;
  let backoffMs = BACKOFF_MIN_MS;
  let streamingSince = 0;
  let generation = 0;
  let connects = 0;
  let lastError: string | null = null;
  let lastFailure: SshFailure | null = null;
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

  const streamer = createStreamer({
    opts,
    ssh,
    ctl,
    hooks,
    children,
    exec,
    current: (gen) => gen === generation,
    state: () => state,
    streaming(now) {
      if (!streamingSince) streamingSince = now;
      setState('streaming', `counters arriving from ${opts.name}`);
    },
    setState,
    teardown,
  });

  function teardown(why: string, failure: SshFailure | null): void {
    generation++;
    masterUp = false;
    streamer.halt();
    if (master && master.exitCode === null && master.signalCode === null) master.kill('SIGKILL');
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
    streamer.resetFallback();
    const gen = ++generation;
    connects++;
    setState('connecting', `connecting to ${opts.user}@${opts.address}:${opts.port}`);
    rmSync(ctl, { force: true });
    master = spawnMaster(ssh, opts, ctl, children, (why, f) => gen === generation && teardown(why, f));
    // The control socket appears once authentication succeeded.
    const deadline = Date.now() + opts.connectTimeoutMs + 1000;
    const poll = setInterval(() => {
      if (gen !== generation) return clearInterval(poll);
      if (existsSync(ctl)) {
        clearInterval(poll);
        masterUp = true;
        void streamer.start(gen);
      } else if (Date.now() > deadline) {
        clearInterval(poll);
        teardown(`no connection within ${opts.connectTimeoutMs} ms`, 'timeout');
      }
    }, 10);
  }

  connect();

  return {
    exec,
    sentTick: streamer.sentTick,
    status: (): SessionStatus => ({ state, since, ...streamer.counts(), connects, lastError, lastFailure }),
    drop(why: string): void {
      if (!stopped) teardown(why, null);
    },
    fuseAck: (ids) => streamer.fuseAck(ids),
    restream(why: string): void {
      if (stopped || !masterUp) return;
      hooks.warn({ host: opts.name, why }, 'restarting the counter stream');
      void streamer.restart(generation);
    },
    async stop(): Promise<void> {
      // First: the fuse's end below must not look like a lost connection (no backoff, no retry).
      stopped = true;
      // A stopped agent disarms its fuse: the lease is for a lost connection, not for a stop.
      await streamer.disarm();
      if (retry) clearTimeout(retry);
      teardown('stopping', null);
      state = 'stopped';
      await killAll(children);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The ControlMaster; its end (classified) is reported through `gone`. */
function spawnMaster(ssh: string, opts: SessionOptions, ctl: string, children: Set<ChildProcess>, gone: (why: string, f: SshFailure) => void): ChildProcess {
  // stdin stays open (a pipe nobody writes to) for as long as this process lives: see masterArgv.
  // Also tied to our life (PR_SET_PDEATHSIG): a master with a fuse session on it outlives its own
  // `cat` (sshd holds the fuse's channel open while the fuse protects out its lease).
  const m = spawnGroup(ssh, masterArgv(opts, ctl).slice(1), { stdio: ['pipe', 'ignore', 'pipe'], tied: true });
  m.stdin!.on('error', () => undefined);
  children.add(m);
  let err = '';
  m.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  m.on('error', (e) => gone(`ssh master: ${e.message}`, 'other'));
  m.on('exit', (code, sig) => {
    children.delete(m);
    const f = classifySshError(err, code);
    gone(`ssh master exited (${code ?? sig}): ${err.trim().split('\n').pop() || f}`, f);
  });
  return m;
}

/** Kill every child and wait for them (at most 2 s). */
async function killAll(children: ReadonlySet<ChildProcess>): Promise<void> {
  const waits = [...children].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
  for (const c of children) c.kill('SIGKILL');
  await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 2000))]);
}

interface StreamerDeps {
  opts: SessionOptions;
  ssh: string;
  ctl: string;
  hooks: SessionHooks;
  children: Set<ChildProcess>;
  exec: RemoteExec;
  /** Is this connection generation still the live one? */
  current(gen: number): boolean;
  state(): SessionState;
  /** A block arrived: the session is streaming. */
  streaming(nowNs: number): void;
  setState(s: SessionState, why: string): void;
  teardown(why: string, failure: SshFailure | null): void;
}

/** What the counter stream on one connection holds (shell loop or fuse; one of them at a time). */
interface StreamerState {
  stream: ChildProcess | null;
  fuse: FuseClient | null;
  fuseStatus: FuseStatus | null;
  /** Why the fuse could not arm on this connection (the shell loop streams instead), or null. */
  fellBack: string | null;
  pace: NodeJS.Timeout | null;
  streamGen: number;
  tick: number;
  waiting: { tick: number; sentNs: number } | null;
  lastBlockNs: number;
  blocks: number;
  late: number;
  rtts: number[];
}

/**
 * The counter stream on a connection. With a fuse (policy `fuse` not off) the host's own Python
 * streams samples every fuseSampleMs by itself; where it cannot arm, the shell loop streams
 * instead on the same connection: one tick written every sampleMs (at most one outstanding:
 * never queue work on a slow host), each answered by a block. Either way the host is stale when
 * samples stop, and the connection is torn down when they stay away.
 */
function createStreamer(d: StreamerDeps) {
  const { opts, hooks } = d;
  const sh: StreamerState = { stream: null, fuse: null, fuseStatus: null, fellBack: null, pace: null, streamGen: 0, tick: 0, waiting: null, lastBlockNs: 0, blocks: 0, late: 0, rtts: [] };

  function halt(): void {
    sh.waiting = null;
    if (sh.pace) clearInterval(sh.pace);
    sh.pace = null;
    if (sh.stream && sh.stream.exitCode === null && sh.stream.signalCode === null) sh.stream.kill('SIGKILL');
    sh.stream = null;
    // Killing the local ssh ends the session; the fuse on the host protects until its lease ends.
    const f = sh.fuse;
    if (f && f.child.exitCode === null && f.child.signalCode === null) f.child.kill('SIGKILL');
    sh.fuse = null;
  }

  async function start(gen: number): Promise<void> {
    const sg = ++sh.streamGen;
    let items: StreamItem[];
    try {
      items = await hooks.prepare(d.exec);
    } catch (e) {
      if (d.current(gen)) d.teardown(`reading the host failed: ${(e as Error).message}`, 'other');
      return;
    }
    const live = (): boolean => d.current(gen) && sg === sh.streamGen;
    if (!live()) return;
    if (items.length === 0) return d.teardown('nothing to watch on the host', 'other');
    if (opts.fuse && sh.fellBack === null && startFuseStream(d, sh, opts.fuse, items, live)) return;
    startShellStream(d, sh, items, live);
  }

  /** New items on the same connection: an armed fuse gets a new plan (no gap); else stream anew. */
  async function restart(gen: number): Promise<void> {
    const f = sh.fuse;
    if (f && f.state() === 'armed') {
      try {
        // The host has just read its inventory (that is why it restreams): no second read.
        const items = hooks.items ? hooks.items() : await hooks.prepare(d.exec);
        if (d.current(gen) && sh.fuse === f && items.length > 0) f.rearm(hooks.fusePlan!(items));
      } catch (e) {
        hooks.warn({ host: opts.name, err: (e as Error).message }, 'new fuse plan failed: the previous one stays armed');
      }
      return;
    }
    sh.streamGen++;
    halt();
    void start(gen);
  }

  return {
    start,
    halt,
    restart,
    /** A new connection tries the fuse again (the host may have been fixed). */
    resetFallback(): void {
      sh.fellBack = null;
    },
    fuseAck: (ids: readonly string[]): void => sh.fuse?.ack(ids),
    async disarm(): Promise<void> {
      const f = sh.fuse;
      sh.fuse = null;
      await f?.stop();
    },
    sentTick: () => sh.tick,
    counts() {
      const sorted = [...sh.rtts].sort((a, b) => a - b);
      return {
        lastBlockAgeMs: sh.blocks > 0 ? Math.round((hrNs() - sh.lastBlockNs) / 1e6) : null,
        blocks: sh.blocks,
        late: sh.late,
        roundTripMs: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null,
        streamer: sh.fuse ? ('fuse' as const) : sh.stream ? ('shell' as const) : null,
        fuse: sh.fuseStatus ? { ...sh.fuseStatus } : null,
      };
    },
  };
}

/** The shell loop: one tick written every sampleMs, each answered by a block. */
function startShellStream(d: StreamerDeps, sh: StreamerState, items: StreamItem[], live: () => boolean): void {
  const nonce = randomBytes(8).toString('hex');
  const s = spawn(d.ssh, sessionArgv(d.opts, d.ctl, streamScript(nonce, items)).slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  sh.stream = s;
  d.children.add(s);
  let err = '';
  s.stderr!.setEncoding('utf8').on('data', (x: string) => (err = (err + x).slice(-4000)));
  s.stdin!.on('error', () => undefined); // EPIPE when the session dies: the exit handler reports it
  s.stdout!.setEncoding('utf8').on('data', receiver(d, sh, createStreamParser(nonce), live));
  s.on('exit', (code, sig) => {
    d.children.delete(s);
    if (!live()) return;
    d.teardown(`counter stream ended (${code ?? sig}): ${err.trim().split('\n').pop() || 'no message'}`, classifySshError(err, code));
  });
  sh.lastBlockNs = hrNs();
  if (sh.pace) clearInterval(sh.pace);
  sh.waiting = null;
  sh.pace = setInterval(() => paceTick(d, sh, live), d.opts.sampleMs);
}

/** The fuse on this connection; false when no plan can be made (the shell loop streams). */
function startFuseStream(d: StreamerDeps, sh: StreamerState, f: SessionFuse, items: StreamItem[], live: () => boolean): boolean {
  const { hooks } = d;
  const st: FuseStatus = { state: 'starting', why: 'starting on the host', version: f.program.version, sha256: f.program.sha256, samples: 0, lateDropped: 0 };
  sh.fuseStatus = st;
  let plan: FusePlan;
  try {
    plan = hooks.fusePlan!(items);
  } catch (e) {
    sh.fellBack = st.why = `no fuse plan: ${(e as Error).message}`;
    st.state = 'not-armed';
    hooks.onFuseState?.('not-armed', st.why);
    return false;
  }
  let keys = planKeys(plan);
  const late = lateness();
  const argv = [d.ssh, ...sessionArgv(d.opts, d.ctl, fuseRemoteLine(f.program, f.stateDir, f.python)).slice(1)];
  const client = startFuse({ argv, program: f.program, plan }, {
    onSample(tUs, values, tRecvNs) {
      if (!live()) return;
      // Read on time but delivered late: old numbers, never judged (and not a sign of life).
      if (late.of(tUs, tRecvNs) > d.opts.staleMs) {
        st.lateDropped++;
        return;
      }
      sh.blocks++;
      st.samples++;
      sh.lastBlockNs = tRecvNs;
      if (d.state() !== 'streaming') d.streaming(tRecvNs);
      hooks.onFuseSample?.(keys, values, late.readAt(tUs), tRecvNs);
    },
    onCut: (cut, replayed) => live() && hooks.onFuseCut?.(cut, replayed),
    onRearm(p, ok, why) {
      if (ok) keys = planKeys(p);
      else hooks.warn({ host: d.opts.name, why }, 'the fuse refused the new plan: the previous one stays armed');
      hooks.onFuseRearmed?.(ok);
    },
    onState(s, why) {
      if (!live()) return;
      st.state = s;
      st.why = why;
      hooks.onFuseState?.(s, why);
      if (s === 'not-armed') {
        // It never armed: the shell loop streams on this connection instead, said in status.
        sh.fellBack = why;
        sh.fuse = null;
        startShellStream(d, sh, items, live);
      } else if (s === 'exited') {
        d.teardown(`the fuse ended: ${why}`, 'other');
      }
    },
  });
  sh.fuse = client;
  d.children.add(client.child);
  void client.exited.then(() => d.children.delete(client.child));
  sh.lastBlockNs = hrNs();
  if (sh.pace) clearInterval(sh.pace);
  // No ticks to write: the fuse paces itself. This only notices when samples stop.
  sh.pace = setInterval(() => live() && checkAge(d, sh, hrNs()), Math.max(d.opts.sampleMs, 50));
  return true;
}

/** Stream output -> blocks; each block's time is when its begin marker arrived. */
function receiver(d: StreamerDeps, sh: StreamerState, parser: ReturnType<typeof createStreamParser>, live: () => boolean): (data: string) => void {
  let beginNs = 0;
  return (data) => {
    if (!live()) return;
    const now = hrNs();
    // The begin marker is written just before the first counter is read remotely.
    if (beginNs === 0) beginNs = now;
    for (const b of parser.feed(data)) {
      sh.blocks++;
      sh.lastBlockNs = now;
      if (sh.waiting && b.tick === sh.waiting.tick) {
        sh.rtts.push((now - sh.waiting.sentNs) / 1e6);
        if (sh.rtts.length > 64) sh.rtts.shift();
        sh.waiting = null;
      }
      if (d.state() !== 'streaming') d.streaming(now);
      d.hooks.onBlock(b, beginNs);
      beginNs = 0;
    }
    const noise = parser.takeNoise();
    if (noise.length > 0) d.hooks.warn({ host: d.opts.name, noise: noise.slice(0, 5) }, 'unexpected output in the counter stream');
  };
}

/** Stale when samples stop; torn down when they stay away. False when torn down. */
function checkAge(d: StreamerDeps, sh: StreamerState, now: number): boolean {
  const age = (now - sh.lastBlockNs) / 1e6;
  if (age > d.opts.staleMs && d.state() === 'streaming') d.setState('stale', `no counters from ${d.opts.name} for ${Math.round(age)} ms`);
  // Give up on the connection once it has been stale for long: reconnecting is cheaper than hoping.
  if (age > Math.max(3 * d.opts.staleMs, 3000)) {
    d.teardown(`no counters for ${Math.round(age)} ms`, 'timeout');
    return false;
  }
  return true;
}

function paceTick(d: StreamerDeps, sh: StreamerState, live: () => boolean): void {
  if (!live() || !sh.stream) return;
  const now = hrNs();
  if (!checkAge(d, sh, now)) return;
  if (sh.waiting) {
    sh.late++;
    return; // one tick outstanding at most: never queue work on a slow host
  }
  sh.waiting = { tick: ++sh.tick, sentNs: now };
  sh.stream.stdin!.write(`${sh.tick}\n`);
}

/** `nic:vmnic0` / `port:<id>` per watched item of a plan, in its order (host-rates' item keys). */
function planKeys(p: FusePlan): string[] {
  return p.watch.map((w) => itemKey(w.kind === 'pnic' ? 'nic' : 'port', w.id));
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
