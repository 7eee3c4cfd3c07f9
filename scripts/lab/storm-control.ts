// A faithful 1-second switch storm-control, the baseline stormbreaker is compared against.
// Like a switch (e.g. Cisco `storm-control broadcast level pps N` + `action shutdown`), it
// measures each port's rate over fixed intervals whose phase runs free from its start, and at
// the end of an interval errdisables EVERY port whose rate was above the level: both members of
// a loop, not one. A shut port stays shut (errdisable needs a human).
import { openSync, readSync, closeSync } from 'node:fs';
import { run } from './exec.js';
import { assertIfName } from './names.js';

export interface StormControlConfig {
  ports: string[];
  levelPps: number;
  intervalMs: number;
  durationMs: number;
}

export interface StormControlState {
  prev: number[];
  shut: boolean[];
}

export interface ShutEvent {
  port: string;
  /** CLOCK_MONOTONIC ns of the interval end that decided the shut. */
  tNs: number;
  /** When `ip link set down` returned. */
  tDoneNs: number;
  pps: number;
  ok: boolean;
  error?: string;
}

export interface StormControlResult {
  startNs: number;
  endNs: number;
  levelPps: number;
  intervalMs: number;
  ports: string[];
  shut: ShutEvent[];
  /** Every interval: its end time and each port's measured pps. */
  intervals: Array<{ tNs: number; pps: number[] }>;
}

/**
 * Pure: one interval end. Rates come from the measured interval length, not the nominal one.
 * A counter that went backwards is a reset, not a storm: no rate for it this interval.
 */
export function stormControlStep(
  state: StormControlState,
  cur: readonly number[],
  dtNs: number,
  levelPps: number,
): { state: StormControlState; pps: number[]; toShut: number[] } {
  const pps = cur.map((c, i) => {
    const d = c - (state.prev[i] ?? c);
    return d >= 0 && dtNs > 0 ? (d * 1e9) / dtNs : 0;
  });
  const toShut: number[] = [];
  const shut = [...state.shut];
  pps.forEach((r, i) => {
    if (!shut[i] && r > levelPps) {
      toShut.push(i);
      shut[i] = true;
    }
  });
  return { state: { prev: [...cur], shut }, pps, toShut };
}

export function validateConfig(c: StormControlConfig): StormControlConfig {
  if (c.ports.length === 0) throw new Error('storm-control: --ports is empty');
  c.ports.forEach(assertIfName);
  if (!(c.levelPps > 0)) throw new Error('storm-control: --pps must be > 0');
  if (!(c.intervalMs >= 10 && c.intervalMs <= 10_000)) throw new Error('storm-control: --interval-ms must be in 10..10000');
  if (!(c.durationMs > 0 && c.durationMs <= 60_000)) throw new Error('storm-control: --duration-ms must be in (0, 60000]');
  return c;
}

const now = (): number => Number(process.hrtime.bigint());

/**
 * Run storm-control on this namespace's ports until durationMs or until `signal` aborts.
 * Must run inside the namespace whose ports it watches (reads /sys/class/net/PORT).
 */
export async function runStormControl(
  cfg: StormControlConfig,
  signal?: AbortSignal,
  onStart?: (startNs: number) => void,
): Promise<StormControlResult> {
  validateConfig(cfg);
  const fds = cfg.ports.map((p) => openSync(`/sys/class/net/${p}/statistics/rx_packets`, 'r'));
  const buf = Buffer.alloc(32);
  const read = (fd: number): number => Number(buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0)).trim());
  const intervalNs = cfg.intervalMs * 1e6;
  const startNs = now();
  const endNs = startNs + cfg.durationMs * 1e6;
  let state: StormControlState = { prev: fds.map(read), shut: cfg.ports.map(() => false) };
  let lastNs = startNs;
  const result: StormControlResult = {
    startNs,
    endNs,
    levelPps: cfg.levelPps,
    intervalMs: cfg.intervalMs,
    ports: cfg.ports,
    shut: [],
    intervals: [],
  };
  const pending: Array<Promise<void>> = [];
  onStart?.(startNs);
  try {
    for (let k = 1; ; k++) {
      // Free-running phase: interval k ends at start + k * interval, whenever the storm began.
      const due = startNs + k * intervalNs;
      if (due > endNs) break;
      const aborted = await sleepUntil(due, signal);
      if (aborted) break;
      const t = now();
      const cur = fds.map(read);
      const step = stormControlStep(state, cur, t - lastNs, cfg.levelPps);
      state = step.state;
      lastNs = t;
      result.intervals.push({ tNs: t, pps: step.pps.map(Math.round) });
      for (const i of step.toShut) {
        const port = cfg.ports[i] as string;
        const pps = Math.round(step.pps[i] as number);
        // All ports over the level go down together, as errdisable does on a switch.
        pending.push(
          run(['ip', 'link', 'set', 'dev', port, 'down'], { timeoutMs: 2000 }).then(
            () => void result.shut.push({ port, tNs: t, tDoneNs: now(), pps, ok: true }),
            (err: unknown) =>
              void result.shut.push({ port, tNs: t, tDoneNs: now(), pps, ok: false, error: String(err) }),
          ),
        );
      }
    }
  } finally {
    await Promise.all(pending);
    for (const fd of fds) closeSync(fd);
  }
  result.endNs = now();
  return result;
}

function sleepUntil(tNs: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(true);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(false);
      },
      Math.max(0, (tNs - now()) / 1e6),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
