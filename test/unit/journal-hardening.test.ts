import { appendFileSync, chownSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openJournal, readJournal, readJournalTail, trippedPorts, type JournalHealth } from '../../agent/journal/journal.js';
import type { JournalEvent } from '../../agent/types.js';

// The journal against a hostile state directory: links, odd files, foreign owners, long lines.
// Full and read-only disks are in test/integration/agent-faults.test.ts (a real small tmpfs).

const ev = (event: JournalEvent['event'], port: string, extra: Partial<JournalEvent> = {}): JournalEvent => ({ ts: new Date().toISOString(), event, port, reason: `${event} ${port}`, ...extra });
const tmp = () => mkdtempSync(join(tmpdir(), 'sb-jh-'));

describe('journal hardening', () => {
  it('never appends through a symlink (journal.jsonl -> a system file): refused, kept in memory, written once the link is gone', () => {
    const d = tmp();
    const victim = join(d, 'passwd');
    writeFileSync(victim, 'root:x:0:0:root:/root:/bin/bash\n');
    symlinkSync(victim, join(d, 'journal.jsonl'));
    const conditions: JournalHealth[] = [];
    const j = openJournal(join(d, 'journal.jsonl'), { onCondition: (h) => conditions.push(h), retryMs: 60_000 });
    j.append(ev('trip', 'vm1'));
    j.append(ev('stop', ''));
    expect(readFileSync(victim, 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n');
    expect(j.health()).toMatchObject({ failing: true, pending: 2 });
    expect(conditions).toHaveLength(1); // said once at the start of the condition
    expect(conditions[0]!.error).toMatch(/ELOOP|symbolic link|symlink/i);
    expect(readJournal(join(d, 'journal.jsonl')).error).toMatch(/symlink/);
    unlinkSync(join(d, 'journal.jsonl'));
    j.append(ev('restore', 'vm1'));
    expect(j.health()).toMatchObject({ failing: false, pending: 0 });
    expect(conditions.map((c) => c.failing)).toEqual([true, false]);
    expect(readJournal(join(d, 'journal.jsonl')).events.map((e) => e.event)).toEqual(['trip', 'stop', 'restore']);
    j.close();
    rmSync(d, { recursive: true });
  });

  it('refuses a FIFO and a file owned by someone else', async () => {
    const d = tmp();
    execFileSync('mkfifo', [join(d, 'journal.jsonl')]);
    const j = openJournal(join(d, 'journal.jsonl'), { retryMs: 60_000 });
    j.append(ev('trip', 'vm1'));
    expect(j.health()).toMatchObject({ failing: true, pending: 1 });
    expect(j.health().error).toMatch(/not a regular file/);
    expect(readJournal(join(d, 'journal.jsonl')).error).toMatch(/not a regular file/);
    expect((await readJournalTail(join(d, 'journal.jsonl'), 10)).error).toMatch(/not a regular file/);
    j.close();
    const other = join(d, 'other.jsonl');
    writeFileSync(other, '');
    chownSync(other, 65534, 65534);
    const k = openJournal(other, { retryMs: 60_000, uid: 0 });
    k.append(ev('trip', 'vm1'));
    expect(k.health().error).toMatch(/belongs to uid 65534/);
    expect(readFileSync(other, 'utf8')).toBe('');
    k.close();
    rmSync(d, { recursive: true });
  });

  it('keeps at most maxPending records, dropping the oldest that does not decide a port first', () => {
    const d = tmp();
    symlinkSync('/nonexistent', join(d, 'journal.jsonl'));
    const j = openJournal(join(d, 'journal.jsonl'), { retryMs: 60_000, maxPending: 3 });
    j.append(ev('trip', 'a'));
    for (let i = 0; i < 5; i++) j.append(ev('flood-observed', `f${i}`));
    j.append(ev('trip', 'b'));
    expect(j.health()).toMatchObject({ pending: 3, dropped: 4 });
    unlinkSync(join(d, 'journal.jsonl'));
    j.append(ev('stop', ''));
    expect(j.health()).toMatchObject({ pending: 0, dropped: 5 });
    expect(readJournal(join(d, 'journal.jsonl')).events.map((e) => `${e.event}:${e.port}`)).toEqual(['trip:a', 'trip:b', 'stop:']);
    j.close();
    rmSync(d, { recursive: true });
  });

  it('an intent without its completion counts as tripped; a failed link-down ends it', () => {
    const d = tmp();
    const j = openJournal(join(d, 'journal.jsonl'));
    j.append(ev('start', ''));
    j.intent(ev('trip-intent', 'up1'));
    j.intent(ev('trip-intent', 'up2'));
    j.append(ev('action-failed', 'up2', { action: { kind: 'link-down', port: 'up2', ok: false, via: 'none', durationMs: 0, attempts: 1, verified: false } }));
    j.close();
    expect([...trippedPorts(readJournal(j.path).events).keys()]).toEqual(['up1']);
    rmSync(d, { recursive: true });
  });

  it('reads back the tail past a 32 MB line in linear time, skipping it as bad', async () => {
    const d = tmp();
    const p = join(d, 'journal.jsonl');
    writeFileSync(p, JSON.stringify(ev('trip', 'vm1')) + '\n');
    appendFileSync(p, '{"ts":"x","event":"trip","port":"vm2","reason":"' + 'a'.repeat(32 * 1024 * 1024) + '"}\n');
    appendFileSync(p, JSON.stringify(ev('restore', 'vm1')) + '\n');
    const t0 = performance.now();
    const r = await readJournalTail(p, 100, 64 * 1024 * 1024);
    const ms = performance.now() - t0;
    expect(r.events.map((e) => e.event)).toEqual(['trip', 'restore']);
    expect(r.badLines).toEqual([2]);
    expect(ms).toBeLessThan(5000); // before: 27.7 s (quadratic)
    // Capped in bytes: only what fits in the last 1 MB is read.
    const small = await readJournalTail(p, 100, 1024 * 1024);
    expect(small.events.map((e) => e.event)).toEqual(['restore']);
    rmSync(d, { recursive: true });
  });
});
