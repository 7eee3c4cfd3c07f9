import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Server, type Socket } from 'node:net';
import { startControlServer, type Handler } from '../../agent/control/server.js';

// The control server against real unix sockets and real clients: limits that keep a hostile or
// careless client from costing the agent memory, descriptors or answers it owes others.

type Line = { id: number | null; ok: boolean; result?: unknown; error?: { code: string; message: string } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let dir = '';
let server: Server | null = null;
const clients: Socket[] = [];

async function serve(h: Handler, opts: Parameters<typeof startControlServer>[2] = {}): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'sb-ctl-'));
  const path = join(dir, 's.sock');
  server = await startControlServer(path, h, opts);
  return path;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function client(path: string): Promise<{ sock: Socket; lines: Line[]; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    clients.push(sock);
    const lines: Line[] = [];
    let buf = '';
    let closed = false;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)) as Line);
        buf = buf.slice(nl + 1);
      }
    });
    sock.on('close', () => (closed = true));
    sock.on('error', () => undefined);
    sock.on('connect', () => resolve({ sock, lines, closed: () => closed }));
    sock.on('error', reject);
  });
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}

const req = (id: number, cmd = 'status', args: Record<string, unknown> = {}) => JSON.stringify({ v: 1, id, cmd, args }) + '\n';

describe('control server limits', () => {
  it('counts the 64 KiB line limit in bytes: 40,000 three-byte characters are refused', async () => {
    const path = await serve(() => 'ok');
    const c = await client(path);
    c.sock.write(JSON.stringify({ v: 1, id: 1, cmd: 'status', args: { x: '\u20ac'.repeat(40_000) } }) + '\n');
    await until(() => c.lines.length > 0 && c.closed());
    expect(c.lines[0]).toMatchObject({ ok: false, error: { code: 'E_TOO_LARGE' } });
  });

  it('answers every pipelined request it accepted before E_BUSY, in order', async () => {
    const path = await serve(async () => (await sleep(2), 'ok'));
    const c = await client(path);
    c.sock.write(Array.from({ length: 100 }, (_, i) => req(i + 1)).join(''));
    await until(() => c.closed(), 5000);
    const ids = c.lines.map((l) => l.id);
    expect(c.lines.filter((l) => l.ok).length).toBe(64);
    expect(ids.slice(0, 64)).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
    expect(c.lines[64]).toMatchObject({ id: 65, ok: false, error: { code: 'E_BUSY' } });
  });

  it('caps connections: the one idle longest makes room; all busy, a newcomer gets E_BUSY', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const path = await serve(async (cmd) => (cmd === 'slow' ? (await gate, 'slow') : 'ok'), { maxConnections: 4 });
    const idle = await Promise.all(Array.from({ length: 4 }, () => client(path)));
    const fresh = await client(path);
    fresh.sock.write(req(1));
    await until(() => fresh.lines.length === 1);
    expect(fresh.lines[0]).toMatchObject({ ok: true, result: 'ok' });
    await until(() => idle[0]!.closed()); // the oldest idle one was dropped for it
    expect(idle.slice(1).every((c) => !c.closed())).toBe(true);
    // Every open connection busy: the next one is told so and closed.
    for (const c of [...idle.slice(1), fresh]) c.sock.write(req(2, 'slow'));
    await sleep(50);
    const late = await client(path);
    await until(() => late.closed());
    expect(late.lines[0]).toMatchObject({ ok: false, error: { code: 'E_BUSY' } });
    release();
    await until(() => fresh.lines.length === 2);
  });

  it('closes a connection idle for idleMs', async () => {
    const path = await serve(() => 'ok', { idleMs: 200 });
    const c = await client(path);
    await until(() => c.closed(), 2000);
  });

  it('drops a client that never reads a long answer: memory stays bounded', async () => {
    const item = 'x'.repeat(10_000);
    const path = await serve(() => Array.from({ length: 2000 }, () => item), { stallMs: 300 }); // 20 MB
    const c = await client(path);
    c.sock.pause(); // never read
    c.sock.write(req(1, 'events'));
    await sleep(1500);
    let got = 0;
    c.sock.removeAllListeners('data');
    c.sock.on('data', (d: string) => (got += d.length));
    c.sock.resume();
    await until(() => c.closed(), 3000);
    // What reached the client before the drop: the server's high-water mark plus kernel buffers.
    expect(got).toBeLessThan(4 * 1024 * 1024);
  });
});
