import { mkdtempSync, readFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openJournal, parseJournal, readJournal, trippedPorts } from '../../agent/journal/journal.js';
import type { JournalEvent } from '../../agent/types.js';

const ev = (event: JournalEvent['event'], port: string, ts: string): JournalEvent => ({ ts, event, port, reason: `${event} ${port}` });

describe('journal', () => {
  it('appends JSON lines and reads them back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-journal-'));
    const j = openJournal(join(dir, 'state', 'journal.jsonl'));
    j.append(ev('trip', 'up2', '2026-01-01T00:00:00.000Z'));
    j.append(ev('restore', 'up2', '2026-01-01T00:01:00.000Z'));
    j.close();
    const lines = readFileSync(j.path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toMatchObject({ event: 'trip', port: 'up2' });
    expect(readJournal(j.path).events.map((e) => e.event)).toEqual(['trip', 'restore']);
  });

  it('a missing journal is empty, not an error', () => {
    expect(readJournal('/nonexistent/sb/journal.jsonl')).toEqual({ events: [], badLines: [] });
  });

  it('skips a torn last line after a crash and reports it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-journal-'));
    const j = openJournal(join(dir, 'journal.jsonl'));
    j.append(ev('trip', 'vmA1', '2026-01-01T00:00:00.000Z'));
    j.close();
    appendFileSync(j.path, '{"ts":"2026-01-01T00:00:01.000Z","event":"rest');
    const r = readJournal(j.path);
    expect(r.events).toHaveLength(1);
    expect(r.badLines).toEqual([2]);
    expect([...trippedPorts(r.events).keys()]).toEqual(['vmA1']);
  });

  it('a port stays tripped until a restore follows its last trip; would-trip never counts', () => {
    const events = [
      ev('trip', 'up1', 't1'),
      ev('restore', 'up1', 't2'),
      ev('trip', 'up2', 't3'),
      ev('would-trip', 'vm1', 't4'),
      ev('trip', 'up1', 't5'),
    ];
    expect([...trippedPorts(events).keys()].sort()).toEqual(['up1', 'up2']);
    expect(trippedPorts([...events, ev('restore', 'up2', 't6')]).has('up2')).toBe(false);
  });

  it('rejects lines that are JSON but not events', () => {
    expect(parseJournal('{"a":1}\n[1,2]\n').badLines).toEqual([1, 2]);
  });

  it('an undo (reachability) ends a trip like a restore', () => {
    expect(trippedPorts([ev('trip', 'up1', 't1'), ev('undo', 'up1', 't2'), ev('trip', 'up2', 't3')]).has('up1')).toBe(false);
    expect(trippedPorts([ev('undo', 'up1', 't1'), ev('trip', 'up1', 't2')]).has('up1')).toBe(true);
  });
});
