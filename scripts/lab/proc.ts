// What a process costs, read from /proc: CPU time (utime+stime), resident memory (VmRSS, VmHWM)
// and its children. Parsers are pure and take the files' text; readers do the I/O.
import { readFileSync, readdirSync } from 'node:fs';
import { run } from './exec.js';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** Clock ticks (CLK_TCK per second), all threads of the process. */
  utime: number;
  stime: number;
  /** Clock ticks of children that exited and were waited for. */
  cutime: number;
  cstime: number;
  numThreads: number;
}

/**
 * Pure: fields of /proc/PID/stat. comm is in parentheses and may itself hold spaces or ')', so
 * the fields are counted from the LAST ')' (proc(5)).
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`not a /proc/PID/stat line: ${JSON.stringify(text.slice(0, 80))}`);
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const f = (n: number): number => {
    const v = Number(rest[n - 3]);
    if (!Number.isFinite(v)) throw new Error(`/proc/${pid}/stat: field ${n} is not a number`);
    return v;
  };
  return { pid, comm, state: rest[0] ?? '?', ppid: f(4), utime: f(14), stime: f(15), cutime: f(16), cstime: f(17), numThreads: f(20) };
}

export interface ProcMem {
  /** Resident set now, KiB. */
  rssKb: number;
  /** Peak resident set since start ("high water mark"), KiB. */
  hwmKb: number;
}

/** Pure: VmRSS and VmHWM of /proc/PID/status (NaN when absent, e.g. a zombie). */
export function parseProcStatus(text: string): ProcMem {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

export function readProcStat(pid: number): ProcStat {
  return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

export function readProcMem(pid: number): ProcMem {
  return parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** argv of a process (NUL-separated in /proc/PID/cmdline). */
export function readCmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s.length > 0);
}

/** Live descendants of pid (children of every thread, recursively); [] for a process that is gone. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tids) {
      let kids: string;
      try {
        kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
        out.push(Number(k));
        walk(Number(k));
      }
    }
  };
  walk(pid);
  return out;
}

/** CLK_TCK, the unit of utime/stime (100 on every Linux build seen, but asked, not assumed). */
export async function clockTicksPerSecond(): Promise<number> {
  const { stdout } = await run(['getconf', 'CLK_TCK']);
  const hz = Number(stdout.trim());
  if (!Number.isInteger(hz) || hz <= 0) throw new Error(`getconf CLK_TCK gave ${JSON.stringify(stdout)}`);
  return hz;
}

/** utime+stime per thread of pid, keyed by tid, with the thread's name (main, libuv-worker, V8 ...). */
export function threadTicks(pid: number): Map<number, { comm: string; ticks: number }> {
  const out = new Map<number, { comm: string; ticks: number }>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = parseProcStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      out.set(Number(tid), { comm: s.comm, ticks: s.utime + s.stime });
    } catch {
      // thread ended between listing and reading
    }
  }
  return out;
}

/** One look at a process tree's CPU time, to be diffed against a later one. */
export interface CpuSnapshot {
  pid: number;
  /** The process's own name (threads that share it and are not the main thread count as 'other'). */
  comm: string;
  tNs: number;
  /** utime+stime of the process itself, ticks. */
  self: number;
  /** utime+stime per thread (tid -> name, ticks). */
  threads: Map<number, { comm: string; ticks: number }>;
  /** cutime+cstime: children already waited for, ticks. */
  reaped: number;
  /** utime+stime of each live descendant, ticks. */
  kids: Map<number, number>;
}

export function cpuSnapshot(pid: number): CpuSnapshot {
  const tNs = Number(process.hrtime.bigint());
  const s = readProcStat(pid);
  const kids = new Map<number, number>();
  for (const k of descendants(pid)) {
    try {
      const ks = readProcStat(k);
      kids.set(k, ks.utime + ks.stime);
    } catch {
      // exited between listing and reading
    }
  }
  return { pid, comm: s.comm, tNs, self: s.utime + s.stime, threads: threadTicks(pid), reaped: s.cutime + s.cstime, kids };
}

export interface CpuShare {
  /** Percent of one core used by the process itself over the interval. */
  selfPct: number;
  /** Percent of one core used by its descendants (live ones, plus those reaped in between). */
  childrenPct: number;
  /** selfPct split into the main thread ('main'), other threads of the same name ('other'), and threads named otherwise. */
  byThread: Record<string, number>;
  seconds: number;
}

/**
 * Pure: CPU share between two snapshots. A descendant that appeared in between counts from 0
 * (it started inside the interval); one that vanished is covered by the parent's cutime/cstime
 * only if the parent waited for it, which Node does for every child it spawned.
 */
export function cpuShare(a: CpuSnapshot, b: CpuSnapshot, hz: number): CpuShare {
  const seconds = (b.tNs - a.tNs) / 1e9;
  let kidTicks = b.reaped - a.reaped;
  for (const [pid, t] of b.kids) kidTicks += t - (a.kids.get(pid) ?? 0);
  const pct = (ticks: number): number => (ticks / hz / seconds) * 100;
  const byThread: Record<string, number> = {};
  // Node 20 names every thread "node", so the main thread (tid == pid: event loop, sampling) is
  // told apart by tid; the rest are the libuv pool and V8's platform threads (GC, compiler).
  for (const [tid, t] of b.threads) {
    const name = tid === a.pid ? 'main' : t.comm === a.comm ? 'other' : t.comm;
    byThread[name] = (byThread[name] ?? 0) + pct(t.ticks - (a.threads.get(tid)?.ticks ?? 0));
  }
  return { selfPct: pct(b.self - a.self), childrenPct: pct(kidTicks), byThread, seconds };
}

/** Whole-machine busy share from /proc/stat "cpu" lines: how contended the host was. */
export interface HostCpu {
  busy: number;
  total: number;
}

/** Pure: busy and total jiffies of the aggregate "cpu" line of /proc/stat. */
export function parseHostCpu(text: string): HostCpu {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate cpu line');
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice).
  const total = v.slice(0, 8).reduce((s, x) => s + x, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

export function readHostCpu(): HostCpu {
  return parseHostCpu(readFileSync('/proc/stat', 'utf8'));
}
