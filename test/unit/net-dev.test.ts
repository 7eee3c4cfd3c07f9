import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createNetDevSource } from '../../agent/sources/net-dev.js';
import { emptyCounters, type Counters, type PortInfo } from '../../agent/types.js';

// The /proc/net/dev counter reader (agent/sources/net-dev.ts): a file laid out as the kernel
// prints it, and the real file of this process's namespace beside sysfs.

const HEAD =
  'Inter-|   Receive                                                |  Transmit\n' +
  ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
/** One device line as the kernel prints it (name right-aligned to 6, then 16 numbers). */
const line = (name: string, rxB: number, rxP: number, txB: number, txP: number): string =>
  `${name.padStart(6)}: ${[rxB, rxP, 0, 0, 0, 0, 0, 0, txB, txP, 0, 0, 0, 0, 0, 0].map((n) => String(n).padStart(7)).join(' ')}\n`;

const port = (name: string, ifindex: number): PortInfo => ({ name, ifindex, bridge: 'br0' });

let dir = '';
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function fileSource(text: string): { path: string; write(t: string): void } {
  dir = mkdtempSync(join(tmpdir(), 'sb-netdev-'));
  const path = join(dir, 'dev');
  writeFileSync(path, text);
  return { path, write: (t) => writeFileSync(path, t) };
}

function countersFor(names: string[]): Map<string, Counters> {
  return new Map(names.map((n) => [n, { ...emptyCounters(), ok: true }]));
}

describe('net-dev source', () => {
  it('reads rx packets, tx packets and rx bytes of the watched ports only, each read fresh', () => {
    const f = fileSource(HEAD + line('lo', 1, 2, 3, 4) + line('up1', 1000, 10, 2000, 20) + line('vnet12345', 7, 8, 9, 11) + line('br0', 5, 5, 5, 5));
    const src = createNetDevSource({ path: f.path });
    src.watch([port('up1', 3), port('vnet12345', 4)]);
    let out = countersFor(['up1', 'vnet12345']);
    src.read(out);
    expect(out.get('up1')).toMatchObject({ rxPackets: 10, txPackets: 20, rxBytes: 1000, ok: true });
    expect(out.get('vnet12345')).toMatchObject({ rxPackets: 8, txPackets: 11, rxBytes: 7, ok: true });
    f.write(HEAD + line('lo', 1, 2, 3, 4) + line('up1', 1500, 15, 2600, 26) + line('vnet12345', 7, 9, 9, 12));
    out = countersFor(['up1', 'vnet12345']);
    src.read(out);
    expect(out.get('up1')).toMatchObject({ rxPackets: 15, txPackets: 26, rxBytes: 1500, ok: true });
    expect(out.get('vnet12345')).toMatchObject({ rxPackets: 9, txPackets: 12, ok: true });
    src.close();
  });

  it('a port missing from the read (deleted, renamed, moved) gives no sample; found again, it reads again', () => {
    const f = fileSource(HEAD + line('up1', 1, 2, 3, 4) + line('up2', 5, 6, 7, 8));
    const src = createNetDevSource({ path: f.path });
    src.watch([port('up1', 3), port('up2', 4)]);
    f.write(HEAD + line('up1', 1, 2, 3, 4));
    let out = countersFor(['up1', 'up2']);
    src.read(out);
    expect(out.get('up1')!.ok).toBe(true);
    expect(out.get('up2')!.ok).toBe(false);
    f.write(HEAD + line('up2', 50, 60, 70, 80) + line('up1', 1, 2, 3, 4));
    out = countersFor(['up1', 'up2']);
    src.read(out);
    expect(out.get('up2')).toMatchObject({ rxPackets: 60, txPackets: 80, ok: true });
    src.close();
  });

  it('a line cut short, or a name that only starts like a port\'s, is no sample of it', () => {
    const f = fileSource(HEAD + '   up1: 100 10 0 0 0\n' + line('up10', 1, 2, 3, 4));
    const src = createNetDevSource({ path: f.path });
    src.watch([port('up1', 3)]);
    const out = countersFor(['up1']);
    src.read(out);
    expect(out.get('up1')!.ok).toBe(false);
    src.close();
  });

  it('a file larger than its first buffer (64 KB: ~500 devices) is read whole', () => {
    const names = Array.from({ length: 1200 }, (_, i) => `vnet${i}`);
    const f = fileSource(HEAD + names.map((n, i) => line(n, i, i + 1, i + 2, i + 3)).join(''));
    expect(readFileSync(f.path).length).toBeGreaterThan(64 * 1024);
    const src = createNetDevSource({ path: f.path });
    src.watch(names.map((n, i) => port(n, i + 10)));
    const out = countersFor(names);
    src.read(out);
    expect(out.get('vnet1199')).toMatchObject({ rxPackets: 1200, txPackets: 1202, rxBytes: 1199, ok: true });
    expect(names.every((n) => out.get(n)!.ok)).toBe(true);
    src.close();
  });

  it('the real /proc/net/dev agrees with sysfs (lo, read between two sysfs reads)', () => {
    const sys = (f: string) => Number(readFileSync(`/sys/class/net/lo/statistics/${f}`, 'utf8'));
    const src = createNetDevSource();
    src.watch([{ name: 'lo', ifindex: 1, bridge: null }]);
    const before = { rx: sys('rx_packets'), tx: sys('tx_packets'), bytes: sys('rx_bytes') };
    const out = countersFor(['lo']);
    src.read(out);
    const after = { rx: sys('rx_packets'), tx: sys('tx_packets'), bytes: sys('rx_bytes') };
    const c = out.get('lo')!;
    expect(c.ok).toBe(true);
    expect(c.rxPackets).toBeGreaterThanOrEqual(before.rx);
    expect(c.rxPackets).toBeLessThanOrEqual(after.rx);
    expect(c.txPackets).toBeGreaterThanOrEqual(before.tx);
    expect(c.txPackets).toBeLessThanOrEqual(after.tx);
    expect(c.rxBytes).toBeGreaterThanOrEqual(before.bytes);
    expect(c.rxBytes).toBeLessThanOrEqual(after.bytes);
    src.close();
  });

  it('an unopenable file throws at creation (the daemon then reads sysfs)', () => {
    expect(() => createNetDevSource({ path: '/nonexistent/proc/net/dev' })).toThrow(/ENOENT/);
  });
});
