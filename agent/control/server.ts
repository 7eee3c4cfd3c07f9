import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { MAX_LINE, PROTOCOL_VERSION, parseRequest, type Response } from './protocol.js';

export class ControlError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export type Handler = (cmd: string, args: Record<string, unknown>) => Promise<unknown> | unknown;

/** Unix-socket control server: many clients, one JSON line per request; bad input closes only that client. */
export function startControlServer(path: string, handle: Handler, onError?: (obj: object, msg: string) => void): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  try {
    unlinkSync(path); // a stale socket from a crash
  } catch {
    // none
  }
  const server = createServer((sock: Socket) => {
    let buf = '';
    sock.setEncoding('utf8');
    const send = (r: Response) => {
      if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n');
    };
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.slice(0, MAX_LINE).includes('\n')) {
        send({ v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'E_TOO_LARGE', message: `request line over ${MAX_LINE} bytes` } });
        sock.end();
        sock.removeAllListeners('data');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() === '') continue;
        const req = parseRequest(line);
        if ('error' in req) {
          send({ v: PROTOCOL_VERSION, id: null, ok: false, error: req.error });
          continue;
        }
        Promise.resolve()
          .then(() => handle(req.cmd, req.args ?? {}))
          .then(
            (result) => send({ v: PROTOCOL_VERSION, id: req.id, ok: true, result }),
            (err: unknown) => {
              const code = err instanceof ControlError ? err.code : 'E_INTERNAL';
              send({ v: PROTOCOL_VERSION, id: req.id, ok: false, error: { code, message: (err as Error).message } });
            },
          );
      }
    });
    sock.on('error', (err) => onError?.({ err: err.message }, 'control client error'));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      chmodSync(path, 0o660);
      resolve(server);
    });
  });
}
