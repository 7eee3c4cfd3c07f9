import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { ActionKind, ActionRequest, ActionResult } from '../types.js';
import { assertIfName } from '../host/names.js';
import { isAdminUp } from '../host/interfaces.js';
import { runArgv } from '../host/exec.js';
import { bridgePortOf, nativeBridgeState, BR_STATE_DISABLED, BR_STATE_FORWARDING, type BridgeStateSetter } from '../host/bridge-port.js';

// Actions are a closed set of verbs. link-down goes through the sysfs flags file first:
// clearing IFF_UP there costs ~0.2 ms with no spawn, against ~3 ms for `ip link set down`
// (LAB-FACTS; re-measured by scripts/bench-reaction). The argv route is the fallback and the
// only route for link-up, where speed does not matter.
// A bridge port is stopped faster still: its bridge STP state set to disabled over rtnetlink
// (0.07-0.42 ms during a storm, and the bridge drops its frames at once), where clearing IFF_UP
// blocks 36-60 ms in dev_close and forwarding goes on until the end of it. The admin-down follows
// off the event loop (see stopBridgePort).

export function toArgv(kind: ActionKind, port: string): string[] {
  assertIfName(port);
  return ['ip', 'link', 'set', 'dev', port, kind === 'link-down' ? 'down' : 'up'];
}

const IFF_UP = 0x1;
const flagsBuf = Buffer.alloc(32);

/** The flags file's text with IFF_UP set or cleared, as written back. */
function withIffUp(port: string, text: string, up: boolean): string {
  const flags = Number.parseInt(text.trim(), 16);
  if (!Number.isFinite(flags)) throw new Error(`unreadable flags for ${port}`);
  return `0x${(up ? flags | IFF_UP : flags & ~IFF_UP).toString(16)}\n`;
}

/** Clear or set IFF_UP through /sys/class/net/X/flags (same kernel path as ip: dev_change_flags). */
export function setAdminUpSysfs(port: string, up: boolean, root = '/sys/class/net'): void {
  assertIfName(port);
  const fd = openSync(`${root}/${port}/flags`, 'r+');
  try {
    const n = readSync(fd, flagsBuf, 0, flagsBuf.length, 0);
    writeSync(fd, withIffUp(port, flagsBuf.toString('latin1', 0, n), up), 0);
  } finally {
    closeSync(fd);
  }
}

/** The same flags write on libuv's pool: dev_close's wait blocks a pool thread, not the event loop. */
export async function setAdminUpSysfsAsync(port: string, up: boolean, root = '/sys/class/net'): Promise<void> {
  assertIfName(port);
  const fh = await open(`${root}/${port}/flags`, 'r+');
  try {
    const buf = Buffer.alloc(32);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    await fh.write(withIffUp(port, buf.toString('latin1', 0, bytesRead), up), 0);
  } finally {
    await fh.close();
  }
}

export interface ActionOptions {
  timeoutMs: number;
  retries: number;
  /** Try the sysfs flags route before argv (link-down only). */
  sysfsFirst?: boolean;
  /** Stop a bridge port by its bridge state first (link-down; restore on link-up). Default on. */
  bridgeState?: boolean;
  sysRoot?: string;
  /** The rtnetlink setter (tests inject one); default the native addon's, null if it is missing. */
  setBridgeState?: BridgeStateSetter | null;
  /**
   * link-down of a bridge port: called once its state reads back disabled (forwarding stopped),
   * before the admin-down, with a result of stage 'stopped'; the final result follows as usual.
   */
  onStopped?: (r: ActionResult) => void;
  /**
   * Awaited between the stop and the admin-down. The admin-down holds rtnl for tens of ms under a
   * storm (dev_close), and the next loop member's state-set needs rtnl too: the caller defers the
   * admin-down until its loop is settled.
   */
  adminDownGate?: () => Promise<void>;
  /**
   * link-down: the port's ifindex as the caller knows it for a bridge port (the local source's
   * view). The stop then goes straight to the state change: the two sysfs reads that find the
   * ifindex took 0.2-0.4 ms in front of it in a storm (lab probe, session 13). The read-back after
   * it checks the name still has that ifindex; where it does not (the port was re-created since),
   * the stop is done again the long way, by name.
   */
  ifindexHint?: number;
}

const hrNs = (): number => Number(process.hrtime.bigint());

/** Execute one action with retries and verify the port really is in the requested state. */
export async function executeLinkAction(req: ActionRequest, opts: ActionOptions): Promise<ActionResult> {
  const t0 = performance.now();
  const want = req.kind === 'link-up';
  const argv = toArgv(req.kind, req.port); // validates the name before anything runs
  const setter = opts.bridgeState === false ? null : opts.setBridgeState !== undefined ? opts.setBridgeState : nativeBridgeState();
  let fallback: string | undefined;
  if (setter !== null && req.kind === 'link-down' && opts.ifindexHint !== undefined) {
    const r = await stopBridgePort(req, opts.ifindexHint, setter, opts, t0);
    if (typeof r !== 'string') return r;
  }
  const brport = setter === null ? null : bridgePortOf(req.port, opts.sysRoot);
  if (setter !== null && brport !== null) {
    if (req.kind === 'link-down') {
      const r = await stopBridgePort(req, brport.ifindex, setter, opts, t0);
      if (typeof r !== 'string') return r;
      fallback = r; // the kernel refused the state (kernel STP: EBUSY): today's route below
    } else {
      return startBridgePort(req, brport.ifindex, setter, opts, t0);
    }
  }
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
        return { kind: req.kind, port: req.port, ok: true, via, argv: via === 'sysfs-flags' ? undefined : argv, durationMs: performance.now() - t0, attempts: attempt, verified: true, ...(fallback ? { fallback } : {}) };
      }
      lastError = state === null ? 'port vanished' : `port still ${state ? 'up' : 'down'} after ${via}`;
      if (state === null) break;
    } catch (err) {
      lastError = (err as Error).message;
    }
  }
  return { kind: req.kind, port: req.port, ok: false, via, argv, durationMs: performance.now() - t0, attempts: attemptsMax, error: lastError, verified: false, ...(fallback ? { fallback } : {}) };
}

