// Idle control connections, as a careless or hostile client opens them (issue 13: 21,000 of
// them once took every descriptor a link-down needed). Used in-process and by idle-load.ts.
import { connect, type Socket } from 'node:net';

/** One connection that never sends anything; a full listen backlog (EAGAIN) is tried again, as a client would. */
export function idleConnection(path: string, socks: Socket[], tries = 100): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.on('error', () => undefined);
    s.once('connect', () => (socks.push(s), resolve(true)));
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.destroy();
      if (e.code === 'EAGAIN' && tries > 0) setTimeout(() => void idleConnection(path, socks, tries - 1).then(resolve), 5);
      else resolve(false);
    });
  });
}

/** n idle connections, 100 at a time; how many connected and how long it took. */
export async function openIdle(path: string, n: number): Promise<{ socks: Socket[]; connected: number; ms: number }> {
  const t0 = performance.now();
  const socks: Socket[] = [];
  let connected = 0;
  for (let i = 0; i < n; i += 100) {
    const ok = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => idleConnection(path, socks)));
    connected += ok.filter(Boolean).length;
  }
  return { socks, connected, ms: performance.now() - t0 };
}
