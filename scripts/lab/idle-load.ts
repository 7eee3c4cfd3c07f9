// `node dist/scripts/lab/idle-load.js SOCKET N`: N idle connections to an agent from a process
// of their own, so that a test can make more than its own descriptor limit allows (20,000
// connections from two such clients where raising the limit needs CAP_SYS_RESOURCE). Prints
// {connected, ms} once they are made, holds them until SIGTERM or its stdin closes.
import { openIdle } from './idle-conns.js';

async function main(): Promise<void> {
  const [socket, n] = process.argv.slice(2);
  const count = Number(n);
  if (!socket || !Number.isInteger(count) || count < 1 || count > 100_000) throw new Error('usage: idle-load SOCKET N (1..100000)');
  const idle = await openIdle(socket, count);
  process.stdout.write(JSON.stringify({ connected: idle.connected, ms: Math.round(idle.ms) }) + '\n');
  const end = (): void => {
    for (const s of idle.socks) s.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', end);
  process.stdin.on('end', end).on('close', end).resume();
}

void main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
});
