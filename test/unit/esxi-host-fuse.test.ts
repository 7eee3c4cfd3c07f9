// Pure parts of the daemon's fuse: the plan made from policy, inventory and the streamed items;
// a fuse's cut as the result of the agent's own vnic-disconnect (what the breaker journals and a
// restore needs); the fuse's samples as rates; a reported cut in the breaker. The fuse on a host
// and the daemon arming it are proven in test/integration/esxi-fuse-agent.test.ts.
import { describe, expect, it } from 'vitest';
import { watchedPorts, streamItems } from '../../agent/esxi/ports.js';
import { itemKey } from '../../agent/esxi/stream.js';
import { fuseCutResult, fuseEndedMidCut, fusePlanFor, fuseReportReason } from '../../agent/esxi/host-fuse.js';
import { fuseWaits } from '../../agent/esxi/fuse-waits.js';
import { lateness } from '../../agent/esxi/fuse/lateness.js';
import { hostRates } from '../../agent/esxi/host-rates.js';
import type { EsxInventory } from '../../agent/esxi/inventory.js';
import type { FuseCut } from '../../agent/esxi/fuse/lines.js';
import type { EsxiHostPolicy } from '../../agent/types.js';
import { breakerStep, initialBreakerState, portStates } from '../../agent/breaker/state.js';
import { testPolicy } from '../../agent/testing/policy.js';

const host: EsxiHostPolicy = {
  name: 'esx1', address: '192.0.2.21', port: 22, user: 'root', identityFile: '/k', knownHostsFile: '/kh',
  sampleMs: 100, staleMs: 1000, connectTimeoutMs: 3000, commandTimeoutMs: 5000, counters: 'vsish',
  fuse: 'armed', fuseSampleMs: 15, fuseLeaseMs: 10000, fuseBudget: 2,
  vmnics: [{ name: 'vmnic0', role: 'uplink', protected: false }],
  portgroups: ['VM Network', 'Management Network'], protectedPortgroups: ['Management Network'], watchBridgingVms: true,
  actions: ['vnic-disconnect', 'nic-down'], quarantineVlan: null, thresholds: { holdSamples: 3, floodPps: 4000 }, line: 1,
};
const nic = (name: string) => ({ name, pci: '0000:00:00.0', driver: 'x', adminUp: true, linkUp: true, speedMbps: 1000, duplex: 'Full', mac: null, mtu: 1500, description: '' });
const pg = (name: string) => ({ name, vswitch: 'vSwitch0', activeClients: 1, vlanId: 0, unusable: null, security: null, failover: null });
const vnic = (portId: number, mac: string, portgroup: string, deviceKey: number | null) => ({ portId, mac, portgroup, vswitch: 'vSwitch0', teamUplink: 'vmnic0', deviceKey, connected: true });
const inv: EsxInventory = {
  host: 'esx1',
  nics: [nic('vmnic0')],
  vswitches: [{ name: 'vSwitch0', class: null, numPorts: null, usedPorts: null, configuredPorts: null, mtu: 1500, cdpStatus: null, beaconEnabled: null, beaconInterval: null, beaconThreshold: null, beaconRequiredBy: [], uplinks: ['vmnic0'], portgroups: ['VM Network'], extra: {} }],
  portgroups: [pg('VM Network'), pg('Management Network')],
  vms: [
    { name: 'web', worldId: '99', vmid: '3', nics: [vnic(33554430, '00:0c:29:00:00:0a', 'VM Network', 4000)] },
    { name: 'vmA', worldId: '100', vmid: '7', nics: [vnic(33554440, '00:0c:29:5b:a0:00', 'VM Network', 4000), vnic(33554441, '00:0c:29:5b:a0:01', 'VM Network', 4001)] },
    { name: 'vcsa', worldId: '101', vmid: '8', nics: [vnic(33554442, '00:0c:29:00:00:01', 'Management Network', 4000)] },
    { name: 'db', worldId: '102', vmid: null, nics: [vnic(33554443, '00:0c:29:00:00:02', 'VM Network', null)] },
  ],
  blockGuestBpdu: null,
  readAtMs: 0,
};
const policy = testPolicy();
const watched = watchedPorts(policy, host, inv).ports;
const items = streamItems(host, watched);

