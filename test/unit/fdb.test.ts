import { describe, expect, it } from 'vitest';
import { createMoveTracker, parseFdbLine } from '../../agent/sources/fdb.js';

// Lines as printed by iproute2's `bridge monitor fdb` (Debian 12, iproute2 6.1).
describe('bridge monitor fdb parsing', () => {
  it('parses learned entries and ignores self entries', () => {
    expect(parseFdbLine('02:00:00:00:00:01 dev up1 master br0 ')).toEqual({ mac: '02:00:00:00:00:01', dev: 'up1', master: 'br0', deleted: false });
    expect(parseFdbLine('Deleted 02:00:00:00:00:01 dev up1 master br0 stale')).toMatchObject({ deleted: true, dev: 'up1' });
    expect(parseFdbLine('33:33:00:00:00:01 dev up1 self permanent')).toBeNull();
    expect(parseFdbLine('garbage')).toBeNull();
    expect(parseFdbLine('')).toBeNull();
  });

  it('reports a move only when a learned MAC changes port', () => {
    const track = createMoveTracker();
    const at = (dev: string) => track({ mac: '02:00:00:00:00:01', dev, master: 'br0', deleted: false }, 1);
    expect(at('up1')).toBeNull();
    expect(at('up1')).toBeNull();
    expect(at('up2')).toEqual({ tNs: 1, bridge: 'br0', mac: '02:00:00:00:00:01', port: 'up2' });
    expect(at('up1')).toMatchObject({ port: 'up1' });
  });

  it('keeps memory bounded under a random-MAC flood', () => {
    const track = createMoveTracker(100);
    for (let i = 0; i < 10_000; i++) {
      const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      expect(track({ mac, dev: 'vm1', master: 'br0', deleted: false }, i)).toBeNull();
    }
  });
});
