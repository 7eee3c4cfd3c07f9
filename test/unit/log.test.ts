import { describe, expect, it } from 'vitest';
import { openSync, closeSync, fstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { journalLine, prettyLine, stdoutIsJournal, syslogPriority } from '../../agent/log.js';

describe('pretty log lines', () => {
  it('turns a pino JSON line into time LEVEL [component] msg key=value', () => {
    const line = JSON.stringify({ level: 50, time: '2026-01-01T00:00:00.000Z', app: 'stormbreaker', component: 'breaker', event: 'trip', port: 'up1', action: { ok: true }, msg: 'trip' });
    expect(prettyLine(line)).toBe('2026-01-01T00:00:00.000Z ERROR [breaker] trip event=trip port=up1 action={"ok":true}\n');
  });
  it('passes through what is not JSON', () => {
    expect(prettyLine('plain')).toBe('plain\n');
  });
});

describe('journald priorities', () => {
  it('prefixes each JSON line with the syslog priority of its pino level', () => {
    expect(journalLine('{"level":50,"time":"t","msg":"reload-failed"}\n')).toBe('<3>{"level":50,"time":"t","msg":"reload-failed"}\n');
    expect(journalLine('{"level":40,"msg":"w"}\n')).toBe('<4>{"level":40,"msg":"w"}\n');
    expect(journalLine('{"level":30,"msg":"i"}\n')).toBe('<6>{"level":30,"msg":"i"}\n');
    expect([60, 50, 40, 30, 20, 10].map(syslogPriority)).toEqual([2, 3, 4, 6, 7, 7]);
    expect(journalLine('not json\n')).toBe('<6>not json\n');
  });
  it('recognises journald only when JOURNAL_STREAM names this very stdout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-log-'));
    const fd = openSync(join(dir, 'f'), 'w');
    try {
      const st = fstatSync(fd);
      expect(stdoutIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd)).toBe(true);
      expect(stdoutIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }, fd)).toBe(false);
      expect(stdoutIsJournal({}, fd)).toBe(false);
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