describe('the fuse plan the daemon arms', () => {
  it('watches exactly the streamed items in their order; cuts the bridging VM first; never a protected port group or a vNIC without vmid/key', () => {
    const plan = fusePlanFor(policy, host, inv, watched, items);
    expect(plan.watch.map((w) => itemKey(w.kind === 'pnic' ? 'nic' : 'port', w.id))).toEqual(items.map((i) => itemKey(i.kind, i.id)));
    expect(plan.cutList.map((c) => [c.port, c.argv.join(' ')])).toEqual([
      ['esx1/vnic-000c295ba000', 'vim-cmd vmsvc/device.connection 7 4000 0'],
      ['esx1/vnic-000c295ba001', 'vim-cmd vmsvc/device.connection 7 4001 0'],
      ['esx1/vnic-000c2900000a', 'vim-cmd vmsvc/device.connection 3 4000 0'],
    ]);
    expect(plan).toMatchObject({ sampleMs: 15, burstMs: 5, leaseMs: 10000, pps: 4000, hold: 3, minHotPorts: 2, budget: 2, dryRun: false, protectedPortgroups: ['Management Network'] });
    expect(fusePlanFor(policy, { ...host, fuseSampleMs: 5 }, inv, watched, items).burstMs).toBe(5);
  });

  it('a policy that names no port group: the bridging VM is still read and cut first; an unnamed single-vNIC VM is not read at all', () => {
    // Unlike the Linux side's "observed, not named" bridge members (session 10), an ESXi vNIC the
    // policy does not name is read only when it is a bridging VM's (watchBridgingVms).
    const h = { ...host, portgroups: [] };
    const w = watchedPorts(policy, h, inv).ports;
    const plan = fusePlanFor(policy, h, inv, w, streamItems(h, w));
    expect(w.filter((p) => p.kind === 'port').map((p) => [p.name, p.watched])).toEqual([
      ['esx1/vnic-000c295ba000', 'bridging-vm'],
      ['esx1/vnic-000c295ba001', 'bridging-vm'],
    ]);
    expect(plan.cutList.map((c) => c.port)).toEqual(['esx1/vnic-000c295ba000', 'esx1/vnic-000c295ba001']);
    // Bridging VMs not watched either: only the vmnics are read, and the fuse has nothing to cut.
    const off = { ...h, watchBridgingVms: false };
    const wOff = watchedPorts(policy, off, inv).ports;
    expect(wOff.every((p) => p.kind === 'nic')).toBe(true);
    expect(fusePlanFor(policy, off, inv, wOff, streamItems(off, wOff)).cutList).toEqual([]);
  });

  it("a VM with a vNIC on a watched port group and one on another vSwitch: that one read as its peer, and the VM cut first, as a bridging one", () => {
    // web gets a second vNIC on vSwitch1 (its own uplink, vmnic1), whose port group the policy does not name.
    const vs1 = { ...inv.vswitches[0]!, name: 'vSwitch1', uplinks: ['vmnic1'], portgroups: ['VM Network1'] };
    const web = { ...inv.vms[0]!, nics: [...inv.vms[0]!.nics, { ...vnic(33554450, '00:0c:29:00:00:0b', 'VM Network1', 4001), vswitch: 'vSwitch1' }] };
    const i2: EsxInventory = { ...inv, nics: [nic('vmnic0'), nic('vmnic1')], vswitches: [inv.vswitches[0]!, vs1], portgroups: [...inv.portgroups, { ...pg('VM Network1'), vswitch: 'vSwitch1' }], vms: [web, ...inv.vms.slice(1)] };
    const w = watchedPorts(policy, host, i2).ports;
    expect(w.filter((p) => p.vm === 'web').map((p) => [p.name, p.watched])).toEqual([
      ['esx1/vnic-000c2900000a', 'portgroup'],
      ['esx1/vnic-000c2900000b', 'guest-peer'],
    ]);
    const plan = fusePlanFor(policy, host, i2, w, streamItems(host, w));
    // Bridging VMs (vmA in one L2, web through the switch) before the rest, in watch order.
    expect(plan.cutList.map((c) => c.port)).toEqual(['esx1/vnic-000c2900000a', 'esx1/vnic-000c2900000b', 'esx1/vnic-000c295ba000', 'esx1/vnic-000c295ba001']);
  });

  it('reports only when the policy says so: fuse stream or dry run; no vnic-disconnect allowed means budget 0', () => {
    expect(fusePlanFor(policy, { ...host, fuse: 'stream' }, inv, watched, items).dryRun).toBe(true);
    expect(fusePlanFor({ ...policy, dryRun: true }, host, inv, watched, items).dryRun).toBe(true);
    expect(fusePlanFor(policy, { ...host, actions: ['nic-down'] }, inv, watched, items).budget).toBe(0);
    expect(fusePlanFor(policy, { ...host, thresholds: { holdSamples: 1 } }, inv, watched, items).hold).toBe(2);
    expect(() => fusePlanFor(policy, host, null, watched, items)).toThrow(/no inventory/);
  });
});

