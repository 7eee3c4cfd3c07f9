// Control socket protocol, version 1: one JSON object per line each way.
// request  {"v":1,"id":N,"cmd":"status","args":{...}}
// response {"v":1,"id":N,"ok":true,"result":...} | {"v":1,"id":N,"ok":false,"error":{"code","message"}}
import type { Role } from '../types.js';
import type { EsxHostStatus } from '../esxi/host.js';

export const PROTOCOL_VERSION = 1;
export const MAX_LINE = 64 * 1024;

export interface Request {
  v: number;
  id: number;
  cmd: string;
  args?: Record<string, unknown>;
}

export type Response =
  | { v: number; id: number; ok: true; result: unknown }
  | { v: number; id: number | null; ok: false; error: { code: string; message: string } };

/**
 * A result sent as a JSON array of items that are already JSON text (journal lines as they are
 * on disk), in slices the server writes as the client reads them: never one object on the heap,
 * never re-serialized. `close` is called once the answer ends, however it ends.
 */
export interface StreamedArray {
  readonly streamed: AsyncIterable<readonly Buffer[]>;
  close(): Promise<void>;
}

export function isStreamedArray(x: unknown): x is StreamedArray {
  return typeof x === 'object' && x !== null && 'streamed' in x && typeof (x as StreamedArray).close === 'function';
}

/** Validate one request line. Pure. */
export function parseRequest(line: string): Request | { error: { code: string; message: string } } {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return { error: { code: 'E_BAD_JSON', message: 'request is not valid JSON' } };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { error: { code: 'E_BAD_REQUEST', message: 'request must be an object' } };
  const r = o as Record<string, unknown>;
  if (r.v !== PROTOCOL_VERSION) return { error: { code: 'E_VERSION', message: `protocol version must be ${PROTOCOL_VERSION}` } };
  if (typeof r.id !== 'number' || !Number.isInteger(r.id)) return { error: { code: 'E_BAD_REQUEST', message: 'id must be an integer' } };
  if (typeof r.cmd !== 'string') return { error: { code: 'E_BAD_REQUEST', message: 'cmd must be a string' } };
  if (r.args !== undefined && (typeof r.args !== 'object' || r.args === null || Array.isArray(r.args))) {
    return { error: { code: 'E_BAD_REQUEST', message: 'args must be an object' } };
  }
  return { v: r.v, id: r.id, cmd: r.cmd, args: r.args as Record<string, unknown> | undefined };
}

/** The answer to `status`: read by `stormbreaker status` (cli/render.ts) and by the metrics. */
export interface StatusAnswer {
  policy: { file: string; hash: string; dryRun: boolean; loadedAt: string; reloads: number; lastError: { at: string; trigger: string; errors: string[] } | null };
  health: {
    ticks: number;
    ticksPerSec: number;
    periodMs: number;
    lastTickAgeMs: number;
    maxLagMs: number;
    /** Ticks that started 10 ms or more late since start (the event loop was held). */
    lateTicks?: number;
    sources: string[];
    broadcastCounting: boolean;
    reachability: 'off' | { target: string; state: 'ok' | 'unknown' | 'reachability-down'; error?: string | null; lastCheckAt: string | null; lastRttMs: number | null };
    /** 'failing': records are not reaching the disk (kept in memory, `pending`; `dropped` lost). */
    journal: { state: 'ok' | 'failing'; error: string | null; since: string | null; pending: number; dropped: number };
    /** Gaps between ticks above the stall threshold since start, and the longest (ms). */
    stalls: { count: number; longestMs: number };
  };
  esxi?: EsxHostStatus[];
  ports: PortStatusRow[];
}

/** One port in `status` (a column each in the CLI's table). */
export type PortStatusRow = {
  port: string;
  bridge: string | null;
  role: Role | undefined;
  protected: boolean | undefined;
  state: string;
  heldUntil?: string;
  recoveryTries?: number;
  rxPps: number | null;
  floodPps: number | null;
  txPps: number | null;
  lastEvent: string | null;
  /** No rule names it: counters read for loop evidence on its bridge, never acted on. */
  observed?: true;
};
