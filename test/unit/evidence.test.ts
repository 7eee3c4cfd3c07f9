// Storm captures: the pcapng writer against the reference reader (tcpdump/libpcap, Debian
// `tcpdump`, installed by scripts/setup.sh --with-test-tools), and the bounded store.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { toPcapng, type CapturedFrame } from '../../agent/evidence/pcapng.js';
import { captureName, pruneCaptures, saveCapture } from '../../agent/evidence/store.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'sbt-ev-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A broadcast ARP request from `src` (60 bytes on the wire, 42 kept). */
function arp(src: string, sec: number, nsec: number, ifindex: number): CapturedFrame {
  const mac = Buffer.from(src.replace(/:/g, ''), 'hex');
  const b = Buffer.alloc(42);
  Buffer.from('ffffffffffff', 'hex').copy(b, 0);
  mac.copy(b, 6);
  b.writeUInt16BE(0x0806, 12);
  Buffer.from('0001080006040001', 'hex').copy(b, 14);
  mac.copy(b, 22);
  Buffer.from([10, 0, 0, 1]).copy(b, 28);
  Buffer.from([10, 0, 0, 2]).copy(b, 38);
  return { sec, nsec, ifindex, len: 60, data: b };
}

const haveTcpdump = spawnSync('tcpdump', ['--version']).status === 0;

describe('toPcapng', () => {
  const frames = [arp('02:aa:bb:cc:dd:01', 1764892800, 123456789, 4), arp('02:aa:bb:cc:dd:01', 1764892800, 123556789, 5), arp('02:aa:bb:cc:dd:01', 1764892800, 124000000, 4)];
  const bytes = toPcapng(frames, new Map([[4, 'up1'], [5, 'up2']]), 'trip up1: loop on br0');

  it('is a well-formed pcapng: blocks whose lengths chain to the end of the file', () => {
    expect(bytes.readUInt32LE(0)).toBe(0x0a0d0d0a);
    expect(bytes.readUInt32LE(8)).toBe(0x1a2b3c4d);
    const types: number[] = [];
    let off = 0;
    while (off < bytes.length) {
      const len = bytes.readUInt32LE(off + 4);
      expect(len % 4).toBe(0);
      expect(bytes.readUInt32LE(off + len - 4)).toBe(len);
      types.push(bytes.readUInt32LE(off));
      off += len;
    }
    expect(off).toBe(bytes.length);
    expect(types).toEqual([0x0a0d0d0a, 1, 1, 6, 6, 6]);
  });

  it.skipIf(!haveTcpdump)('opens with tcpdump -r: nanosecond times, source MAC, original length', () => {
    const d = tmp();
    const f = join(d, 'x.pcapng');
    writeFileSync(f, bytes);
    const r = spawnSync('tcpdump', ['-r', f, '-n', '-e', '--nano', '-tt'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^1764892800\.123456789 02:aa:bb:cc:dd:01 > ff:ff:ff:ff:ff:ff, ethertype ARP \(0x0806\), length 60: Request who-has 10\.0\.0\.2 tell 10\.0\.0\.1/);
    expect(lines[1]).toMatch(/^1764892800\.123556789 /);
  });
});

describe('capture store', () => {
  it('names captures by time and port, and refuses names that are not interfaces', () => {
    expect(captureName(Date.UTC(2026, 11, 4, 22, 30, 1, 123), 'up1')).toBe('trip-2026-12-04T22-30-01.123Z-up1.pcapng');
    expect(() => captureName(0, '../etc')).toThrow(/not an interface name/);
  });

  it('keeps at most maxFiles and maxBytes, deleting the oldest first, never the new one', async () => {
    const d = tmp();
    for (let i = 0; i < 5; i++) await saveCapture(d, captureName(Date.UTC(2026, 0, 1, 0, 0, i), 'up1'), Buffer.alloc(100), { maxFiles: 3, maxBytes: 1000 });
    expect(readdirSync(join(d, 'captures'))).toEqual([2, 3, 4].map((i) => captureName(Date.UTC(2026, 0, 1, 0, 0, i), 'up1')));
    // A big new capture pushes out older ones by size, but is itself kept.
    await saveCapture(d, captureName(Date.UTC(2026, 0, 1, 0, 1, 0), 'up2'), Buffer.alloc(950), { maxFiles: 3, maxBytes: 1000 });
    expect(readdirSync(join(d, 'captures'))).toEqual([captureName(Date.UTC(2026, 0, 1, 0, 1, 0), 'up2')]);
    writeFileSync(join(d, 'captures', 'notes.txt'), 'operator file');
    expect(await pruneCaptures(join(d, 'captures'), { maxFiles: 0, maxBytes: 0 })).toHaveLength(1);
    expect(readdirSync(join(d, 'captures'))).toEqual(['notes.txt']);
  });

  it('never writes through a file or link already under the new name', async () => {
    const d = tmp();
    const name = captureName(Date.UTC(2026, 0, 1), 'up1');
    await saveCapture(d, name, Buffer.alloc(10));
    const target = join(d, 'elsewhere');
    writeFileSync(target, 'precious');
    const name2 = captureName(Date.UTC(2026, 0, 2), 'up1');
    symlinkSync(target, join(d, 'captures', name2));
    await expect(saveCapture(d, name, Buffer.alloc(10))).rejects.toThrow(/EEXIST/);
    await expect(saveCapture(d, name2, Buffer.alloc(10))).rejects.toThrow(/EEXIST/);
    expect(readFileSync(target, 'utf8')).toBe('precious');
  });
});
