// The near-limit reference (issue 11 item 6): what this machine allows at all. A minimal poller
// reads rx_packets of the ports it is told to cut every ~1 ms through kept-open fds and clears
// IFF_UP by writing /sys/class/net/X/flags (~0.2 ms, no spawn; LAB-FACTS) after two samples in a
// row that saw frames. It makes no decision: the lab is quiet before the storm, so any frame is
// the storm, and which ports to cut is given. Every agent figure is also a ratio to this one.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { assertIfName } from './names.js';

export interface NearLimitConfig {
  ports: string[];
  durationMs: number;
  /**
   * Cut by running this command (argv, 5 s timeout) instead of the flags write: the same poller
   * with a host's own cut call (the ESXi stand-in's `vim-cmd`), so a bench can tell the cut call's
   * share from the decision's. Only with one port.
   */
  cutArgv?: string[];
}

export interface NearLimitResult {
  startNs: number;
  endNs: number;
  /** Per cut port: when the second hot sample was read, and when the flags write returned. */
  cut: Array<{ port: string; tNs: number; tDoneNs: number; ok: boolean; error?: string }>;
  samples: number;
}

/** Pure: two consecutive samples with frames make a port hot. */
export function hotStep(prevCount: number, cur: number, prev: number): { count: number; hot: boolean } {
  const count = cur > prev ? prevCount + 1 : 0;
  return { count, hot: count >= 2 };
}

export function validateNearLimit(c: NearLimitConfig): NearLimitConfig {
  if (c.ports.length === 0) throw new Error('near-limit: --ports is empty');
  c.ports.forEach(assertIfName);
  if (!(c.durationMs > 0 && c.durationMs <= 60_000)) throw new Error('near-limit: --duration-ms must be in (0, 60000]');
  if (c.cutArgv && (c.cutArgv.length === 0 || c.ports.length !== 1 || !c.cutArgv.every((a) => typeof a === 'string'))) {
    throw new Error('near-limit: --cut-argv must be a non-empty JSON array of strings, with exactly one port');
  }
  return c;
}

const now = (): number => Number(process.hrtime.bigint());

/** Clear IFF_UP (0x1) of a port through sysfs: what `ip link set down` does, without a spawn. */
function flagsDown(port: string, buf: Buffer): void {
  const fd = openSync(`/sys/class/net/${port}/flags`, 'r+');
  try {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const flags = Number.parseInt(buf.toString('latin1', 0, n).trim(), 16);
    writeSync(fd, `0x${(flags & ~1).toString(16)}`, 0);
  } finally {
    closeSync(fd);
  }
}

/** Run the given cut command; throws with its stderr when it fails. */
function cutByCommand(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${argv[0]} exited ${r.status ?? r.signal}: ${String(r.stderr).trim().slice(0, 200)}`);
}

/** Must run inside the namespace whose ports it cuts. */
export async function runNearLimit(cfg: NearLimitConfig, signal?: AbortSignal, onStart?: (startNs: number) => void): Promise<NearLimitResult> {
  validateNearLimit(cfg);
  const fds = cfg.ports.map((p) => openSync(`/sys/class/net/${p}/statistics/rx_packets`, 'r'));
  const buf = Buffer.alloc(32);
  const read = (fd: number): number => Number(buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0)).trim());
  const prev = fds.map(read);
  const counts = fds.map(() => 0);
  const done = fds.map(() => false);
  const startNs = now();
  const res: NearLimitResult = { startNs, endNs: 0, cut: [], samples: 0 };
  onStart?.(startNs);
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const t = now();
      res.samples++;
      for (let i = 0; i < fds.length; i++) {
        if (done[i]) continue;
        const cur = read(fds[i]!);
        const s = hotStep(counts[i]!, cur, prev[i]!);
        counts[i] = s.count;
        prev[i] = cur;
        if (!s.hot) continue;
        done[i] = true;
        const port = cfg.ports[i]!;
        try {
          if (cfg.cutArgv) cutByCommand(cfg.cutArgv);
          else flagsDown(port, buf);
          res.cut.push({ port, tNs: t, tDoneNs: now(), ok: true });
        } catch (err) {
          res.cut.push({ port, tNs: t, tDoneNs: now(), ok: false, error: (err as Error).message });
        }
      }
      if (t - startNs >= cfg.durationMs * 1e6 || signal?.aborted || done.every(Boolean)) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  for (const fd of fds) closeSync(fd);
  res.endNs = now();
  return res;
}
