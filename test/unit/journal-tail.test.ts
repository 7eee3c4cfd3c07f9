import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Server } from 'node:net';
import { selectTail } from '../../agent/journal/tail.js';
import { createPacer } from '../../agent/journal/pacer.js';
import { startControlServer } from '../../agent/control/server.js';
import type { StreamedArray } from '../../agent/control/protocol.js';

// Reading the journal back for `events` (journal/tail.ts): the newest matching lines, handed out
// as they are on disk in slices; a shared byte pacer; the control server streams them as one
// valid JSON answer.

let dir = '';
let server: Server | null = null;
afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const line = (i: number, port = `p${i % 3}`, pad = 0) => JSON.stringify({ ts: `t${String(i).padStart(6, '0')}`, event: 'trip', port, reason: 'x'.repeat(pad) });

function journal(lines: string[], tail = '\n'): string {
  dir = mkdtempSync(join(tmpdir(), 'sb-tail-'));
  const p = join(dir, 'journal.jsonl');
  writeFileSync(p, lines.join('\n') + tail);
  return p;
}

async function collect(path: string, o: Parameters<typeof selectTail>[1]): Promise<{ lines: string[]; slices: number; badLines: number[] }> {
  const sel = await selectTail(path, o);
  if ('error' in sel) throw new Error(sel.error);
  const lines: string[] = [];
  let slices = 0;
  try {
    for await (const s of sel.lines()) {
      slices++;
      for (const b of s) lines.push(b.toString('utf8'));
    }
  } finally {
    await sel.close();
  }
  return { lines, slices, badLines: sel.badLines };
}

describe('selectTail', () => {
  it('the newest maxLines lines that keep accepts, oldest first, byte for byte, in slices of about 32 kB', async () => {
    const all = Array.from({ length: 5000 }, (_, i) => line(i, undefined, i % 200));
    const p = journal(all);
    const r = await collect(p, { maxLines: 1000, keep: (e) => e.port === 'p1' });
    const want = all.filter((_, i) => i % 3 === 1).slice(-1000);
    expect(r.lines).toEqual(want);
    expect(r.slices).toBeGreaterThan(5);
    const every = await collect(p, { maxLines: 10_000 });
    expect(every.lines).toEqual(all);
    expect(every.badLines).toEqual([]);
  });

  it('a torn last line and a line over the record limit are bad, not selected; a line that is not UTF-8 is re-encoded', async () => {
    const p = journal([line(1), line(2)]);
    appendFileSync(p, '{"ts":"x","event":"trip","port":"big","reason":"' + 'a'.repeat(1100 * 1024) + '"}\n');
    appendFileSync(p, Buffer.concat([Buffer.from('{"ts":"t3","event":"trip","port":"p9","reason":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
    appendFileSync(p, '{"torn');
    const r = await collect(p, { maxLines: 10 });
    expect(r.lines.map((l) => (JSON.parse(l) as { port: string }).port)).toEqual(['p1', 'p2', 'p9']);
    expect(r.lines[2]).toBe(JSON.stringify({ ts: 't3', event: 'trip', port: 'p9', reason: '\ufffd\ufffd' }));
    expect(r.badLines).toEqual([3, 5]);
  });

  it('a file cut between the two passes ends the lines early, never with a partial line', async () => {
    const all = Array.from({ length: 2000 }, (_, i) => line(i, undefined, 100));
    const p = journal(all);
    const sel = await selectTail(p, { maxLines: 2000 });
    if ('error' in sel) throw new Error(sel.error);
    truncateSync(p, 50_000);
    const got: string[] = [];
    for await (const s of sel.lines()) for (const b of s) got.push(b.toString('utf8'));
    await sel.close();
    expect(got.length).toBeLessThan(all.length);
    expect(got).toEqual(all.slice(0, got.length));
  });

  it('refuses a symlink and a directory; a missing file selects nothing', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-tail-'));
    expect(await selectTail(dir, { maxLines: 1 })).toMatchObject({ error: expect.stringMatching(/not a regular file/) });
    const none = await selectTail(join(dir, 'missing'), { maxLines: 1 });
    expect('error' in none ? none : none.count).toBe(0);
  });
});

describe('createPacer', () => {
  it('grants the burst at once, then bytesPerSec shared by every reader in order', async () => {
    let now = 0;
    const slept: number[] = [];
    const clock = { now: () => now, sleep: async (ms: number) => void slept.push(Math.round(ms)) };
    const p = createPacer(1000, 500, clock); // 1000 B/s, 500 B burst
    await p.take(500);
    expect(slept).toEqual([]);
    await p.take(100); // 100 B over the burst: 100 ms
    await p.take(100); // a second reader right after: behind the first
    expect(slept).toEqual([100, 200]);
    now = 10_000; // idle for long: the burst again, no more
    await p.take(600);
    expect(slept).toEqual([100, 200, 100]);
  });
});

describe('streamed answers', () => {
  it('the server writes a selection as one valid JSON answer, and closes it', async () => {
    const all = Array.from({ length: 3000 }, (_, i) => line(i, undefined, 300));
    const p = journal(all);
    let closed = 0;
    const sock = join(dir, 's.sock');
    server = await startControlServer(sock, async (): Promise<StreamedArray> => {
      const sel = await selectTail(p, { maxLines: 10_000 });
      if ('error' in sel) throw new Error(sel.error);
      return { streamed: sel.lines(), close: () => (closed++, sel.close()) };
    });
    const text = await new Promise<string>((resolve) => {
      const c = connect(sock);
      const chunks: Buffer[] = [];
      c.on('connect', () => c.write('{"v":1,"id":7,"cmd":"events"}\n'));
      c.on('data', (d: Buffer) => {
        chunks.push(d);
        if (d[d.length - 1] === 0x0a) (c.end(), resolve(Buffer.concat(chunks).toString('utf8')));
      });
    });
    const r = JSON.parse(text) as { id: number; ok: boolean; result: unknown[] };
    expect(r.id).toBe(7);
    expect(r.result).toEqual(all.map((l) => JSON.parse(l)));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(1);
  });
});
