// A port renamed while the agent runs (`ip link set up1 name up1.100`): `bridge monitor fdb` keeps
// printing the name it resolved at its start, so the agent notices the rename from its port
// listing (by ifindex) and starts a fresh monitor. A real child stands in for the monitor and
// prints whatever name a file holds, the way a fresh `bridge` resolves the current name.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createRenameWatch } from '../../agent/daemon/ports.js';
import { createFdbSource } from '../../agent/sources/fdb.js';

const dir = mkdtempSync(join(tmpdir(), 'sbt-fdb-rename-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const info = (name: string, ifindex: number) => ({ name, ifindex, bridge: 'br0' });

it('says which listed port came back under a new name, once', () => {
  const renamed = createRenameWatch();
  expect(renamed([info('up1', 5), info('up2', 6)])).toEqual([]);
  expect(renamed([info('up1.100', 5), info('up2', 6), info('vm1', 9)])).toEqual([{ ifindex: 5, from: 'up1', to: 'up1.100' }]);
  expect(renamed([info('up1.100', 5), info('up2', 6), info('vm1', 9)])).toEqual([]); // said once
  // A port renamed out of the listing and back under yet another name is still a rename.
  expect(renamed([info('vm1', 9)])).toEqual([]);
  expect(renamed([info('up2b', 6)])).toEqual([{ ifindex: 6, from: 'up2', to: 'up2b' }]);
  // Names swapped between two ports: both renamed.
  expect(renamed([info('vm1', 6), info('up2b', 9)])).toEqual([
    { ifindex: 6, from: 'up2b', to: 'vm1' },
    { ifindex: 9, from: 'vm1', to: 'up2b' },
  ]);
});

it('restart() starts a fresh monitor at once: the new name, no spurious move, no warning', async () => {
  const name = join(dir, 'name');
  writeFileSync(name, 'up1');
  const bin = join(dir, 'bridge');
  writeFileSync(bin, `#!/bin/sh\necho "02:00:00:00:00:01 dev $(cat ${name}) master br0"\nexec sleep 5\n`);
  chmodSync(bin, 0o755);
  const warns: string[] = [];
  const src = createFdbSource({ now: () => 0, bridgeBin: bin, warn: (_o, m) => warns.push(m) });
  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 50 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
  };
  try {
    await until(() => src.learning().has('up1'));
    expect([...src.learning()]).toEqual(['up1']);
    writeFileSync(name, 'up1.100'); // the port is renamed; the running monitor would go on saying up1
    const t0 = Date.now();
    src.restart();
    await until(() => src.learning().has('up1.100'));
    expect([...src.learning()]).toEqual(['up1.100']); // the old name is forgotten with the old monitor
    expect(Date.now() - t0).toBeLessThan(500); // no backoff
    expect(src.drain()).toEqual([]); // the MAC did not move: up1 and up1.100 are the same port
    expect(warns).toEqual([]); // a restart asked for is not a monitor that died
  } finally {
    src.close();
  }
});
