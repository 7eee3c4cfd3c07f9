import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { MAX_LINE, PROTOCOL_VERSION, parseRequest, type Response } from './protocol.js';
import { peerCredOf, type PeerCred } from './peer.js';

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
}

/** Requests answered or pending per connection at once; more is a client not reading its answers. */
const MAX_PENDING = 64;
/** Array answers longer than this are serialized this many items at a time. */
const SERIALIZE_BATCH = 50;

/**
 * Unix-socket control server: many clients, one JSON line per request. A bad line gets an error
 * answer and the connection stays usable; an over-long line gets E_TOO_LARGE and that client
 * is closed. Nothing a client sends can throw out of here.
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
  const server = createServer((sock: Socket) => {
    let buf = '';
    let pending = 0;
    let closed = false;
    const ctx: RequestContext = { peer: peerCredOf(sock) };
    sock.setEncoding('utf8');
    const send = (r: Response) => {
      if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(r) + '\n');
    };
    const refuse = (code: string, message: string) => {
      // Answer, then stop reading: whatever else this client sends is dropped, never buffered.
      closed = true;
      buf = '';
      send({ v: PROTOCOL_VERSION, id: null, ok: false, error: { code, message } });
      sock.end();
      sock.on('data', () => undefined);
      setTimeout(() => sock.destroy(), 1000).unref();
    };
    sock.on('data', (chunk: string) => {
      if (closed) return;
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.length > MAX_LINE) return refuse('E_TOO_LARGE', `request line over ${MAX_LINE} bytes`);
        if (line.trim() === '') continue;
        const req = parseRequest(line);
        if ('error' in req) {
          send({ v: PROTOCOL_VERSION, id: null, ok: false, error: req.error });
          continue;
        }
        if (pending >= MAX_PENDING) return refuse('E_BUSY', `more than ${MAX_PENDING} requests pending on one connection`);
        pending++;
        Promise.resolve()
          .then(() => handle(req.cmd, req.args ?? {}, ctx))
          .then(
            async (result) => {
              if (!Array.isArray(result) || result.length <= SERIALIZE_BATCH) return send({ v: PROTOCOL_VERSION, id: req.id, ok: true, result });
              // A long answer (`events`: up to 10,000 journal lines with evidence, tens of MB) is
              // serialized in batches, yielding in between, so the sampler keeps its period.
              const parts: string[] = [];
              for (let i = 0; i < result.length; i += SERIALIZE_BATCH) {
                parts.push(result.slice(i, i + SERIALIZE_BATCH).map((x) => JSON.stringify(x) ?? 'null').join(','));
                await new Promise<void>((r) => setImmediate(r));
              }
              if (!sock.destroyed && sock.writable) sock.write(`{"v":${PROTOCOL_VERSION},"id":${req.id},"ok":true,"result":[${parts.join(',')}]}\n`);
            },
            (err: unknown) => {
              const code = err instanceof ControlError ? err.code : 'E_INTERNAL';
              send({ v: PROTOCOL_VERSION, id: req.id, ok: false, error: { code, message: err instanceof Error ? err.message : String(err) } });
            },
          )
          .catch((err: unknown) => opts.onError?.({ err: String(err) }, 'control answer failed'))
          .finally(() => pending--);
      }
      if (buf.length > MAX_LINE) refuse('E_TOO_LARGE', `request line over ${MAX_LINE} bytes`);
    });
    sock.on('error', (err) => opts.onError?.({ err: err.message }, 'control client error'));
  });
  server.on('error', (err) => opts.onError?.({ err: err.message }, 'control server error'));
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
