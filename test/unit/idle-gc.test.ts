// The idle agent empties V8's young generation now and then (agent/daemon/idle-gc.ts), so a storm
// does not meet a scavenge the idle ticks left: the minor GC really runs (the young generation's
// use drops) without a global `gc` in the agent's own context, and only after quietMs of idle.
import { getHeapSpaceStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { createIdleGc, minorGc } from '../../agent/daemon/idle-gc.js';

const youngUsed = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;

describe('idle GC', () => {
  it("gets V8's minor GC, which empties the young generation, and leaves the agent's globals alone", () => {
    const hadGc = typeof (globalThis as { gc?: unknown }).gc;
    const gc = minorGc();
    expect(gc).not.toBeNull();
    let junk: Array<{ i: number; s: string }> | null = [];
    for (let i = 0; i < 5000; i++) junk.push({ i, s: `x${i}` });
    junk = null;
    const before = youngUsed();
    expect(before).toBeGreaterThan(100_000);
    gc!();
    expect(youngUsed()).toBeLessThan(before / 2);
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe(hadGc);
  });

  it('collects only once the sampler has idled quietMs, never while it samples fast', () => {
    let n = 0;
    const idle = createIdleGc(() => n++, 2000);
    expect(idle.tick(0, false)).toBe(true); // idle since start
    expect(idle.tick(1000, true)).toBe(false); // a storm
    expect(idle.tick(2000, false)).toBe(false); // 1 s after it
    expect(idle.tick(3000, false)).toBe(true);
    expect(idle.tick(4000, false)).toBe(true);
    expect(n).toBe(3);
    expect(createIdleGc(null).tick(1e9, false)).toBe(false);
  });
});
