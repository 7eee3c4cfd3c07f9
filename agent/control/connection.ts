import type { Socket } from 'node:net';
import { MAX_LINE, PROTOCOL_VERSION, isStreamedArray, parseRequest, type Request, type Response, type StreamedArray } from './protocol.js';

// One control connection: bytes in, one request at a time through the handler, answers out with
// bounded memory. A client can cost the agent at most MAX_QUEUED_BYTES of requests and
// HIGH_WATER bytes (plus one batch) of unsent answers; one that stops reading is dropped after
// STALL_MS, so nothing a client does (or fails to do) can pile memory up or starve the sampler.

/** Requests accepted on one connection and not yet answered; more is a client not reading. */
export const MAX_PENDING = 64;
/** Bytes of accepted, unanswered request lines per connection. */
const MAX_QUEUED_BYTES = 1024 * 1024;
/** Unsent answer bytes above which the writer waits for the client to read. */
const HIGH_WATER = 256 * 1024;
/** A client that reads nothing of its answer for this long is dropped. */
export const STALL_MS = 10_000;
/** Array answers are serialized and written this many items at a time, yielding in between. */
const SERIALIZE_BATCH = 50;

export interface ConnectionHooks {
  /** Runs one request; throws { code: 'E_...', message } for an error answer. */
  run(req: Request): Promise<unknown>;
  onError(obj: object, msg: string): void;
  /** Called whenever the connection reads or writes: idle accounting for eviction. */
  touch(): void;
  /** Drop a client that reads nothing for this long (default STALL_MS). */
  stallMs?: number;
}

export interface Connection {
  /** Nothing queued, running or unsent: safe to drop for a newer client. */
  idle(): boolean;
  drop(): void;
}

type Item = { req: Request; bytes: number } | { error: Response };

/**
 * Split bytes into lines of at most MAX_LINE bytes (bytes, not characters: multi-byte UTF-8
 * counts what it costs). The unfinished line is kept as chunks and joined once its newline comes.
 */
function lineSplitter(onLine: (line: Buffer) => void, onTooLong: () => void) {
  let partial: Buffer[] = [];
  let bytes = 0;
  return {
    feed(chunk: Buffer, stillReading: () => boolean): void {
      let from = 0;
      let nl: number;
      while (stillReading() && (nl = chunk.indexOf(0x0a, from)) >= 0) {
        const piece = chunk.subarray(from, nl);
        const line = bytes > 0 ? Buffer.concat([...partial, piece]) : piece;
        partial = [];
        bytes = 0;
        from = nl + 1;
        onLine(line);
      }
      if (!stillReading() || from >= chunk.length) return;
      bytes += chunk.length - from;
      if (bytes > MAX_LINE) return onTooLong();
      partial.push(Buffer.from(chunk.subarray(from)));
    },
    reset(): void {
      partial = [];
      bytes = 0;
    },
    get bytes(): number {
      return bytes;
    },
  };
}

/** Writes that wait for the client to read below HIGH_WATER; a client stalled for stallMs is dropped. */
function boundedWriter(sock: Socket, hooks: ConnectionHooks, drop: () => void) {
  const stallMs = hooks.stallMs ?? STALL_MS;
  const drained = (): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      const t = setTimeout(() => (cleanup(), resolve(false)), stallMs);
      const ok = (): void => (cleanup(), resolve(true));
      const cleanup = (): void => {
        clearTimeout(t);
        sock.off('drain', ok);
        sock.off('close', ok);
      };
      sock.once('drain', ok);
      sock.once('close', ok);
    });
  return async (text: string | Buffer): Promise<boolean> => {
    if (sock.destroyed || !sock.writable) return false;
    sock.write(text);
    while (!sock.destroyed && sock.writableLength > HIGH_WATER) {
      if (!(await drained())) {
        hooks.onError({ unsentBytes: sock.writableLength, stallMs }, 'control client does not read its answers: dropped');
        drop();
        return false;
      }
      hooks.touch();
    }
    return !sock.destroyed;
  };
}

