import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../../agent/control/duration.js';
import { gidFromGroupText } from '../../agent/control/group.js';
import { requester, requesterText } from '../../agent/control/peer.js';
import { heldPorts, readJournalTail, trippedPorts } from '../../agent/journal/journal.js';
import { renderStatus, renderWhy } from '../../agent/cli/render.js';
import { startControlServer } from '../../agent/control/server.js';
import { request } from '../../agent/control/client.js';
import type { JournalEvent } from '../../agent/types.js';

const dir = mkdtempSync(join(tmpdir(), 'sbo-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseDuration', () => {
  it('reads one number and one unit', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration(' 1d ')).toBe(86_400_000);
  });
  it('rejects what is not a positive duration of at most a year', () => {
    for (const t of ['', '5', 's', '-1s', '0s', '1 parsec', '5m30s', '400d', 'yesterday', '1e3s']) expect(parseDuration(t), t).toBeNull();
  });
});

describe('gidFromGroupText', () => {
  const text = 'root:x:0:\nsbo:x:1234:alice,bob\nnogroup:x:65534:\nbroken:x:abc:\n';
  it('finds the group by exact name', () => {
    expect(gidFromGroupText(text, 'sbo')).toBe(1234);
    expect(gidFromGroupText(text, 'nogroup')).toBe(65534);
    expect(gidFromGroupText(text, 'sb')).toBeNull();
    expect(gidFromGroupText(text, 'broken')).toBeNull();
  });
});

describe('requester', () => {
  it("prefers the kernel's credentials and keeps the claim only as a note", () => {
    const r = requester({ pid: 9, uid: 1000, gid: 1000 }, { user: 'mallory', uid: 0 });
    expect(r).toEqual({ uid: 1000, pid: 9, gid: 1000, source: 'kernel', claimedUser: 'mallory' });
    expect(requesterText(r)).toBe('uid 1000 (mallory)');
  });
  it('falls back to the client claim, marked as such, and ignores claims of the wrong type', () => {
    expect(requester(null, { user: 'alice', uid: 1001 })).toEqual({ uid: 1001, source: 'client-claimed', claimedUser: 'alice' });
    expect(requester(null, { user: 5, uid: '0' })).toEqual({ uid: null, source: 'client-claimed' });
    expect(requesterText(requester(null, {}))).toBe('uid unknown (claimed)');
  });
});

const ev = (event: JournalEvent['event'], port: string, extra: Partial<JournalEvent> = {}): JournalEvent => ({ ts: `2026-01-01T00:00:0${port.length}Z`, event, port, reason: event, ...extra });

describe('journal replay of holds', () => {
  it('heldPorts: the last hold not followed by release, expiry or restore, with its expiry', () => {
    const h = heldPorts([
      ev('hold', 'a', { untilMs: 5000, by: { uid: 0, source: 'kernel' } }),
      ev('hold', 'a', { applied: true }), // confirmation line: not a new hold
      ev('hold', 'b'),
      ev('release', 'b'),
      ev('hold', 'c'),
      ev('hold-expired', 'c'),
      ev('hold', 'd', { untilMs: 'soon' as unknown as number }),
    ]);
    expect([...h.keys()]).toEqual(['a', 'd']);
    expect(h.get('a')).toMatchObject({ untilMs: 5000, by: { uid: 0, source: 'kernel' } });
    expect(h.get('d')!.untilMs).toBeNull();
  });
  it('trippedPorts: a released or expired hold leaves the port tripped until restore', () => {
    const t = trippedPorts([ev('hold', 'b'), ev('release', 'b'), ev('hold', 'c'), ev('hold-expired', 'c'), ev('hold', 'e'), ev('release', 'e'), ev('restore', 'e')]);
    expect([...t.keys()]).toEqual(['b', 'c']);
  });
});

