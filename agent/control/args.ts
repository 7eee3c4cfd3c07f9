import { ControlError } from './server.js';
import { parseDuration } from './duration.js';

// Control arguments validated at the edge, before anything reaches the breaker: a value that
// passes here can be used as it is (finite, in range, the right type). `hold` with forMs 1e300
// once got past a check for "positive number", made `new Date(now + forMs)` throw inside every
// tick, and stopped protection until restart. Pure (the clock comes in).

/** A hold longer than a year is a typo, not an intent (the same bound as `--for`). */
export const MAX_HOLD_MS = 366 * 86_400_000;
/** `events --since`: at most a year back. */
export const MAX_SINCE_MS = 366 * 86_400_000;
/** `events` returns at most this many lines. */
export const MAX_EVENT_LINES = 10_000;

export interface OperatorArgs {
  port: string;
  reason: string;
  /** hold only: ms until it expires, or null (until released). */
  forMs: number | null;
  /** The client waits for the action's outcome. */
  wait: boolean;
}

/** An optional string field, at most max characters; absent is ''. */
export function str(v: unknown, name: string, max = 1024): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new ControlError('E_BAD_ARGS', `${name} must be a string`);
  if (v.length > max) throw new ControlError('E_BAD_ARGS', `${name} is longer than ${max} characters`);
  return v;
}

/** A number field: finite, within [min, max] (min exclusive when gt), integer when int. */
export function num(v: unknown, name: string, o: { min: number; max: number; gt?: boolean; int?: boolean }): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ControlError('E_BAD_ARGS', `${name} must be a finite number`);
  if (o.int && !Number.isInteger(v)) throw new ControlError('E_BAD_ARGS', `${name} must be a whole number`);
  if ((o.gt ? v <= o.min : v < o.min) || v > o.max) throw new ControlError('E_BAD_ARGS', `${name} must be ${o.gt ? '>' : '>='} ${o.min} and <= ${o.max}, got ${v}`);
  return v;
}

/** trip / restore / hold / release arguments. */
export function operatorArgs(cmd: 'trip' | 'restore' | 'hold' | 'release', args: Record<string, unknown>): OperatorArgs {
  const port = str(args.port, 'port', 64);
  if (port === '') throw new ControlError('E_BAD_ARGS', 'port is required');
  const reason = str(args.reason, 'reason') || 'operator request';
  let forMs: number | null = null;
  if (cmd === 'hold') {
    if (args.forMs !== undefined && args.forMs !== null) forMs = num(args.forMs, 'forMs', { min: 0, gt: true, max: MAX_HOLD_MS });
    else if (args.for !== undefined && args.for !== null) {
      forMs = parseDuration(str(args.for, 'for', 32));
      if (forMs === null) throw new ControlError('E_BAD_ARGS', 'for must be a duration like 30s, 5m, 2h (at most 366d)');
    }
  }
  if (args.wait !== undefined && typeof args.wait !== 'boolean') throw new ControlError('E_BAD_ARGS', 'wait must be true or false');
  return { port, reason, forMs, wait: args.wait === true };
}

/** `events` arguments. */
export function eventsArgs(args: Record<string, unknown>): { port: string; sinceMs: number | null; limit: number } {
  const port = str(args.port, 'port', 64);
  const sinceMs = args.sinceMs === undefined || args.sinceMs === null ? null : num(args.sinceMs, 'sinceMs', { min: 0, max: MAX_SINCE_MS });
  const limit = args.limit === undefined || args.limit === null ? MAX_EVENT_LINES : num(args.limit, 'limit', { min: 1, max: Number.MAX_SAFE_INTEGER, int: true });
  return { port, sinceMs, limit: Math.min(limit, MAX_EVENT_LINES) };
}