const cut = (o: Partial<FuseCut> = {}): FuseCut => ({
  id: '4242-1.1', instance: '4242-1', version: 2, port: 'esx1/vnic-000c295ba000', portId: '33554440', hot: ['33554440', '33554441'],
  tUs: 5, wallMs: 6, dryRun: false, outcome: 'cut', argv: ['vim-cmd', 'vmsvc/device.connection', '7', '4000', '0'], rc: 0, ms: 120, ...o,
});

describe("a fuse's cut, as the agent journals it", () => {
  it('is the result of the agent\'s own vnic-disconnect: restorable from its target, by the fuse, acked by id', () => {
    const r = fuseCutResult('esx1', cut(), false, inv)!;
    expect(r).toMatchObject({ kind: 'link-down', port: 'esx1/vnic-000c295ba000', ok: true, via: 'esxi-fuse', durationMs: 120, esxi: { host: 'esx1', action: 'vnic-disconnect', target: 'vmA key 4000' } });
    expect(r.origin).toMatchObject({ by: 'fuse@esx1', id: '4242-1.1', reason: 'cut by the fuse on esx1 (hot ports 33554440, 33554441)' });
    expect(fuseCutResult('esx1', cut(), true, inv)!.origin!.reason).toMatch(/while the agent was not connected$/);
    // Not cuts, or not this host's ports: never results.
    for (const o of ['refused', 'dry-run', 'failed'] as const) expect(fuseCutResult('esx1', cut({ outcome: o }), false, inv)).toBeNull();
    expect(fuseCutResult('esx1', cut({ port: 'esx2/vnic-000c295ba000' }), false, inv)).toBeNull();
  });

  it('a dead fuse\'s replayed `cutting` (fuse v6) is a trip by the fuse, restorable, when the host shows the vNIC disconnected', () => {
    const r = fuseEndedMidCut('esx1', cut({ outcome: 'cutting', rc: undefined, ms: undefined }), inv)!;
    expect(r).toMatchObject({ kind: 'link-down', port: 'esx1/vnic-000c295ba000', ok: true, via: 'esxi-fuse', durationMs: 0, esxi: { target: 'vmA key 4000' } });
    expect(r.origin).toMatchObject({ by: 'fuse@esx1', id: '4242-1.1', reason: expect.stringMatching(/ended before its call's result; the host shows the vNIC disconnected$/) });
    expect(fuseReportReason('esx1', cut({ outcome: 'cutting' }))).toMatch(/started cutting esx1\/vnic-000c295ba000 and ended before its result/);
  });

  it('the breaker takes it as a trip by the fuse, with its reason, and journals it', () => {
    const r = fuseCutResult('esx1', cut(), false, inv)!;
    const ports = new Map(watched.map((p) => [p.name, p.policy]));
    const out = breakerStep(initialBreakerState(), { tNs: 1e9, wallMs: 0, verdicts: [], results: [r], operator: [] }, ports, policy);
    expect(portStates(out.state)).toEqual([expect.objectContaining({ port: 'esx1/vnic-000c295ba000', state: 'tripped', by: 'fuse@esx1', reason: 'cut by the fuse on esx1 (hot ports 33554440, 33554441)' })]);
    expect(out.events.map((e) => [e.event, e.port, e.by, (e.action as { origin?: { id: string } }).origin?.id])).toEqual([['trip', 'esx1/vnic-000c295ba000', 'fuse@esx1', '4242-1.1']]);
    expect(out.commands).toEqual([]);
  });
});

describe("the fuse's samples as rates", () => {
  it('six values per item fill the same rates as a block; "-" leaves the port unread', () => {
    const log = { info: () => undefined, warn: () => undefined };
    const rates = hostRates(host, log);
    rates.set(watched);
    const keys = items.map((i) => itemKey(i.kind, i.id));
    const v = new Float64Array(6 * keys.length);
    const fill = (k: number): void => {
      for (let i = 0; i < keys.length; i++) v.set([1000 * k, 900 * k, 800 * k, 100 * k, 50 * k, 5 * k], 6 * i);
      v.fill(NaN, 6 * (keys.length - 1)); // the last item unreadable
    };
    fill(1);
    rates.fuseSample(keys, v, 1e9);
    fill(2);
    rates.fuseSample(keys, v, 1.1e9);
    const byName = new Map(rates.rates().map((r) => [r.port, r]));
    const first = byName.get(watched.find((p) => p.id === items[0]!.id)!.name)!;
    expect(first.valid).toBe(true);
    expect(first.rxPps).toBeCloseTo(10_000);
    expect(first.floodPps).toBeCloseTo(9_000);
    expect(first.txFloodPps).toBeCloseTo(550);
    const last = byName.get(watched.find((p) => p.id === items.at(-1)!.id)!.name)!;
    expect(last.valid).toBe(false);
  });
});

describe('the ports as the detector sees them', () => {
  it('VM ports are esxiVm; every port of a vSwitch with a watched VM port is vmSwitch, none where only vmnics are watched', () => {
    const log = { info: () => undefined, warn: () => undefined };
    const rates = hostRates(host, log);
    rates.set(watched);
    const vmBridges = new Set(watched.filter((p) => p.kind === 'port').map((p) => p.bridge));
    expect(vmBridges.size).toBeGreaterThan(0);
    const kindOf = new Map(watched.map((p) => [p.name, p.kind]));
    for (const r of rates.rates()) {
      expect(r.esxiVm).toBe(kindOf.get(r.port) === 'port');
      expect(r.vmSwitch).toBe(vmBridges.has(r.bridge!));
    }
    expect(rates.rates().some((r) => r.vmSwitch && !r.esxiVm)).toBe(true); // a vmnic of such a vSwitch
    rates.set(watched.filter((p) => p.kind !== 'port'));
    expect(rates.rates().length).toBeGreaterThan(0);
    expect(rates.rates().map((r) => r.vmSwitch)).toEqual(rates.rates().map(() => false));
  });
});

describe("the agent's own link-down of a vNIC the armed fuse would cut", () => {
  it("waits for the fuse's report and takes it as its result; cuts itself when the fuse would not, or not in time", async () => {
    const w = fuseWaits();
    const plan = fusePlanFor(policy, host, inv, watched, items);
    const r = fuseCutResult('esx1', cut(), false, inv)!;
    // No fuse armed: no wait.
    expect(await w.cutOf('esx1/vnic-000c295ba000', 1000, 5000)).toBeNull();
    w.made(plan);
    expect(await w.cutOf('esx1/vnic-000c295ba000', 1000, 5000)).toBeNull(); // made, not yet held by the fuse
    w.held(true);
    const waiting = w.cutOf('esx1/vnic-000c295ba000', 5000, 5000);
    expect(w.took(r)).toBe(true);
    expect(await waiting).toBe(r);
    expect(w.took(r)).toBe(false); // nobody waits now: the report goes to the breaker itself
    // A port the fuse never cuts (protected port group), a dry-run or budget-0 fuse: no wait.
    expect(await w.cutOf('esx1/vnic-000c29000001', 1000, 5000)).toBeNull();
    w.made({ ...plan, dryRun: true });
    w.held(true);
    expect(await w.cutOf('esx1/vnic-000c295ba000', 1000, 5000)).toBeNull();
    w.made({ ...plan, budget: 0 });
    w.held(true);
    expect(await w.cutOf('esx1/vnic-000c295ba000', 1000, 5000)).toBeNull();
    // Armed, but no report within the wait: null (the agent cuts over SSH).
    w.made(plan);
    w.held(true);
    const t0 = Date.now();
    expect(await w.cutOf('esx1/vnic-000c295ba000', 50, 5000)).toBeNull();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    // Once the fuse says it is cutting the port, the wait lasts until its call ends (cuttingMs).
    const long = w.cutOf('esx1/vnic-000c295ba000', 50, 5000);
    w.cutting('esx1/vnic-000c295ba000', Date.now());
    await new Promise((r) => setTimeout(r, 120));
    expect(w.took(r)).toBe(true);
    expect(await long).toBe(r);
    // The fuse ends while a link-down waits: the wait ends at once.
    const ended = w.cutOf('esx1/vnic-000c295ba000', 5000, 5000);
    w.held(false);
    expect(await ended).toBeNull();
    // A fuse that said `cutting` and ended without its result: the next fuse's wait for that port
    // is a fresh one (ms), not the dead fuse's call deadline, long past.
    w.made(plan);
    w.held(true);
    w.cutting('esx1/vnic-000c295ba000', Date.now() - 10_000);
    w.held(false);
    w.made(plan);
    w.held(true);
    const fresh = w.cutOf('esx1/vnic-000c295ba000', 5000, 5000);
    await new Promise((r) => setTimeout(r, 30));
    expect(w.took(r)).toBe(true); // still waiting 30 ms later: it took the report
    expect(await fresh).toBe(r);
  });
});

describe('how late a fuse sample arrives (host clock vs agent clock)', () => {
  it('a backlog delivered in a burst is seconds late; steady delivery and clock drift are not', () => {
    const l = lateness();
    const HOST0 = 5e9; // µs: the host's clock has another origin
    // Every 15 ms, delivered 2 ms after it was read.
    let t = 0;
    for (let i = 0; i < 400; i++, t += 15) expect(l.of(HOST0 + t * 1e3, (t + 2) * 1e6)).toBeLessThan(1);
    // The agent's side stalls 1.5 s: 100 samples arrive at once, the oldest 1.5 s late.
    const lates: number[] = [];
    for (let i = 0; i < 100; i++) lates.push(l.of(HOST0 + (t + i * 15) * 1e3, (t + 1500 + 2) * 1e6));
    expect(lates[0]).toBeGreaterThan(1400);
    expect(lates.at(-1)!).toBeLessThan(20);
    // A host clock 50 ppm slow over 6 hours: the offset grows by 1.08 s, never taken for lateness.
    const d = lateness();
    for (let s = 0; s <= 6 * 3600; s += 1) expect(d.of(HOST0 + s * 1e6 * (1 - 50e-6), s * 1e9 + 2e6)).toBeLessThan(5);
  });

  it('samples that arrive together (a batch) are placed at their read times: rates are measured between those', () => {
    const l = lateness();
    const HOST0 = 7e9;
    // The fuse sends its first sample at once (2 ms), then batches: 15..105 ms arrive together at 108 ms.
    l.of(HOST0, 2e6);
    const at: number[] = [];
    for (let t = 15; t <= 105; t += 15) {
      expect(l.of(HOST0 + t * 1e3, 108e6)).toBeLessThan(100);
      at.push(l.readAt(HOST0 + t * 1e3));
    }
    // Each read time is 15 ms after the one before, whatever arrived when: 17, 32, ... 107 ms (plus
    // the 1 ms/s the fastest-delivery offset may rise: 0.1 ms here).
    expect(at.map((x) => Math.round(x / 1e6))).toEqual([17, 32, 47, 62, 77, 92, 107]);
  });
});
