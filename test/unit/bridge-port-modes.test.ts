import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bridgePortModes, listInterfaces } from '../../agent/host/interfaces.js';

// A fake /sys/class/net: br0 (ageing_time as given), ports up1 (learning off), up2 (hairpin), vm1, bond member e1.
const root = mkdtempSync(join(tmpdir(), 'sbt-brmodes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function link(name: string, ifindex: number, master?: string, brport?: { learning: number; hairpin: number }): void {
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(join(root, name, 'ifindex'), `${ifindex}\n`);
  if (master) symlinkSync(join(root, master), join(root, name, 'master'));
  if (brport) {
    mkdirSync(join(root, name, 'brport'));
    writeFileSync(join(root, name, 'brport', 'learning'), `${brport.learning}\n`);
    writeFileSync(join(root, name, 'brport', 'hairpin_mode'), `${brport.hairpin}\n`);
  }
}
link('br0', 1);
mkdirSync(join(root, 'br0', 'bridge'));
writeFileSync(join(root, 'br0', 'bridge', 'ageing_time'), '30000\n');
link('bond0', 2);
link('up1', 3, 'br0', { learning: 0, hairpin: 0 });
link('up2', 4, 'br0', { learning: 1, hairpin: 1 });
link('vm1', 5, 'br0', { learning: 1, hairpin: 0 });
link('e1', 6, 'bond0');

describe('bridge port modes (learning off, hairpin) from sysfs', () => {
  it('reads learning off and hairpin per port; false off a bridge or when unreadable', () => {
    const byName = new Map(listInterfaces(root).map((p) => [p.name, p]));
    expect(byName.get('up1')).toMatchObject({ bridge: 'br0', noLearn: true, hairpin: false });
    expect(byName.get('up2')).toMatchObject({ bridge: 'br0', noLearn: false, hairpin: true });
    expect(byName.get('vm1')).toMatchObject({ bridge: 'br0', noLearn: false, hairpin: false });
    expect(byName.get('e1')).toMatchObject({ bridge: 'bond0', noLearn: false, hairpin: false });
    expect(byName.get('br0')).toMatchObject({ bridge: null, noLearn: false, hairpin: false });
    expect(bridgePortModes('gone0', 'br0', root)).toEqual({ noLearn: false, hairpin: false, stpDiscarding: false });
  });

  it('ageing_time 0 on the bridge: no port of it learns (Linux learns nothing then)', () => {
    writeFileSync(join(root, 'br0', 'bridge', 'ageing_time'), '0\n');
    try {
      expect(bridgePortModes('vm1', 'br0', root)).toEqual({ noLearn: true, hairpin: false, stpDiscarding: false });
    } finally {
      writeFileSync(join(root, 'br0', 'bridge', 'ageing_time'), '30000\n');
    }
  });

  it('STP on the bridge: a port it holds blocking or listening discards (no moves there); with STP off the state is not read', () => {
    for (const [p, st] of [['up1', 4], ['up2', 1], ['vm1', 3]] as const) writeFileSync(join(root, p, 'brport', 'state'), `${st}\n`);
    writeFileSync(join(root, 'br0', 'bridge', 'stp_state'), '1\n');
    try {
      const byName = new Map(listInterfaces(root).map((p) => [p.name, p]));
      expect([byName.get('up1')?.stpDiscarding, byName.get('up2')?.stpDiscarding, byName.get('vm1')?.stpDiscarding]).toEqual([true, true, false]);
      writeFileSync(join(root, 'br0', 'bridge', 'stp_state'), '0\n'); // the agent's own bridge-state shut (STP off) still shows moves
      expect(bridgePortModes('up1', 'br0', root).stpDiscarding).toBe(false);
    } finally {
      rmSync(join(root, 'br0', 'bridge', 'stp_state'));
    }
  });
});
