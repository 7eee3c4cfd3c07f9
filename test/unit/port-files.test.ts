import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeptPortFiles, nodeFdOps, parseSysInt, pathPortFiles, type FdOps } from '../../agent/host/port-files.js';

// Kept-open per-port sysfs files (host/port-files.ts) over a fake /sys/class/net of plain files,
// through an fd edge that counts what is open and can fail reads as a vanished interface does.

const root = mkdtempSync(join(tmpdir(), 'sbt-portfiles-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function port(name: string, learning: number, hairpin: number, ups: number): void {
  mkdirSync(join(root, name, 'brport'), { recursive: true });
  writeFileSync(join(root, name, 'brport', 'learning'), `${learning}\n`);
  writeFileSync(join(root, name, 'brport', 'hairpin_mode'), `${hairpin}\n`);
  writeFileSync(join(root, name, 'carrier_up_count'), `${ups}\n`);
}

/** node:fs, counting opens and closes; a fd in `dead` fails its reads with ENODEV. */
function countingOps(): FdOps & { open: (p: string) => number; live: Set<number>; opens: number; closed: number[]; dead: Set<number> } {
  const live = new Set<number>();
  const dead = new Set<number>();
  const o = {
    live,
    dead,
    opens: 0,
    closed: [] as number[],
    open(p: string) {
      const fd = nodeFdOps.open(p);
      live.add(fd);
      o.opens++;
      return fd;
    },
    pread(fd: number, buf: Uint8Array) {
      if (dead.has(fd)) throw Object.assign(new Error('ENODEV: no such device, read'), { code: 'ENODEV' });
      return nodeFdOps.pread(fd, buf);
    },
    close(fd: number) {
      live.delete(fd);
      dead.delete(fd);
      o.closed.push(fd);
      nodeFdOps.close(fd);
    },
  };
  return o;
}

describe('parseSysInt', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  it('reads a sysfs integer and nothing else', () => {
    expect(parseSysInt(b('1\n'), 2)).toBe(1);
    expect(parseSysInt(b('30000\n'), 6)).toBe(30000);
    expect(parseSysInt(b('-5\n'), 3)).toBe(-5);
    expect(parseSysInt(b(' 7 \n'), 4)).toBe(7);
    expect(parseSysInt(b('\n'), 1)).toBeNull();
    expect(parseSysInt(b(''), 0)).toBeNull();
    expect(parseSysInt(b('1x\n'), 3)).toBeNull();
    expect(parseSysInt(b('0x10\n'), 5)).toBeNull();
    expect(parseSysInt(b('12\n'), 1)).toBe(1); // only the n bytes read count
  });
});

describe('kept port files', () => {
  it('reads fresh values through one kept fd per file, and reads like the path reader', () => {
    port('p1', 1, 0, 3);
    const ops = countingOps();
    const kept = createKeptPortFiles(root, ops);
    const byPath = pathPortFiles(root);
    for (const f of ['brport/learning', 'brport/hairpin_mode', 'carrier_up_count'] as const) {
      expect(kept.readInt('p1', 11, f)).toBe(byPath.readInt('p1', 11, f));
    }
    expect(kept.openFds()).toBe(3);
    // Rewritten in place, as the kernel's values change: the kept fd reads the new value (pread at 0).
    writeFileSync(join(root, 'p1', 'carrier_up_count'), '4\n');
    writeFileSync(join(root, 'p1', 'brport', 'learning'), '0\n');
    for (let i = 0; i < 5; i++) {
      expect(kept.readInt('p1', 11, 'carrier_up_count')).toBe(4);
      expect(kept.readInt('p1', 11, 'brport/learning')).toBe(0);
    }
    expect(ops.opens).toBe(3);
    expect(kept.openFds()).toBe(3);
    kept.close();
    expect(ops.live.size).toBe(0);
  });

  it('closes the fds of ports gone from the listing, so ports coming and going leak none', () => {
    const ops = countingOps();
    const kept = createKeptPortFiles(root, ops);
    for (let round = 0; round < 20; round++) {
      const names = [`q${round}`, `q${round + 1}`];
      for (const n of names) port(n, 1, 0, round);
      for (const n of names) {
        kept.readInt(n, 100 + round, 'carrier_up_count');
        kept.readInt(n, 100 + round, 'brport/learning');
      }
      kept.retain(new Set(names));
      expect(ops.live.size).toBe(4);
      expect(kept.openFds()).toBe(4);
    }
    kept.retain(new Set());
    expect(ops.live.size).toBe(0);
    expect(kept.openFds()).toBe(0);
  });

  it('a name now on another interface (new ifindex) opens afresh and closes the old fds', () => {
    port('p2', 1, 0, 1);
    const ops = countingOps();
    const kept = createKeptPortFiles(root, ops);
    expect(kept.readInt('p2', 20, 'carrier_up_count')).toBe(1);
    const [old] = [...ops.live];
    // p2 recreated: a new interface (ifindex 21) under the same name, with its own files.
    rmSync(join(root, 'p2'), { recursive: true });
    port('p2', 1, 0, 0);
    expect(kept.readInt('p2', 21, 'carrier_up_count')).toBe(0);
    expect(ops.closed).toEqual([old]);
    expect(ops.opens).toBe(2);
    expect(kept.openFds()).toBe(1);
    expect(ops.live.size).toBe(1);
    kept.close();
  });

  it('a kept fd whose interface went away (ENODEV) is closed and the path opened again', () => {
    port('p3', 1, 1, 5);
    const ops = countingOps();
    const kept = createKeptPortFiles(root, ops);
    expect(kept.readInt('p3', 30, 'brport/hairpin_mode')).toBe(1);
    const [old] = [...ops.live];
    // The port left its bridge and joined again: its brport directory (and the kept fd's node) is new.
    ops.dead.add(old!);
    renameSync(join(root, 'p3', 'brport'), join(root, 'p3', 'brport-old'));
    port('p3', 1, 0, 5);
    expect(kept.readInt('p3', 30, 'brport/hairpin_mode')).toBe(0);
    expect(ops.closed).toEqual([old]);
    expect(ops.opens).toBe(2);
    expect(kept.openFds()).toBe(1);
    expect(ops.live.size).toBe(1);
    // Not bridged any more: no brport files, nothing kept, null as from the path reader.
    rmSync(join(root, 'p3', 'brport'), { recursive: true });
    ops.dead.add([...ops.live][0]!);
    expect(kept.readInt('p3', 30, 'brport/hairpin_mode')).toBeNull();
    expect(kept.openFds()).toBe(0);
    expect(ops.live.size).toBe(0);
  });

  it('past the descriptor cap, reads by path and keeps nothing more', () => {
    port('r1', 0, 0, 1);
    port('r2', 1, 1, 2);
    const ops = countingOps();
    const kept = createKeptPortFiles(root, ops, () => 2);
    expect(kept.readInt('r1', 1, 'brport/learning')).toBe(0);
    expect(kept.readInt('r1', 1, 'carrier_up_count')).toBe(1);
    expect(kept.readInt('r2', 2, 'brport/hairpin_mode')).toBe(1);
    expect(kept.readInt('r2', 2, 'carrier_up_count')).toBe(2);
    expect(kept.openFds()).toBe(2);
    expect(ops.live.size).toBe(2);
    kept.close();
    expect(ops.live.size).toBe(0);
  });

  it('rejects a name that is not an interface name', () => {
    const kept = createKeptPortFiles(root, countingOps());
    expect(kept.readInt('../p1', 1, 'carrier_up_count')).toBeNull();
    expect(kept.openFds()).toBe(0);
  });
});