export const VIA_BRIDGE_STATE = 'netlink-brport-state';

/**
 * link-down of a bridge port: bridge state disabled (the storm through it stops here, stoppedNs),
 * read back from brport/state (opts.onStopped hears of it), then, once opts.adminDownGate lets it,
 * admin-down on libuv's pool (retried through `ip link`) and verified. A refusal of the state
 * change returns its errno name for the caller's fallback. The admin-down failing leaves the state disabled (the port stays cut) and the result not ok.
 */
async function stopBridgePort(req: ActionRequest, ifindex: number, setter: BridgeStateSetter, opts: ActionOptions, t0: number): Promise<ActionResult | string> {
  const err = setter(ifindex, BR_STATE_DISABLED);
  const stoppedNs = hrNs();
  const forwardingStoppedMs = performance.now() - t0;
  if (err !== 0) return `bridge state refused: ${errnoName(err)}`;
  const base: Pick<ActionResult, 'kind' | 'port' | 'via' | 'stoppedNs' | 'forwardingStoppedMs' | 'adminDownDeferredMs'> = { kind: req.kind, port: req.port, via: VIA_BRIDGE_STATE, stoppedNs, forwardingStoppedMs };
  const now = bridgePortOf(req.port, opts.sysRoot);
  // A hint gone stale: the name was re-created under another ifindex (the kernel does not hand
  // out an ifindex again until its counter wraps, so the old one names no port: ENODEV above).
  if (now !== null && now.ifindex !== ifindex) return `ifindex ${ifindex} is no longer ${req.port}'s (${now.ifindex})`;
  const state = now?.state ?? null;
  if (state !== BR_STATE_DISABLED) {
    return { ...base, ok: false, durationMs: performance.now() - t0, attempts: 1, verified: false, error: `bridge state of ${req.port} reads ${state ?? 'nothing'} after setting it disabled` };
  }
  if (opts.onStopped) opts.onStopped({ ...base, ok: true, stage: 'stopped', durationMs: performance.now() - t0, attempts: 1, verified: true });
  if (opts.adminDownGate) {
    const tg = performance.now();
    await opts.adminDownGate();
    base.adminDownDeferredMs = performance.now() - tg;
  }
  const argv = toArgv('link-down', req.port);
  let lastError = '';
  const attemptsMax = 1 + Math.max(0, opts.retries);
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    try {
      if (attempt === 1) await setAdminUpSysfsAsync(req.port, false, opts.sysRoot);
      else await runArgv(argv, opts.timeoutMs);
      const up = isAdminUp(req.port, opts.sysRoot);
      if (up === false) return { ...base, ok: true, argv: attempt === 1 ? undefined : argv, adminDownVia: attempt === 1 ? 'sysfs-flags' : argv.join(' '), durationMs: performance.now() - t0, attempts: attempt, verified: true };
      lastError = up === null ? 'port vanished' : `port still admin-up after ${attempt === 1 ? 'sysfs-flags' : argv.join(' ')}`;
      if (up === null) break;
    } catch (e) {
      lastError = (e as Error).message;
    }
  }
  return { ...base, ok: false, argv, durationMs: performance.now() - t0, attempts: attemptsMax, verified: false, error: `forwarding stopped (bridge state disabled, left so) but admin-down failed: ${lastError}` };
}

/**
 * link-up of a bridge port: admin-up, then bridge state forwarding set explicitly (a port whose
 * admin-down had failed stays disabled otherwise: the kernel resets the state only when the link
 * comes up). ENETDOWN (no carrier yet) is fine: the kernel makes it forwarding when carrier comes.
 */
async function startBridgePort(req: ActionRequest, ifindex: number, setter: BridgeStateSetter, opts: ActionOptions, t0: number): Promise<ActionResult> {
  const argv = toArgv('link-up', req.port);
  let lastError = '';
  const attemptsMax = 1 + Math.max(0, opts.retries);
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    try {
      await runArgv(argv, opts.timeoutMs);
      const err = setter(ifindex, BR_STATE_FORWARDING);
      const up = isAdminUp(req.port, opts.sysRoot);
      const state = bridgePortOf(req.port, opts.sysRoot)?.state ?? null;
      const stateOk = err === 0 ? state === BR_STATE_FORWARDING : err === ENETDOWN || err === EBUSY;
      if (up === true && stateOk) return { kind: req.kind, port: req.port, ok: true, via: `${argv.join(' ')}; ${VIA_BRIDGE_STATE}`, argv, durationMs: performance.now() - t0, attempts: attempt, verified: true };
      lastError = up === null ? 'port vanished' : !up ? 'port still admin-down' : `bridge state ${state ?? 'unreadable'} (${err === 0 ? 'set forwarding' : errnoName(err)})`;
      if (up === null) break;
    } catch (e) {
      lastError = (e as Error).message;
    }
  }
  return { kind: req.kind, port: req.port, ok: false, via: `${argv.join(' ')}; ${VIA_BRIDGE_STATE}`, argv, durationMs: performance.now() - t0, attempts: attemptsMax, error: lastError, verified: false };
}

// The kernel's errno numbers and names, as Node knows them (os.constants.errno, util.getSystemErrorName).
const { EBUSY, ENETDOWN } = osConstants.errno;
const errnoName = (err: number): string => getSystemErrorName(-err);
