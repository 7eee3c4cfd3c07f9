import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSysfsSource, parseDecimal, type PreadInts } from '../../agent/sources/sysfs.js';
import { loadPacketAddon } from '../../agent/sources/packet.js';
import { emptyCounters, type Counters } from '../../agent/types.js';

/** preadInts in JS, as the addon's: NaN without digits, -errno on a failed read; fds in `dead` fail with ENODEV. */
function jsPreadInts(dead: ReadonlySet<number> = new Set()): PreadInts {
  const b = Buffer.alloc(32);
  return (fds, out, n) => {
    for (let i = 0; i < n; i++) {
      if (dead.has(fds[i]!)) {
        out[i] = -19;
        continue;
      }
      try {
        out[i] = parseDecimal(b, readSync(fds[i]!, b, 0, b.length, 0));
      } catch (err) {
        out[i] = -Math.abs((err as NodeJS.ErrnoException).errno ?? 1);
      }
    }
  };
}
const addon = loadPacketAddon();
const nativePreadInts = !('error' in addon) && addon.preadInts ? addon.preadInts : undefined;

describe('sysfs source', () => {
  it('parses decimal counters without allocation helpers', () => {
    const b = Buffer.from('18446744073709\n');
    expect(parseDecimal(b, b.length)).toBe(18446744073709);
    expect(parseDecimal(Buffer.from('\n'), 1)).toBeNaN();
  });

  const readers: Array<[string, PreadInts | undefined]> = [
    ['fs.readSync per file', undefined],
    ['a batch read (JS)', jsPreadInts()],
    ...(nativePreadInts ? [['the addon\'s preadInts', nativePreadInts] as [string, PreadInts]] : []),
  ];
  it.each(readers)('reads fresh values through kept-open fds and marks a vanished port not ok: %s', (_, preadInts) => {
    const root = mkdtempSync(join(tmpdir(), 'sb-sysfs-'));
    const dir = join(root, 'eth9', 'statistics');
    mkdirSync(dir, { recursive: true });
    const put = (rx: number) => {
      writeFileSync(join(dir, 'rx_packets'), `${rx}\n`);
      writeFileSync(join(dir, 'tx_packets'), '7\n');
      writeFileSync(join(dir, 'rx_bytes'), '640\n');
    };
    put(5);
    const src = createSysfsSource({ root, ...(preadInts ? { preadInts } : {}) });
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

  it('a batch read: each port its own values, a failed read (ENODEV) marks that port only, and watch() reopens it', () => {
    const root = mkdtempSync(join(tmpdir(), 'sb-sysfs-'));
    const put = (name: string, rx: number) => {
      const dir = join(root, name, 'statistics');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'rx_packets'), `${rx}\n`);
      writeFileSync(join(dir, 'tx_packets'), `${rx + 1}\n`);
      writeFileSync(join(dir, 'rx_bytes'), `${rx * 100}\n`);
    };
    const names = ['a0', 'a1', 'a2', 'a3'];
    names.forEach((n, i) => put(n, 10 * (i + 1)));
    const dead = new Set<number>();
    const opened: number[] = [];
    const batch: PreadInts = (fds, out, n) => {
      for (let i = 0; i < n; i++) opened.push(fds[i]!);
      jsPreadInts(dead)(fds, out, n);
    };
    const src = createSysfsSource({ root, preadInts: batch });
    const ports = names.map((name, i) => ({ name, ifindex: i + 1, bridge: null }));
    src.watch(ports);
    const out = new Map<string, Counters>(names.map((n) => [n, { ...emptyCounters(), ok: true }]));
    src.read(out);
    names.forEach((n, i) => expect(out.get(n)).toMatchObject({ rxPackets: 10 * (i + 1), txPackets: 10 * (i + 1) + 1, rxBytes: 1000 * (i + 1), ok: true }));
    // a2's tx_packets fd fails as after its interface was deleted: a2 only is not ok.
    const a2tx = opened[2 * 3 + 1]!;
    dead.add(a2tx);
    for (const c of out.values()) c.ok = true;
    src.read(out);
    expect(names.map((n) => out.get(n)!.ok)).toEqual([true, true, false, true]);
    // The next listing reopens the failed port; ports removed are dropped from the batch.
    src.watch(ports.filter((p) => p.name !== 'a0'));
    opened.length = 0;
    for (const c of out.values()) c.ok = true;
    put('a3', 77);
    src.read(out);
    expect(opened.length).toBe(9);
    expect(out.get('a2')).toMatchObject({ rxPackets: 30, ok: true });
    expect(out.get('a3')).toMatchObject({ rxPackets: 77, txPackets: 78, rxBytes: 7700, ok: true });
    expect(out.get('a0')!.rxPackets).toBe(10); // not read any more
    src.close();
    rmSync(root, { recursive: true });
  });

  it.runIf(nativePreadInts !== undefined)('the addon\'s preadInts: -errno for a bad fd, NaN without digits, and it checks its arguments', () => {
    const root = mkdtempSync(join(tmpdir(), 'sb-sysfs-'));
    writeFileSync(join(root, 'num'), '42\n');
    writeFileSync(join(root, 'empty'), '');
    const a = openSync(join(root, 'num'), 'r');
    const e = openSync(join(root, 'empty'), 'r');
    const out = new Float64Array(3);
    nativePreadInts!(Int32Array.of(a, e, -1), out, 3);
    expect(out[0]).toBe(42);
    expect(out[1]).toBeNaN();
    expect(out[2]).toBe(-9); // EBADF
    expect(() => nativePreadInts!(Int32Array.of(a), out, 2)).toThrow(/preadInts/);
    expect(() => nativePreadInts!(new Float64Array(1) as unknown as Int32Array, out, 1)).toThrow(/preadInts/);
    closeSync(a);
    closeSync(e);
    rmSync(root, { recursive: true });
  });
});
