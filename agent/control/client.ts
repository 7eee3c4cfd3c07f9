import { connect } from 'node:net';
import { PROTOCOL_VERSION } from './protocol.js';

export class DaemonUnreachable extends Error {
  readonly code = 'E_UNREACHABLE';
}

export class RemoteError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * One request, one response, with a timeout. The answer's bytes are kept as they come and joined
 * once its newline arrives (only the new chunk is searched): appending to a string and searching
 * it whole per chunk cost quadratic time on a 9 MB `events` answer.
 */
export function request(path: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new DaemonUnreachable(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, cmd, args }) + '\n'));
    sock.on('data', (d: Buffer) => {
      const nl = d.indexOf(0x0a);
      if (nl < 0) return void chunks.push(d);
      chunks.push(d.subarray(0, nl));
      clearTimeout(timer);
      sock.end();
      try {
        const r = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
        if (r.ok) resolve(r.result);
        else reject(new RemoteError(r.error?.code ?? 'E_REMOTE', r.error?.message ?? 'error'));
      } catch (err) {
        reject(err);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new DaemonUnreachable(`cannot reach daemon at ${path}: ${err.message}`));
    });
  });
}
