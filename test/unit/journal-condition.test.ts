// A journal that cannot be written is said loudly, once when it starts and once when it ends: the
// log, systemd's STATUS line and the metrics (issue 13: "status, metrics, log, sd_notify STATUS").
// The journal here really fails (a symlink in its place, refused by O_NOFOLLOW); the log and the
// systemd notifier are recorders. The full and read-only disks are in agent-faults.test.ts.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openJournal } from '../../agent/journal/journal.js';
import { journalCondition } from '../../agent/daemon/recorder.js';
import { createHistogram, renderMetrics, snapshotFromStatus } from '../../agent/notify/metrics.js';
import type { JournalEvent } from '../../agent/types.js';

const ev = (event: JournalEvent['event'], port: string): JournalEvent => ({ ts: new Date().toISOString(), event, port, reason: `${event} ${port}` });

describe('journal failing: said once each way, in the log, systemd STATUS and metrics', () => {
  it('a refused journal: one error line and STATUS at the start, one info line and STATUS at the end; metrics show it meanwhile', () => {
    const d = mkdtempSync(join(tmpdir(), 'sb-jc-'));
    writeFileSync(join(d, 'victim'), '');
    symlinkSync(join(d, 'victim'), join(d, 'journal.jsonl'));
    const said: string[] = [];
    const status: string[] = [];
    const log = { error: (_o: object, m: string) => void said.push(`error: ${m}`), info: (_o: object, m: string) => void said.push(`info: ${m}`) };
    const sd = { status: (s: string) => void status.push(s) };
    const j = openJournal(join(d, 'journal.jsonl'), { onCondition: (h) => journalCondition(h, log as never, sd), retryMs: 60_000 });
    for (let i = 0; i < 5; i++) j.append(ev('trip', `vm${i}`));
    expect(said).toEqual(['error: journal FAILING: records kept in memory and written when the disk takes them; protection continues']);
    expect(status).toHaveLength(1);
    expect(status[0]).toMatch(/^JOURNAL FAILING: .*(ELOOP|symlink|symbolic link).*; protecting, records kept in memory$/i);

    const h = j.health();
    const text = renderMetrics(
      snapshotFromStatus(
        { policy: { hash: 'h', dryRun: false }, health: { ticks: 1, periodMs: 100, maxLagMs: 0, lastTickAgeMs: 1, journal: { state: 'failing', error: h.error, since: h.since, pending: h.pending, dropped: h.dropped }, stalls: { count: 2, longestMs: 2100, last: null } as never }, ports: [] },
        { build: { version: '0', node: 'v20' }, startTimeSeconds: 1, reaction: createHistogram(), tripsTotal: new Map() },
      ),
    );
    expect(text).toContain('stormbreaker_journal_failing 1\n');
    expect(text).toContain('stormbreaker_journal_pending_records 5\n');
    expect(text).toContain('stormbreaker_journal_dropped_records_total 0\n');
    expect(text).toContain('stormbreaker_sampler_stalls_total 2\n');

    unlinkSync(join(d, 'journal.jsonl'));
    j.append(ev('restore', 'vm0'));
    expect(said).toHaveLength(2);
    expect(said[1]).toBe('info: journal writing again: records kept in memory are on disk');
    expect(status).toEqual([status[0], 'journal writing again']);
    j.close();
    rmSync(d, { recursive: true });
  });
});

describe('journal sync off the JS thread', () => {
  it('append writes at once and leaves the fdatasync to the pool: one at a time, one more for what came meanwhile; a failed sync is a condition until a sync succeeds', () => {
    const d = mkdtempSync(join(tmpdir(), 'sb-js-'));
    try {
      const syncs: Array<(err: NodeJS.ErrnoException | null) => void> = [];
      const conditions: boolean[] = [];
      const path = join(d, 'journal.jsonl');
      const j = openJournal(path, { sync: (_fd, done) => void syncs.push(done), onCondition: (h) => void conditions.push(h.failing), retryMs: 60_000 });
      j.append(ev('trip', 'up1'));
      // Written (page cache) before any sync ended: a kill -9 now cannot lose it.
      expect(readFileSync(path, 'utf8')).toContain('"port":"up1"');
      expect(syncs).toHaveLength(1);
      j.append(ev('escalate', 'up2'));
      j.append(ev('trip', 'up2'));
      expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(3);
      expect(syncs).toHaveLength(1); // still one in flight
      syncs[0]!(null);
      expect(syncs).toHaveLength(2); // one more, for the two written meanwhile
      syncs[1]!(null);
      expect(syncs).toHaveLength(2);

      j.append(ev('restore', 'up1'));
      syncs[2]!(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      expect(conditions).toEqual([true]);
      expect(j.health().failing).toBe(true);
      j.append(ev('restore', 'up2')); // written; the condition holds until a sync succeeds
      expect(conditions).toEqual([true]);
      syncs[3]!(null);
      expect(conditions).toEqual([true, false]);
      j.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
