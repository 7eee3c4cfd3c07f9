// Where the time from the fuse's decision to quiet at prod goes, on the stand-in (bench-esxi
// --trace). Two instruments, both of the lab, neither in the product:
//   - the stand-in's vim-cmd appends its steps' CLOCK_MONOTONIC times to <lab>/vimcmd.trace while
//     that file exists (scripts/lab/esxi/standin/esxi_standin/vimcmd.py): script start (the
//     interpreter's own start-up is before it), imports done, inventory lock taken, `ip link set`
//     spawned and returned, end;
//   - tcpdump on prod's eth0 (snaplen 64, to a file; read after the storm): every frame that
//     reached prod, broadcast (the storm's) or not, with its time.
// Times are ms from the injected frame: monotonic ones against the injection's hrtime (the same
// CLOCK_MONOTONIC), pcap's wall-clock ones against the injection's wall time (about 1 ms).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ns, run } from '../exec.js';
import type { EsxiLab } from './lab.js';

export interface VimCmdTrace {
  argv: string[];
  rc: number;
  /** ms from the injected frame. */
  start: number;
  imported: number;
  locked?: number;
  ip?: number;
  ipDone?: number;
  end: number;
}

export interface StormTrace {
  /** The disconnects (KEY 0) the stand-in's vim-cmd ran in this storm's window. */
  cuts: VimCmdTrace[];
  /** Frames at prod: the last broadcast one, and the last one of any kind (ms from injection). */
  lastBroadcastMs: number;
  lastFrameMs: number;
  /** After the first cut's link change returned (ipDone): frames at prod, broadcast and other. */
  afterCut: { broadcast: number; other: number; lastBroadcastMs: number; otherKinds: string[] };
  frames: number;
}

const TRACE = 'vimcmd.trace';

export function traceOn(lab: EsxiLab): void {
  writeFileSync(join(lab.dir, TRACE), '');
}

export function traceOff(lab: EsxiLab): void {
  rmSync(join(lab.dir, TRACE), { force: true });
}

/** vim-cmd disconnects traced since the file was last read (the file is emptied). */
function takeVimCmd(lab: EsxiLab, t0Ns: number): VimCmdTrace[] {
  const p = join(lab.dir, TRACE);
  if (!existsSync(p)) return [];
  const text = readFileSync(p, 'utf8');
  writeFileSync(p, '');
  const ms = (s: unknown): number => (typeof s === 'number' ? s * 1000 - t0Ns / 1e6 : NaN);
  const out: VimCmdTrace[] = [];
  for (const line of text.split('\n')) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const argv = (o.argv as string[]) ?? [];
    if (argv[0] !== 'vmsvc/device.connection' || argv[3] !== '0') continue;
    out.push({ argv, rc: Number(o.rc), start: ms(o.start), imported: ms(o.imported), locked: ms(o.locked), ip: ms(o.ip), ipDone: ms(o.ipDone), end: ms(o.end) });
  }
  return out;
}

export interface Capture {
  stop(t0Ns: number, wallT0Ms: number): Promise<StormTrace>;
}

/** Start tcpdump on prod's eth0 (resolves once it listens). */
export async function startCapture(lab: EsxiLab): Promise<Capture> {
  takeVimCmd(lab, 0); // forget calls before this storm
  const file = join(lab.dir, 'storm.pcap');
  rmSync(file, { force: true });
  const [cmd, ...args] = ns(lab.ns.prod, ['tcpdump', '-i', 'eth0', '-n', '-s', '64', '-B', '8192', '-U', '-w', file]);
  const child: ChildProcess = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 3000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => d.includes('listening') && (clearTimeout(t), resolve()));
    child.on('exit', () => (clearTimeout(t), resolve()));
  });
  return {
    async stop(t0Ns, wallT0Ms) {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      const cuts = takeVimCmd(lab, t0Ns);
      const r = await run(['tcpdump', '-r', file, '-n', '-e', '-tt'], { timeoutMs: 30_000 }).catch(() => ({ stdout: '' }));
      rmSync(file, { force: true });
      return analyse(String(r.stdout), wallT0Ms, cuts);
    },
  };
}

