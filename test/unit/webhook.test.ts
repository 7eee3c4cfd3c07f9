import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createNotifier, NotifyError, WebhookConfigError, type EventNotifier, type NotifyEvent } from '../../agent/notify/webhook.js';

// A real HTTP receiver on 127.0.0.1 that can be slow, fail with 500, or answer 204.
type Mode = 'ok' | 'slow' | 'error' | 'bad-request';
interface Receiver { server: Server; url: string; hits: Array<{ at: number; body: unknown }>; setMode(m: Mode): void }

async function receiver(mode: Mode): Promise<Receiver> {
  const hits: Receiver['hits'] = [];
  let m = mode;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      hits.push({ at: performance.now(), body: JSON.parse(body) });
      if (m === 'slow') setTimeout(() => res.writeHead(204).end(), 3000).unref();
      else if (m === 'error') res.writeHead(500).end('boom');
      else if (m === 'bad-request') res.writeHead(400).end('no');
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${a.port}/hook`, hits, setMode: (x) => (m = x) };
}

/** notify() timed per call; the caller's budget is 1 ms every time. */
/**
 * notify() must take the event and return nothing to wait on: protection never awaits a
 * notification, whatever the receiver does. Its cost is a figure (printed), not an assertion:
 * timing asserts flake on a loaded 2-core machine.
 */
function timedNotify(n: EventNotifier, ev: NotifyEvent): number {
  const t0 = process.hrtime.bigint();
  const ret: unknown = n.notify(ev);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  expect(ret).toBeUndefined();
  return ms;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
const track = (n: EventNotifier): EventNotifier => (cleanups.push(() => n.close()), n);
const trip = (i: number): NotifyEvent => ({ ts: new Date().toISOString(), event: 'trip', port: `up${i}`, reason: 'loop on br0', evidence: { clues: ['rx≈tx'], window: Array.from({ length: 20 }, (_, k) => ({ k, rxPps: 131000 })) } });

describe('webhook notifier (HTTP, real server on 127.0.0.1)', () => {
  it('delivers JSON to a healthy receiver', async () => {
    const r = await receiver('ok');
    cleanups.push(() => r.server.close());
    const n = track(createNotifier({ target: { kind: 'http', url: r.url } }));
    n.notify(trip(1));
    await n.idle();
    expect(r.hits.map((h) => (h.body as { port: string }).port)).toEqual(['up1']);
    expect(n.stats).toMatchObject({ sent: 1, failed: 0, tries: 1, dropped: 0, pending: 0 });
  });

  it('500: retries with exponential backoff, gives up after 3 tries, notify() < 1 ms each time', async () => {
    const r = await receiver('error');
    cleanups.push(() => r.server.close());
    const errors: NotifyError[] = [];
    const n = track(createNotifier({ target: { kind: 'http', url: r.url }, backoffMs: 100, onError: (e) => errors.push(e) }));
    const costs = [timedNotify(n, trip(1))];
    await n.idle();
    expect(r.hits.length).toBe(3);
    const gap1 = r.hits[1]!.at - r.hits[0]!.at;
    const gap2 = r.hits[2]!.at - r.hits[1]!.at;
    expect(gap1).toBeGreaterThanOrEqual(95);
    expect(gap2).toBeGreaterThanOrEqual(195); // doubled
    expect(n.stats).toMatchObject({ sent: 0, failed: 1, tries: 3 });
    expect(errors.map((e) => [e.code, e.details.status, e.details.tries])).toEqual([['E_NOTIFY_GAVE_UP', 500, 3]]);
    // The receiver recovers: the next event goes through on the first try.
    r.setMode('ok');
    costs.push(timedNotify(n, trip(2)));
    await n.idle();
    expect(n.stats).toMatchObject({ sent: 1, failed: 1, tries: 4 });
    console.log(`notify() max ${(Math.max(...costs) * 1000).toFixed(1)} µs`);
  });

  it('400: does not retry what asking again cannot fix', async () => {
    const r = await receiver('bad-request');
    cleanups.push(() => r.server.close());
    const n = track(createNotifier({ target: { kind: 'http', url: r.url }, backoffMs: 10 }));
    n.notify(trip(1));
    await n.idle();
    expect(r.hits.length).toBe(1);
    expect(n.stats.failed).toBe(1);
  });

  it('slow receiver: each try is cut at timeoutMs; a burst of notify() stays < 1 ms per call; queue drops the oldest', async () => {
    const r = await receiver('slow');
    cleanups.push(() => r.server.closeAllConnections());
    cleanups.push(() => r.server.close());
    const errors: NotifyError[] = [];
    const n = track(createNotifier({ target: { kind: 'http', url: r.url }, timeoutMs: 150, backoffMs: 20, tries: 2, queueMax: 3, onError: (e) => errors.push(e) }));
    const costs: number[] = [];
    for (let i = 0; i < 10; i++) costs.push(timedNotify(n, trip(i)));
    expect(n.stats.dropped).toBe(7);
    const t0 = performance.now();
    await n.idle();
    const took = performance.now() - t0;
    // 3 events x 2 tries x 150 ms + backoff: bounded by the timeouts, not by the 3 s receiver.
    expect(took).toBeGreaterThan(3 * 2 * 150 - 50);
    expect(took).toBeLessThan(2500);
    expect(r.hits.map((h) => (h.body as { port: string }).port)).toEqual(['up7', 'up7', 'up8', 'up8', 'up9', 'up9']);
    expect(errors.filter((e) => e.code === 'E_NOTIFY_DROPPED').length).toBe(7);
    expect(errors.filter((e) => e.code === 'E_NOTIFY_GAVE_UP').map((e) => (e.cause as NotifyError).code)).toEqual(['E_NOTIFY_TIMEOUT', 'E_NOTIFY_TIMEOUT', 'E_NOTIFY_TIMEOUT']);
    const sorted = [...costs].sort((a, b) => a - b);
    console.log(`notify() under a slow receiver: median ${(sorted[5]! * 1000).toFixed(1)} µs, max ${(sorted[9]! * 1000).toFixed(1)} µs`);
  });

  it('receiver down (connection refused): 3 tries, then gives up', async () => {
    const r = await receiver('ok');
    const url = r.url;
    await new Promise<void>((res) => r.server.close(() => res()));
    const errors: NotifyError[] = [];
    const n = track(createNotifier({ target: { kind: 'http', url }, backoffMs: 10, onError: (e) => errors.push(e) }));
    timedNotify(n, trip(1));
    await n.idle();
    expect(n.stats).toMatchObject({ sent: 0, failed: 1, tries: 3 });
    expect((errors[0]!.cause as NotifyError).code).toBe('E_NOTIFY_NETWORK');
    expect(String((errors[0]!.cause as Error).message)).toMatch(/ECONNREFUSED/);
  });

  it('a protection loop is not delayed: 10,000 notify() calls while the receiver is down', async () => {
    const n = track(createNotifier({ target: { kind: 'http', url: 'http://127.0.0.1:9/' }, queueMax: 100, backoffMs: 1000 }));
    const ev = trip(1);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) n.notify(ev);
    const perCallUs = Number(process.hrtime.bigint() - t0) / 1e3 / 10_000;
    console.log(`notify(): ${perCallUs.toFixed(2)} µs per call over 10,000 calls`);
    expect(perCallUs).toBeLessThan(20);
    expect(n.stats.dropped).toBe(9_900);
  });

  it('rejects bad options with a message naming the option', () => {
    expect(() => createNotifier({ target: { kind: 'http', url: 'ftp://x' } })).toThrow(WebhookConfigError);
    expect(() => createNotifier({ target: { kind: 'http', url: 'nope' } })).toThrow(/notify.target.url/);
    expect(() => createNotifier({ target: { kind: 'exec', argv: [] } })).toThrow(/notify.target.argv/);
    expect(() => createNotifier({ target: { kind: 'http', url: 'http://127.0.0.1/' }, tries: 0 })).toThrow(/notify.tries/);
  });
});

describe('argv hook notifier (real processes)', () => {
  it('runs argv[0] without a shell, the event JSON on stdin', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbs-hook-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'events.jsonl');
    // `$(touch pwned)` would run under a shell; as an argv element it is just a file name.
    const n = track(createNotifier({ target: { kind: 'exec', argv: ['tee', '-a', out, join(dir, '$(touch pwned)')] } }));
    n.notify(trip(1));
    n.notify(trip(2));
    await n.idle();
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { port: string });
    expect(lines.map((l) => l.port)).toEqual(['up1', 'up2']);
    expect(existsSync(join(dir, '$(touch pwned)'))).toBe(true);
    expect(existsSync(join(process.cwd(), 'pwned'))).toBe(false);
    expect(n.stats).toMatchObject({ sent: 2, failed: 0 });
  });

  it('failing hook: 3 tries then gives up, with exit code and stderr tail', async () => {
    const errors: NotifyError[] = [];
    const n = track(createNotifier({ target: { kind: 'exec', argv: ['sh', '-c', 'cat >/dev/null; echo nope >&2; exit 7'] }, backoffMs: 10, onError: (e) => errors.push(e) }));
    n.notify(trip(1));
    await n.idle();
    expect(n.stats).toMatchObject({ failed: 1, tries: 3 });
    expect(errors[0]!.details).toMatchObject({ exitCode: 7, tries: 3 });
    expect(errors[0]!.details.stderrTail).toContain('nope');
  });

  it('hung hook: killed at timeoutMs', async () => {
    const errors: NotifyError[] = [];
    const n = track(createNotifier({ target: { kind: 'exec', argv: ['sleep', '5'] }, timeoutMs: 100, tries: 1, onError: (e) => errors.push(e) }));
    const t0 = performance.now();
    timedNotify(n, trip(1));
    await n.idle();
    expect(performance.now() - t0).toBeLessThan(1500);
    expect((errors[0]!.cause as NotifyError).code).toBe('E_NOTIFY_TIMEOUT');
  });
});
