import { describe, expect, it } from 'vitest';
import { prettyLine } from '../../agent/log.js';

describe('pretty log lines', () => {
  it('turns a pino JSON line into time LEVEL [component] msg key=value', () => {
    const line = JSON.stringify({ level: 50, time: '2026-01-01T00:00:00.000Z', app: 'stormbreaker', component: 'breaker', event: 'trip', port: 'up1', action: { ok: true }, msg: 'trip' });
    expect(prettyLine(line)).toBe('2026-01-01T00:00:00.000Z ERROR [breaker] trip event=trip port=up1 action={"ok":true}\n');
  });
  it('passes through what is not JSON', () => {
    expect(prettyLine('plain')).toBe('plain\n');
  });
});
