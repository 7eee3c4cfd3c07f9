import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import type { ActionKind, ActionRequest, ActionResult } from '../types.js';
import { assertIfName } from '../host/names.js';
import { isAdminUp } from '../host/interfaces.js';
import { runArgv } from '../host/exec.js';

// Actions are a closed set of verbs. link-down goes through the sysfs flags file first:
// clearing IFF_UP there costs ~0.2 ms with no spawn, against ~3 ms for `ip link set down`
// (LAB-FACTS; re-measured by scripts/bench-reaction). The argv route is the fallback and the
// only route for link-up, where speed does not matter.

export function toArgv(kind: ActionKind, port: string): string[] {
  assertIfName(port);
  return ['ip', 'link', 'set', 'dev', port, kind === 'link-down' ? 'down' : 'up'];
}

const IFF_UP = 0x1;
const flagsBuf = Buffer.alloc(32);

/** Clear or set IFF_UP through /sys/class/net/X/flags (same kernel path as ip: dev_change_flags). */
export function setAdminUpSysfs(port: string, up: boolean, root = '/sys/class/net'): void {
  assertIfName(port);
  const fd = openSync(`${root}/${port}/flags`, 'r+');
  try {
    const n = readSync(fd, flagsBuf, 0, flagsBuf.length, 0);
    const flags = Number.parseInt(flagsBuf.toString('latin1', 0, n).trim(), 16);
    if (!Number.isFinite(flags)) throw new Error(`unreadable flags for ${port}`);
    const next = up ? flags | IFF_UP : flags & ~IFF_UP;
    writeSync(fd, `0x${next.toString(16)}\n`, 0);
  } finally {
    closeSync(fd);
  }
}

export interface ActionOptions {
  timeoutMs: number;
  retries: number;
  /** Try the sysfs flags route before argv (link-down only). */
  sysfsFirst?: boolean;
  sysRoot?: string;
}

/** Execute one action with retries and verify the port really is in the requested state. */
export async function executeLinkAction(req: ActionRequest, opts: ActionOptions): Promise<ActionResult> {
  const t0 = performance.now();
  const want = req.kind === 'link-up';
  const argv = toArgv(req.kind, req.port); // validates the name before anything runs
  let lastError = '';
  let via = '';
  const attemptsMax = 1 + Math.max(0, opts.retries);
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    try {
      if (req.kind === 'link-down' && opts.sysfsFirst !== false && attempt === 1) {
        via = 'sysfs-flags';
        setAdminUpSysfs(req.port, false, opts.sysRoot);
      } else {
        via = argv.join(' ');
        await runArgv(argv, opts.timeoutMs);
      }
      const state = isAdminUp(req.port, opts.sysRoot);
      if (state === want) {
        return { kind: req.kind, port: req.port, ok: true, via, argv: via === 'sysfs-flags' ? undefined : argv, durationMs: performance.now() - t0, attempts: attempt, verified: true };
      }
      lastError = state === null ? 'port vanished' : `port still ${state ? 'up' : 'down'} after ${via}`;
      if (state === null) break;
    } catch (err) {
      lastError = (err as Error).message;
    }
  }
  return { kind: req.kind, port: req.port, ok: false, via, argv, durationMs: performance.now() - t0, attempts: attemptsMax, error: lastError, verified: false };
}