/** Pure: frames of a `tcpdump -n -e -tt` listing against the vim-cmd steps. */
export function analyse(listing: string, wallT0Ms: number, cuts: VimCmdTrace[]): StormTrace {
  const cutAt = cuts.length ? (cuts[0]!.ipDone ?? NaN) : NaN;
  const t: StormTrace = { cuts, lastBroadcastMs: NaN, lastFrameMs: NaN, afterCut: { broadcast: 0, other: 0, lastBroadcastMs: NaN, otherKinds: [] }, frames: 0 };
  const kinds = new Map<string, number>();
  for (const line of listing.split('\n')) {
    const m = /^(\d+\.\d+) (\S+) > (\S+), (.*)$/.exec(line);
    if (!m) continue;
    const ms = Number(m[1]) * 1000 - wallT0Ms;
    if (ms < 0) continue;
    t.frames++;
    const bc = m[3] === 'ff:ff:ff:ff:ff:ff';
    t.lastFrameMs = ms;
    if (bc) t.lastBroadcastMs = ms;
    if (!(ms > cutAt)) continue;
    if (bc) {
      t.afterCut.broadcast++;
      t.afterCut.lastBroadcastMs = ms;
    } else {
      t.afterCut.other++;
      const k = m[4]!.replace(/length \d+.*$/, '').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/g, 'MAC').slice(0, 60).trim();
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
  }
  t.afterCut.otherKinds = [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, n]) => `${n}x ${k}`);
  return t;
}

/** One line per storm: the steps from the injected frame, ms. */
export function traceLine(decidedMs: number, quietMs: number, tr: StormTrace): string {
  const f = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(1));
  const c = tr.cuts[0];
  const steps = c ? `vim-cmd start ${f(c.start)}, imported ${f(c.imported)}, locked ${f(c.locked)}, ip spawned ${f(c.ip)}, ip done ${f(c.ipDone)}, exit ${f(c.end)}${tr.cuts.length > 1 ? ` (+${tr.cuts.length - 1} more disconnects)` : ''}` : 'no traced disconnect';
  const a = tr.afterCut;
  return `trace: decided ${f(decidedMs)}; ${steps}; quiet ${f(quietMs)}; at prod: last broadcast ${f(tr.lastBroadcastMs)}, last frame ${f(tr.lastFrameMs)}; after ip done: ${a.broadcast} broadcast (last ${f(a.lastBroadcastMs)}), ${a.other} other${a.otherKinds.length ? ` [${a.otherKinds.join('; ')}]` : ''}`;
}

/** A lull in a storm's first round trips is not its end; a trickle of flooded unicast after it is not the storm. */
const SETTLE_FRAMES = 100;
const SETTLE_MS = 500;
/**
 * Pure: the last frame at prod before 20 ms of silence that is followed by fewer than
 * SETTLE_FRAMES frames in SETTLE_MS (ms from tInjectNs, and frames from the first one to it). The
 * bench's own quiet (analyze.ts stormStats) takes the first 20 ms of silence: with --trace it fell
 * before the cut had landed in 2 of 5 storms (4 and 46 ms; the storm went on to 166 and 207 ms at
 * prod), and a storm-control baseline showed quiet at 59 ms while it shut at 383 ms.
 */
export function settledQuiet(s: { t: readonly number[]; c: readonly number[] }, tInjectNs: number): { ms: number; frames: number } {
  const n = s.t.length;
  let b = 0;
  while (b < n && (s.t[b] as number) < tInjectNs) b++;
  const base = b > 0 ? (s.c[b - 1] as number) : (s.c[0] ?? 0);
  for (let j = b + 1; j < n; j++) {
    const cj = s.c[j] as number;
    if (cj === (s.c[j - 1] as number)) continue; // not a frame
    const tj = s.t[j] as number;
    let m = j;
    while (m < n && (s.t[m] as number) - tj < 20e6) m++;
    if (m >= n) break;
    if ((s.c[m] as number) !== cj) continue;
    let k = m;
    while (k < n - 1 && (s.t[k] as number) - tj < (20 + SETTLE_MS) * 1e6) k++;
    if ((s.t[k] as number) - tj < (20 + SETTLE_MS) * 1e6) break; // observation ended first: not known
    if ((s.c[k] as number) - cj < SETTLE_FRAMES) return { ms: (tj - tInjectNs) / 1e6, frames: cj - base };
  }
  return { ms: NaN, frames: NaN };
}
