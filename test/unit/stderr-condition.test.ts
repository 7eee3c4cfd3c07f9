import { afterEach, describe, expect, it, vi } from 'vitest';
import { stderrCondition } from '../../agent/host/stderr-condition.js';

describe('a monitor child\'s stderr is logged as a condition: its start, new texts, and its end', () => {
  afterEach(() => vi.useRealTimers());

  it('a storm of identical lines: one line when it starts, one when it has been quiet 2 s, with the count', () => {
    vi.useFakeTimers();
    const logged: Array<[object, string]> = [];
    const c = stderrCondition({ name: 'bridge monitor fdb', warn: (o, m) => logged.push([o, m]), now: () => Date.now() });
    for (let i = 0; i < 60; i++) {
      c.chunk('No buffer space available\n');
      vi.advanceTimersByTime(50);
    }
    expect(logged).toEqual([[{ stderr: 'No buffer space available' }, 'bridge monitor fdb stderr']]);
    vi.advanceTimersByTime(1900);
    expect(logged).toHaveLength(1);
    vi.advanceTimersByTime(200);
    expect(logged[1]).toEqual([{ lines: 60, forMs: 59 * 50 }, 'bridge monitor fdb stderr stopped']);
    // A later line opens a new condition.
    c.chunk('No buffer space available\n');
    expect(logged).toHaveLength(3);
  });

  it('a different text inside the condition is logged once; a single line has no end line; flush ends it', () => {
    vi.useFakeTimers();
    const logged: string[] = [];
    const c = stderrCondition({ name: 'm', warn: (o) => logged.push(JSON.stringify(o)), now: () => Date.now() });
    c.chunk('a\nb\na\n\n');
    c.chunk('b\n');
    expect(logged).toEqual(['{"stderr":"a"}', '{"stderr":"b"}']);
    c.flush();
    expect(logged[2]).toBe('{"lines":4,"forMs":0}');
    c.chunk('once\n');
    vi.advanceTimersByTime(5000);
    expect(logged).toHaveLength(4);
  });
});
