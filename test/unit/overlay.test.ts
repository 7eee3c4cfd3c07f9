// Overlay (VXLAN) tunnel ports (session 18): found from sysfs at the listing, stamped on the port
// policy, and cut before a physical port of the same role in a loop through both (the classic
// mistake: two hosts each bridging the segment's VXLAN port with an uplink into one switch).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listInterfaces, overlayOf } from '../../agent/host/interfaces.js';
import { withOverlays } from '../../agent/daemon/ports.js';
import { parseFdbLine } from '../../agent/sources/fdb-lines.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';
import type { OverlayInfo, PortPolicy } from '../../agent/types.js';
import { breakerDriver, result, T0, verdictsFor } from '../helpers/breaker-driver.js';

// A fake /sys/class/net: br0 with up1, tap0 and vxlan-5 (a VXLAN device on underlay ul0), br1
// with vxlan-6 (no underlay device given), and vxlan-7 in no bridge.
const root = mkdtempSync(join(tmpdir(), 'sbt-overlay-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function dev(name: string, ifindex: number, o: { lower?: string; master?: string; devtype?: string } = {}): void {
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(join(root, name, 'ifindex'), `${ifindex}\n`);
  writeFileSync(join(root, name, 'uevent'), `INTERFACE=${name}\nIFINDEX=${ifindex}\n${o.devtype ? `DEVTYPE=${o.devtype}\n` : ''}`);
  if (o.lower) {
    symlinkSync(join(root, o.lower), join(root, name, `lower_${o.lower}`));
    symlinkSync(join(root, name), join(root, o.lower, `upper_${name}`));
  }
  if (o.master) {
    symlinkSync(join(root, o.master), join(root, name, 'master'));
    symlinkSync(join(root, o.master), join(root, name, `upper_${o.master}`));
  }
}
dev('br0', 2, { devtype: 'bridge' });
dev('br1', 3, { devtype: 'bridge' });
dev('ul0', 4);
dev('up1', 5, { master: 'br0' });
dev('tap0', 6, { master: 'br0' });
dev('vxlan-5', 7, { master: 'br0', lower: 'ul0', devtype: 'vxlan' });
dev('vxlan-6', 8, { master: 'br1', devtype: 'vxlan' });
dev('vxlan-7', 9, { lower: 'ul0', devtype: 'vxlan' });

const VX5: OverlayInfo = { kind: 'vxlan', underlay: 'ul0' };

describe('a VXLAN bridge port from sysfs', () => {
  it('is listed with its underlay device; other ports, and a VXLAN device in no bridge, are not tunnels', () => {
    const byName = new Map(listInterfaces(root).map((p) => [p.name, p]));
    expect(byName.get('vxlan-5')).toMatchObject({ bridge: 'br0', overlay: VX5 });
    expect(byName.get('vxlan-6')).toMatchObject({ bridge: 'br1', overlay: { kind: 'vxlan', underlay: null } });
    for (const n of ['up1', 'tap0', 'ul0', 'br0', 'vxlan-7']) expect(byName.get(n)!.overlay).toBeUndefined();
    // Not read as a macvlan device either (it has one lower link and no master): it says DEVTYPE.
    expect(byName.get('vxlan-7')).toMatchObject({ bridge: null });
    expect(byName.get('vxlan-7')!.macvlan).toBeUndefined();
  });

  it('is read once per interface: a name now on another interface is read again', () => {
    expect(overlayOf('tap0', 6, root)).toBeNull();
    // tap0 recreated as a VXLAN device under the same name (a new ifindex).
    writeFileSync(join(root, 'tap0', 'uevent'), 'INTERFACE=tap0\nIFINDEX=16\nDEVTYPE=vxlan\n');
    expect(overlayOf('tap0', 6, root)).toBeNull(); // the same interface: remembered
    expect(overlayOf('tap0', 16, root)).toEqual({ kind: 'vxlan', underlay: null });
    writeFileSync(join(root, 'tap0', 'uevent'), 'INTERFACE=tap0\nIFINDEX=6\n');
    expect(overlayOf('gone0', 99, root)).toBeNull();
    expect(overlayOf('bad/name', 1, root)).toBeNull();
  });

  it('is stamped on its port policy by the listing (withOverlays); a map without tunnels is kept as is', () => {
    const ports = testPorts({ up1: 'uplink', 'vxlan-5': 'uplink' });
    const infos = listInterfaces(root, (n) => ports.has(n));
    const out = withOverlays(ports, infos);
    expect(out.get('vxlan-5')!.overlay).toEqual(VX5);
    expect(out.get('up1')!.overlay).toBeUndefined();
    expect(ports.get('vxlan-5')!.overlay).toBeUndefined(); // a copy, not a change
    const plain = testPorts({ up1: 'uplink', tap0: 'vm' });
    expect(withOverlays(plain, listInterfaces(root, (n) => plain.has(n)))).toBe(plain);
  });
});

describe("a VXLAN device's own FDB in `bridge fdb` lines", () => {
  // As the lab printed them in a storm through vx0 (bridge fdb show br br0, session 18): the
  // bridge's entry for the circling frame's source MAC, and the VXLAN device's own (self) entry
  // for the same MAC with its remote VTEP, and the device's flood-list entry.
  it('reads the bridge\'s entry as a move candidate and ignores the tunnel\'s own entries (no master)', () => {
    expect(parseFdbLine('0a:6c:7a:49:70:57 dev vx0 master br0 ')).toEqual({ mac: '0a:6c:7a:49:70:57', dev: 'vx0', master: 'br0', deleted: false });
    expect(parseFdbLine('0a:6c:7a:49:70:57 dev vx0 dst 10.99.0.2 self ')).toBeNull();
    expect(parseFdbLine('00:00:00:00:00:00 dev vx0 dst 10.99.0.2 via ul0 self permanent')).toBeNull();
  });
});

const policy = testPolicy();
const { loop } = verdictsFor(policy);

/** up1 and the tunnels of one uplink rule (equal ranks), vm1, mgmt0; tunnels stamped as a listing does. */
function ports(o: { joined?: Record<string, number>; unnamed?: string[] } = {}): Map<string, PortPolicy> {
  const out = testPorts({ up1: { role: 'uplink', rule: 0 }, 'vxlan-5': { role: 'uplink', rule: 0 }, 'vxlan-6': { role: 'uplink', rule: 0 }, vm1: 'vm', mgmt0: 'mgmt' }, policy);
  for (const t of ['vxlan-5', 'vxlan-6']) out.set(t, { ...out.get(t)!, overlay: t === 'vxlan-5' ? VX5 : { kind: 'vxlan', underlay: null } });
  for (const [n, ms] of Object.entries(o.joined ?? {})) out.set(n, { ...out.get(n)!, joinedNs: T0 + ms * 1e6 });
  for (const n of o.unnamed ?? []) out.set(n, { ...out.get(n)!, observed: true, protected: true, shutRank: Infinity });
  return out;
}

describe('a loop through a tunnel port and a physical port of one bridge', () => {
  it('cuts the tunnel (vxlan-5), not the uplink that ranks first by name, and says why', () => {
    const d = breakerDriver(ports(), policy);
    const out = d.at(10, { verdicts: [loop(['up1', 'vxlan-5'])] });
    expect(out.commands).toEqual([
      {
        kind: 'link-down',
        port: 'vxlan-5',
        reason:
          'loop on br0: shut vxlan-5 (vxlan-5 is a VXLAN tunnel port (its underlay ul0 is no bridge port and stays up): a loop through it and up1 means the tunnel joins a segment that port already reaches, so the tunnel goes and the host keeps its own wire; first of vxlan-5,up1 by shut order, tunnels first)',
      },
    ]);
    expect(d.at(12, { results: [result('link-down', 'vxlan-5')] }).events).toMatchObject([{ event: 'trip', port: 'vxlan-5' }]);
  });

  it('a tunnel without an underlay device says so without naming one', () => {
    const out = breakerDriver(ports(), policy).at(10, { verdicts: [loop(['up1', 'vxlan-6'], 'br1')] });
    expect(out.commands[0]!.port).toBe('vxlan-6');
    expect(out.commands[0]!.reason).toContain('vxlan-6 is a VXLAN tunnel port (its underlay is no bridge port and stays up)');
  });

  it('a recent joiner still goes first: the uplink just plugged in closed the loop', () => {
    const out = breakerDriver(ports({ joined: { up1: 0 } }), policy).at(20, { verdicts: [loop(['up1', 'vxlan-5'])] });
    expect(out.commands[0]!.port).toBe('up1');
    expect(out.commands[0]!.reason).toContain('first of up1,vxlan-5 by shut order, recent joiners first');
  });

  it('never moves a tunnel ahead of another role: a VM port in the loop is cut first, the tunnel next', () => {
    const d = breakerDriver(ports(), policy);
    const out = d.at(5, { verdicts: [loop(['up1', 'vxlan-5', 'vm1'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'vm1', reason: 'loop on br0: shut vm1 (first of vm1,vxlan-5,up1 by shut order)' }]);
    expect(d.at(6, { results: [result('link-down', 'vm1', false)] }).commands.map((c) => c.port)).toEqual(['vxlan-5']);
  });

  it('two tunnels and no physical port: shut order and name decide, with the plain reason', () => {
    const out = breakerDriver(ports(), policy).at(5, { verdicts: [loop(['vxlan-6', 'vxlan-5'])] });
    expect(out.commands).toEqual([{ kind: 'link-down', port: 'vxlan-5', reason: 'loop on br0: shut vxlan-5 (first of vxlan-5,vxlan-6 by shut order)' }]);
  });

  it('a flood on the underlay NIC of a watched tunnel (a multicast underlay) is reported, never cut, whatever its role', () => {
    const p = ports();
    p.set('ul0', { ...testPorts({ ul0: 'other' }, policy).get('ul0')! });
    const d = breakerDriver(p, policy);
    const out = d.at(5, { verdicts: [verdictsFor(policy).flood('ul0')] });
    expect(out.commands).toEqual([]);
    expect(out.events).toMatchObject([{ event: 'flood-observed', port: 'ul0', reason: expect.stringContaining('flood on ul0, the underlay of vxlan-5 (VXLAN)') }]);
    // A NIC that carries no tunnel is still cut as a flooding `other` port.
    const q = ports();
    q.set('eth9', { ...testPorts({ eth9: 'other' }, policy).get('eth9')! });
    expect(breakerDriver(q, policy).at(5, { verdicts: [verdictsFor(policy).flood('eth9')] }).commands.map((c) => c.port)).toEqual(['eth9']);
  });

  it('a tunnel the policy does not name is never cut: the uplink is, and the note says the unnamed port is a tunnel', () => {
    const out = breakerDriver(ports({ unnamed: ['vxlan-5'] }), policy).at(5, { verdicts: [loop(['up1', 'vxlan-5'])] });
    expect(out.commands[0]!.port).toBe('up1');
    expect(out.commands[0]!.reason).toContain('the loop runs through vxlan-5 (vxlan-5: VXLAN tunnel port), which is not named by the policy, so not touched: up1 was shut instead');
  });
});
