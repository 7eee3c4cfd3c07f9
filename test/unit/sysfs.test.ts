import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSysfsSource, parseDecimal } from '../../agent/sources/sysfs.js';
import { emptyCounters, type Counters } from '../../agent/types.js';

describe('sysfs source', () => {
  it('parses decimal counters without allocation helpers', () => {
    const b = Buffer.from('18446744073709\n');
    expect(parseDecimal(b, b.length)).toBe(18446744073709);
    expect(parseDecimal(Buffer.from('\n'), 1)).toBeNaN();
  });

  it('reads fresh values through kept-open fds and marks a vanished port not ok', () => {
    const root = mkdtempSync(join(tmpdir(), 'sb-sysfs-'));
    const dir = join(root, 'eth9', 'statistics');
    mkdirSync(dir, { recursive: true });
    const put = (rx: number) => {
      writeFileSync(join(dir, 'rx_packets'), `${rx}\n`);
      writeFileSync(join(dir, 'tx_packets'), '7\n');
      writeFileSync(join(dir, 'rx_bytes'), '640\n');
    };
    put(5);
    const src = createSysfsSource({ root });
    src.watch([{ name: 'eth9', ifindex: 9, bridge: null }, { name: 'nope0', ifindex: 10, bridge: null }]);
    const out = new Map<string, Counters>([['eth9', { ...emptyCounters(), ok: true }]]);
    src.read(out);
    expect(out.get('eth9')).toMatchObject({ rxPackets: 5, txPackets: 7, rxBytes: 640, ok: true });
    // writeFileSync truncates and rewrites the same inode, like a counter moving on.
    put(123456);
    src.read(out);
    expect(out.get('eth9')!.rxPackets).toBe(123456);
    writeFileSync(join(dir, 'rx_packets'), '');
    src.read(out);
    expect(out.get('eth9')!.ok).toBe(false);
    src.close();
    rmSync(root, { recursive: true });
  });
});
