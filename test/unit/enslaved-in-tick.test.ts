import { describe, expect, it } from 'vitest';
import { createUnbridgedMoves, createWatchedPorts, enslavedSinceListed } from '../../agent/daemon/ports.js';
import { createLocalSource } from '../../agent/sources/local.js';
import { testPorts } from '../../agent/testing/policy.js';
import type { Counters, CounterReader, TickFrame, TickSource } from '../../agent/types.js';

// A port plugged into a bridge whose loop storms before the link monitor's line arrives: the
// local source says a port listed without a bridge carries flood traffic, the daemon asks sysfs
// whether it has a master now and lists the ports again inside the tick, and the rates already
// taken in that tick count for the bridge (issue 11, kvm-hotplug with the monitor late).

function reader(values: Map<string, Partial<Counters>>): CounterReader {
  return { id: 'fake', watch() {}, read: (out) => out.forEach((c, n) => Object.assign(c, values.get(n) ?? {})), close() {} };
}
const zero = { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: 0, rxMulticast: 0 };
const hot = { rxPackets: 100, txPackets: 100, rxBytes: 6400, rxBroadcast: 100, rxMulticast: 0 };

describe('a flood on a port listed without a bridge', () => {
  it('is said by the local source (unbridgedWarm), only for an unbridged port, and a re-listing gives this tick\'s rates the bridge', () => {
    const values = new Map<string, Partial<Counters>>([
      ['up1', { ...zero }],
      ['up2', { ...zero }],
    ]);
    const local = createLocalSource([reader(values)], 0);
    const pp = testPorts({ up1: 'uplink', up2: 'uplink' });
    local.watch([{ name: 'up1', ifindex: 2, bridge: 'br0' }, { name: 'up2', ifindex: 3, bridge: null }], pp);
    const f: TickFrame = { tNs: 1e6, fdbMoves: [], warm: false };
    local.collect(f);
    // 10 ms later: up1 alone floods (10k pps, over clearPps 5000): bridged, so not said.
    values.set('up1', { ...hot });
    f.tNs = 11e6;
    local.collect(f);
    expect(f.warm).toBe(true);
    expect(local.unbridgedWarm()).toBe(false);
    // up2 floods too, still listed without a bridge.
    values.set('up1', { ...hot, rxPackets: 200, txPackets: 200, rxBroadcast: 200 });
    values.set('up2', { ...hot });
    f.tNs = 21e6;
    local.collect(f);
    expect(local.unbridgedWarm()).toBe(true);
    const r = local.lastRates('up2')!;
    expect(r.bridge).toBeNull();
    // Listed again inside the tick: the same rates object, now on br0, is what the detector reads.
    local.watch([{ name: 'up1', ifindex: 2, bridge: 'br0' }, { name: 'up2', ifindex: 3, bridge: 'br0' }], pp);
    expect(local.rates()[1]).toBe(r);
    expect(r.bridge).toBe('br0');
    expect(r.floodPps).toBeCloseTo(10_000, 6);
    // Quiet again: the flag is per collect.
    f.tNs = 31e6;
    local.collect(f);
    expect(local.unbridgedWarm()).toBe(false);
  });

  it('enslavedSinceListed: true only when a port listed without a bridge has a master now', () => {
    const infos = [
      { name: 'up1', ifindex: 2, bridge: 'br0' },
      { name: 'up2', ifindex: 3, bridge: null },
    ];
    expect(enslavedSinceListed(infos, (n) => (n === 'up2' ? 'br0' : null))).toBe(true);
    expect(enslavedSinceListed(infos, (n) => (n === 'up1' ? 'br0' : null))).toBe(false);
    expect(enslavedSinceListed(infos, () => null)).toBe(false);
  });

  it('createWatchedPorts calls afterCollect after each source, before the next one collects', () => {
    const order: string[] = [];
    const src = (id: string): TickSource => ({ id, ports: () => new Map(), rates: () => [], fresh: () => true, collect: () => void order.push(`collect ${id}`), consume() {}, close() {} });
    const w = createWatchedPorts(() => 0, (s, f) => order.push(`after ${s.id} ${f.tNs}`));
    w.add(src('local'));
    w.add(src('fdb'));
    w.collect({ tNs: 1, fdbMoves: [], warm: false });
    expect(order).toEqual(['collect local', 'after local 1', 'collect fdb', 'after fdb 1']);
  });
});

describe('moves that may tell of an enslaved port', () => {
  it('only a move naming a port listed without a bridge asks for the master check; the names are kept per listing', () => {
    const check = createUnbridgedMoves();
    const infos = [
      { name: 'up1', ifindex: 2, bridge: 'br0' },
      { name: 'up2', ifindex: 3, bridge: null },
    ];
    const mv = (port: string) => ({ tNs: 1, bridge: 'br0', mac: '02:00:00:00:00:01', port });
    expect(check([], infos)).toBe(false);
    expect(check([mv('up1'), mv('up1')], infos)).toBe(false); // an ordinary storm on the bridge
    expect(check([mv('up1'), mv('up2')], infos)).toBe(true); // the monitor names up2 on br0
    const relisted = [infos[0]!, { ...infos[1]!, bridge: 'br0' }];
    expect(check([mv('up2')], relisted)).toBe(false);
  });
});
