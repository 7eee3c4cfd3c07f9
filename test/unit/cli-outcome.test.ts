import { describe, expect, it } from 'vitest';
import { renderOutcome, renderWhy } from '../../agent/cli/render.js';

describe('cli rendering of what the journal and the daemon say', () => {
  it('why survives a journal line whose evidence has the wrong shapes (clues: 7)', () => {
    const e = { ts: 't', event: 'trip', port: 'vm1', reason: 'r', evidence: { clues: 7, thresholds: 'x', window: [null, 3, { port: 'vm1', rxPps: 'a' }] }, action: { argv: 'ip', durationMs: 'slow' } };
    const out = renderWhy(e as unknown as Record<string, unknown>);
    expect(out).toMatch(/^trip of vm1 at t/);
    expect(out).toMatch(/last sample vm1: rx - pps/);
    expect(out).toMatch(/action: via -, -, /);
  });

  it('trip/restore/hold outcomes: done (verified) exits 0, refused goes to stderr with exit 1', () => {
    expect(renderOutcome({ port: 'vm1', cmd: 'trip', outcome: 'done', verified: true, via: 'sysfs-flags' })).toEqual({ text: 'trip vm1: done (verified via sysfs-flags)\n', toStderr: false, code: 0 });
    expect(renderOutcome({ port: 'mgmt0', cmd: 'trip', outcome: 'refused', why: 'mgmt0 is protected' })).toEqual({ text: 'trip mgmt0: refused: mgmt0 is protected\n', toStderr: true, code: 1 });
    expect(renderOutcome({ port: 'vm1', cmd: 'trip', outcome: 'done', verified: false }).code).toBe(1);
    expect(renderOutcome({ port: 'vm1', cmd: 'hold', outcome: 'done', verified: true, until: 'T' }).text).toBe('hold vm1: done (verified) until T\n');
    // An agent that only accepts (does not wait): said as such.
    expect(renderOutcome({ port: 'vm1', cmd: 'trip' }).text).toBe('trip vm1: accepted\n');
  });
});
