// `ip -o monitor link` lines (iproute2 6.1, Debian 12) and the monitor over a real child process.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLinkMonitor, parseLinkLine, type LinkEvent } from '../../agent/sources/links.js';

const dir = mkdtempSync(join(tmpdir(), 'sbt-links-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NEW = '9: up3@if8: <BROADCAST,MULTICAST> mtu 1500 qdisc noop master br0 state DOWN group default \\    link/ether 4a:1c:2e:3d:4f:50 brd ff:ff:ff:ff:ff:ff link-netns sbt-swns';
const DEL = 'Deleted 9: up3@if8: <BROADCAST,MULTICAST> mtu 1500 qdisc noop master br0 state DOWN group default \\    link/ether 4a:1c:2e:3d:4f:50 brd ff:ff:ff:ff:ff:ff';

describe('ip -o monitor link', () => {
  it('parses new, enslaved and deleted links; ignores other lines', () => {
    expect(parseLinkLine(NEW)).toEqual({ ifindex: 9, name: 'up3', deleted: false, master: 'br0' });
    expect(parseLinkLine(DEL)).toEqual({ ifindex: 9, name: 'up3', deleted: true, master: 'br0' });
    expect(parseLinkLine('4: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP')).toMatchObject({ name: 'eth0', master: null });
    expect(parseLinkLine('')).toBeNull();
    expect(parseLinkLine('garbage line')).toBeNull();
  });

  it('calls onChange once for a burst of lines, with the last event', async () => {
    const bin = join(dir, 'ip');
    writeFileSync(bin, `#!/bin/sh\necho '${NEW}'\necho '${NEW}'\necho '${DEL}'\nexec sleep 5\n`);
    chmodSync(bin, 0o755);
    const seen: LinkEvent[] = [];
    const mon = createLinkMonitor({ onChange: (e) => seen.push(e), ipBin: bin });
    try {
      for (let i = 0; i < 50 && mon.events < 3; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 20));
      expect(mon.events).toBe(3);
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(seen.length).toBeLessThanOrEqual(3);
      expect(seen.at(-1)).toMatchObject({ name: 'up3', deleted: true });
    } finally {
      mon.close();
    }
  });
});