describe('readJournalTail', () => {
  it('returns exactly the last N lines of a large file, and all of a small one', async () => {
    const path = join(dir, 'j.jsonl');
    const lines = Array.from({ length: 30_000 }, (_, i) => JSON.stringify({ ts: 't', event: 'trip', port: `p${i}`, reason: 'x'.repeat(i % 50) }));
    writeFileSync(path, lines.join('\n') + '\n');
    const r = await readJournalTail(path, 10_000);
    expect(r.badLines).toEqual([]);
    expect(r.events).toHaveLength(10_000);
    expect(r.events[0]!.port).toBe('p20000');
    expect(r.events.at(-1)!.port).toBe('p29999');
    expect((await readJournalTail(path, 1)).events.map((e) => e.port)).toEqual(['p29999']);
    const small = join(dir, 's.jsonl');
    writeFileSync(small, lines.slice(0, 3).join('\n') + '\n{"torn');
    const s = await readJournalTail(small, 10);
    expect(s.events.map((e) => e.port)).toEqual(['p0', 'p1', 'p2']);
    expect(s.badLines).toEqual([4]);
    expect(await readJournalTail(join(dir, 'missing.jsonl'), 10)).toEqual({ events: [], badLines: [] });
  });
});

describe('render', () => {
  it('status: hash, health line, rejected reload with its errors, table with held-until', () => {
    const text = renderStatus({
      policy: { file: 'p.yaml', hash: 'abcdef012345', dryRun: false, lastError: { at: 'T', trigger: 'SIGHUP', errors: ['p.yaml:3:3: sampling.activeMS: unknown key'] } },
      health: { ticks: 10, ticksPerSec: 99.5, periodMs: 10, lastTickAgeMs: 3.25, maxLagMs: 1.5, sources: ['sysfs', 'packet'], broadcastCounting: true },
      ports: [{ port: 'p0', bridge: 'br0', role: 'vm', protected: false, state: 'held', heldUntil: 'U' }],
    });
    expect(text).toContain('hash abcdef012345');
    expect(text).toContain('agent 99.5 ticks/s, period 10 ms, last tick 3.3 ms ago, max lag 1.5 ms, sources sysfs,packet');
    expect(text).toContain('  p.yaml:3:3: sampling.activeMS: unknown key\n');
    expect(text).toMatch(/^p0\s+br0\s+vm\s+false\s+held\s+-\s+-\s+-\s+-\s+U$/m);
  });
  it('why: verdict, clues, thresholds, last samples, action', () => {
    const text = renderWhy({
      ts: 'T',
      event: 'trip',
      port: 'up1',
      reason: 'loop on br0: shut up1',
      policyHash: 'h',
      evidence: { tNs: 0, clues: ['rx≈tx on up1'], thresholds: { floodPps: 5000 }, rule: -1, window: [{ port: 'up1', tMs: 1, rxPps: 10.4, txPps: 9.6, floodPps: 10 }], policyHash: 'h' },
      action: { kind: 'link-down', port: 'up1', ok: true, via: 'sysfs-flags', durationMs: 0.83, attempts: 1, verified: true },
    });
    expect(text.split('\n')).toEqual([
      'trip of up1 at T (policy h)',
      'verdict: loop on br0: shut up1',
      'why: rx≈tx on up1',
      'thresholds: floodPps=5000 (rule defaults)',
      'last sample up1: rx 10 pps, tx 10 pps, flood 10 pps',
      'action: via sysfs-flags, 0.83 ms, 1 attempt(s), verified yes',
      '',
    ]);
    expect(renderWhy(null)).toBe('no trip recorded\n');
  });
});

describe('control server', () => {
  it('answers long array results whole (serialized in batches) and keeps serving after a bad line', async () => {
    const path = join(dir, 'ctl', 's.sock');
    const srv = await startControlServer(path, (cmd) => (cmd === 'big' ? Array.from({ length: 1234 }, (_, i) => ({ i })) : { cmd }));
    try {
      const big = (await request(path, 'big')) as Array<{ i: number }>;
      expect(big.map((x) => x.i)).toEqual(Array.from({ length: 1234 }, (_, i) => i));
      expect(await request(path, 'small')).toEqual({ cmd: 'small' });
    } finally {
      srv.close();
    }
  });
});
