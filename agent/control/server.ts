import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { PROTOCOL_VERSION } from './protocol.js';
import { peerCredOf, type PeerCred } from './peer.js';
import { serveConnection, type Connection } from './connection.js';

export class ControlError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** What the server knows about the connection a request came on. */
export interface RequestContext {
  /** The peer's credentials per the kernel (SO_PEERCRED), or null when unavailable. */
  peer: PeerCred | null;
}

export type Handler = (cmd: string, args: Record<string, unknown>, ctx: RequestContext) => Promise<unknown> | unknown;

export interface ControlServerOptions {
  onError?: (obj: object, msg: string) => void;
  /** Group (gid) that owns the socket and the directory the server creates for it. */
  gid?: number;
  /** Open connections at once (default MAX_CONNECTIONS); a function is asked at every accept. */
  maxConnections?: number | (() => number);
  /** A connection with nothing to do for this long is closed (default IDLE_MS). */
  idleMs?: number;
  /** A client that reads nothing of its answer for this long is dropped (default STALL_MS). */
  stallMs?: number;
}

/**
 * Connections at once, at most. Every connection is a file descriptor, and the agent needs
 * descriptors for what protects; the daemon lowers the cap when the real limit is low
 * (host/fd-limit.ts). 64 is far more than any operator uses.
 */
export const MAX_CONNECTIONS = 64;
/** A connection with no request in flight and nothing sent for this long is closed. */
export const IDLE_MS = 30_000;
/** Commands that read the journal: their selection runs one at a time across all clients (its answer then streams, paced: daemon/commands.ts). */
const HEAVY = new Set(['events']);

/**
 * Unix-socket control server: many clients, one JSON line per request, answered in order per
 * connection. A bad line gets an error answer and the connection stays usable; an over-long line
 * gets E_TOO_LARGE and that client is closed. When all MAX_CONNECTIONS are open, the one idle the
 * longest makes room for the newcomer (an operator always gets in); if none is idle, the newcomer
 * gets E_BUSY. Nothing a client sends can throw out of here.
 */
export function startControlServer(path: string, handle: Handler, opts: ControlServerOptions = {}): Promise<Server> {
  const dir = dirname(path);
  const created = mkdirSync(dir, { recursive: true, mode: 0o750 });
  if (created !== undefined && opts.gid !== undefined) {
    chownSync(dir, -1, opts.gid);
    chmodSync(dir, 0o750);
  }
  try {
    unlinkSync(path); // a stale socket from a crash
  } catch {
    // none
  }
  const onError = opts.onError ?? (() => undefined);
  const cap = opts.maxConnections ?? MAX_CONNECTIONS;
  const maxConnections = typeof cap === 'function' ? cap : () => cap;
  const idleMs = opts.idleMs ?? IDLE_MS;
  /** Open connections, least recently active first (re-inserted on activity). */
  const open = new Map<Socket, Connection>();
  let heavy: Promise<unknown> = Promise.resolve();
  let refusedSince = 0;

  const run = (cmd: string, args: Record<string, unknown>, ctx: RequestContext): Promise<unknown> => {
    if (!HEAVY.has(cmd)) return Promise.resolve().then(() => handle(cmd, args, ctx));
    const next = heavy.then(() => handle(cmd, args, ctx));
    heavy = next.catch(() => undefined);
    return next;
  };

  const makeRoom = (max: number): boolean => {
    // Over the cap (it fell: more ports, a lower limit), the idle ones go until it is met.
    while (open.size > max) {
      const idle = [...open].find(([, c]) => c.idle());
      if (!idle) break;
      idle[1].drop();
      open.delete(idle[0]);
    }
    if (open.size < max) return true;
    for (const [s, c] of open) {
      if (!c.idle()) continue;
      c.drop();
      open.delete(s);
      return true;
    }
    return false;
  };

  const server = createServer((sock: Socket) => {
    sock.on('error', () => undefined); // a reset by the peer is not ours to report twice
    const max = maxConnections();
    if (!makeRoom(max)) {
      if (refusedSince++ === 0) onError({ maxConnections: max }, 'control connections at their cap, all busy: refusing new clients');
      sock.end(JSON.stringify({ v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'E_BUSY', message: `${max} control connections busy; try again` } }) + '\n');
      setTimeout(() => sock.destroy(), 1000).unref();
      return;
    }
    if (refusedSince > 0) {
      onError({ refused: refusedSince }, 'control connections below their cap again');
      refusedSince = 0;
    }
    const ctx: RequestContext = { peer: peerCredOf(sock) };
    const conn = serveConnection(sock, {
      run: (req) => run(req.cmd, req.args ?? {}, ctx),
      onError,
      ...(opts.stallMs !== undefined ? { stallMs: opts.stallMs } : {}),
      touch: () => {
        // Most recently active last: eviction takes the first idle one.
        if (open.delete(sock)) open.set(sock, conn);
      },
    });
    open.set(sock, conn);
    sock.setTimeout(idleMs, () => {
      if (conn.idle()) conn.drop();
    });
    sock.on('close', () => open.delete(sock));
  });
  server.on('error', (err) => onError({ err: err.message }, 'control server error'));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      chmodSync(path, 0o660);
      if (opts.gid !== undefined) chownSync(path, -1, opts.gid);
      resolve(server);
    });
  });
}