/** Run one request and write its answer; a long array answer is streamed in batches. */
async function answer(req: Request, hooks: ConnectionHooks, write: (text: string | Buffer) => Promise<boolean>): Promise<void> {
  let result: unknown;
  try {
    result = await hooks.run(req);
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    const code = typeof e?.code === 'string' && e.code.startsWith('E_') ? e.code : 'E_INTERNAL';
    await write(JSON.stringify({ v: PROTOCOL_VERSION, id: req.id, ok: false, error: { code, message: err instanceof Error ? err.message : String(err) } }) + '\n');
    return;
  }
  if (isStreamedArray(result)) return streamArray(req, result, write);
  if (!Array.isArray(result) || result.length <= SERIALIZE_BATCH) {
    await write(JSON.stringify({ v: PROTOCOL_VERSION, id: req.id, ok: true, result }) + '\n');
    return;
  }
  // A long answer (`events`: thousands of journal lines with evidence) is streamed in batches,
  // yielding to the sampler between them and waiting for the client to read.
  if (!(await write(`{"v":${PROTOCOL_VERSION},"id":${req.id},"ok":true,"result":[`))) return;
  for (let i = 0; i < result.length; i += SERIALIZE_BATCH) {
    const part = result.slice(i, i + SERIALIZE_BATCH).map((x) => JSON.stringify(x) ?? 'null').join(',');
    if (!(await write(i === 0 ? part : ',' + part))) return;
    await new Promise<void>((r) => setImmediate(r));
  }
  await write(']}\n');
}

/**
 * A streamed array answer: each slice of items written as it comes, waiting for the client to
 * read and yielding to the sampler in between. A client gone or dropped ends it early; the
 * source is closed either way. A source that fails half way cannot be answered with an error any
 * more: the throw ends the connection (the client sees no answer rather than a short one).
 */
async function streamArray(req: Request, result: StreamedArray, write: (text: string | Buffer) => Promise<boolean>): Promise<void> {
  try {
    if (!(await write(`{"v":${PROTOCOL_VERSION},"id":${req.id},"ok":true,"result":[`))) return;
    let first = true;
    for await (const items of result.streamed) {
      const parts: Buffer[] = [];
      for (const item of items) {
        if (!first) parts.push(COMMA);
        parts.push(item);
        first = false;
      }
      if (!(await write(Buffer.concat(parts)))) return;
      await new Promise<void>((r) => setImmediate(r));
    }
    await write(']}\n');
  } finally {
    await result.close();
  }
}
const COMMA = Buffer.from(',');

/** Serve one accepted socket until it closes. Never throws. */
export function serveConnection(sock: Socket, hooks: ConnectionHooks): Connection {
  const queue: Item[] = [];
  let queuedBytes = 0;
  /** Requests accepted and not yet answered (queued or running). */
  let pending = 0;
  let running = false;
  let reading = true;
  let endAfterQueue = false;

  const drop = (): void => {
    reading = false;
    queue.length = 0;
    pending = 0;
    sock.destroy();
  };
  const write = boundedWriter(sock, hooks, drop);
  const stopReading = (code: string, message: string, id: number | null): void => {
    // Answer what was accepted, then this error, then close: nothing already accepted goes unanswered.
    reading = false;
    lines.reset();
    queue.push({ error: { v: PROTOCOL_VERSION, id, ok: false, error: { code, message } } });
    endAfterQueue = true;
    sock.pause();
    pump();
  };
  const tooLarge = (): void => stopReading('E_TOO_LARGE', `request line over ${MAX_LINE} bytes`, null);
  const onLine = (line: Buffer): void => {
    if (line.length > MAX_LINE) return tooLarge();
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    const req = parseRequest(text);
    if ('error' in req) queue.push({ error: { v: PROTOCOL_VERSION, id: null, ok: false, error: req.error } });
    else if (pending >= MAX_PENDING || queuedBytes + line.length > MAX_QUEUED_BYTES) {
      return stopReading('E_BUSY', `more than ${MAX_PENDING} requests (or ${MAX_QUEUED_BYTES} bytes) pending on one connection`, req.id);
    } else {
      queuedBytes += line.length;
      pending++;
      queue.push({ req, bytes: line.length });
    }
    pump();
  };
  const lines = lineSplitter(onLine, tooLarge);

  const pump = (): void => {
    if (running) return;
    running = true;
    void (async () => {
      try {
        while (queue.length > 0 && !sock.destroyed) {
          const item = queue.shift()!;
          if ('error' in item) {
            if (!(await write(JSON.stringify(item.error) + '\n'))) break;
            continue;
          }
          queuedBytes -= item.bytes;
          await answer(item.req, hooks, write);
          pending--;
        }
        if (endAfterQueue && !sock.destroyed) {
          sock.end();
          setTimeout(() => sock.destroy(), 1000).unref();
        }
      } catch (err) {
        hooks.onError({ err: String(err) }, 'control answer failed');
        drop();
      } finally {
        running = false;
      }
    })();
  };

  sock.on('data', (chunk: Buffer) => {
    if (!reading) return;
    hooks.touch();
    lines.feed(chunk, () => reading);
  });
  sock.on('error', (err) => hooks.onError({ err: err.message }, 'control client error'));
  sock.on('close', () => {
    reading = false;
    queue.length = 0;
  });
  return {
    idle: () => !running && queue.length === 0 && lines.bytes === 0 && sock.writableLength === 0,
    drop,
  };
}
