// Clients that ask a running agent for `events` in a loop, each answer read as fast as it comes
// and dropped: the most load reading the journal back can put on the agent. A separate process
// (`node dist/scripts/lab/events-load.js SOCKET [CLIENTS]`), so that the load is the agent's and
// not the caller's: on SIGTERM it prints one JSON line {answered, failed, bytes, medianMs, maxMs}.
import { connect, type Socket } from 'node:net';

const TIMEOUT_MS = 30_000;
/** Connections in flight: SIGTERM ends them at once (an answer may take seconds). */
const live = new Set<Socket>();

function once(socket: string, onBytes: (n: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect(socket);
    live.add(s);
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      live.delete(s);
      s.destroy();
      if (err) reject(err);
      else resolve(performance.now() - t0);
    };
    const timer = setTimeout(() => done(new Error('timeout')), TIMEOUT_MS);
    s.on('connect', () => s.write('{"v":1,"id":1,"cmd":"events"}\n'));
    s.on('data', (d: Buffer) => {
      onBytes(d.length);
      if (d[d.length - 1] === 0x0a) done(null);
    });
    s.on('error', (e) => done(e));
    s.on('close', () => done(new Error('closed before the answer ended')));
  });
}

async function main(): Promise<void> {
  const [socket, n] = process.argv.slice(2);
  if (!socket) throw new Error('usage: events-load SOCKET [CLIENTS]');
  let stop = false;
  let answered = 0;
  let failed = 0;
  let bytes = 0;
  const ms: number[] = [];
  process.on('SIGTERM', () => {
    stop = true;
    for (const s of live) s.destroy();
  });
  await Promise.all(
    Array.from({ length: Number(n ?? 4) }, async () => {
      while (!stop) {
        try {
          ms.push(await once(socket, (b) => (bytes += b)));
          answered++;
        } catch {
          if (stop) break;
          failed++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }),
  );
  ms.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ answered, failed, bytes, medianMs: Math.round(ms[ms.length >> 1] ?? -1), maxMs: Math.round(ms.at(-1) ?? -1) }) + '\n');
}

void main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
});
