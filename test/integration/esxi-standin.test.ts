// The stand-in ESXi host (scripts/lab/esxi) over a REAL OpenSSH sshd: every command runs from the
// agent's namespace through ssh, its output goes through the project's own parsers
// (agent/esxi/*.ts), and every number is checked against real traffic injected from the
// production host or against the real link/nft state of the lab. Actions (nic down, port group
// VLAN, vNIC disconnect) are checked on the kernel's links and by traffic, not by the stand-in's
// own word. One short storm (< 2 s, guarded by a timer and by teardown in afterAll).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAdvancedInt } from '../../agent/esxi/advanced.js';
import { kvLine } from '../../agent/esxi/kv.js';
import { parseNicList } from '../../agent/esxi/nic-list.js';
import { parseNicStats } from '../../agent/esxi/nic-stats.js';
import { parseFailoverPolicy, parseSecurityPolicy } from '../../agent/esxi/policy-get.js';
import { parsePortStats } from '../../agent/esxi/port-stats.js';
import { parsePortgroupList } from '../../agent/esxi/portgroup.js';
import type { Result } from '../../agent/esxi/result.js';
import { parseGetAllVms, parseVmDevices } from '../../agent/esxi/vim.js';
import { parseVmList } from '../../agent/esxi/vm-list.js';
import { parseVmPortList } from '../../agent/esxi/vm-port.js';
import { parseVsishPnicStats } from '../../agent/esxi/vsish.js';
import { parseVswitchList } from '../../agent/esxi/vswitch.js';
import { parseTable } from '../../agent/esxi/table.js';
import { run } from '../../scripts/lab/exec.js';
import { readInventory, writeInventory } from '../../scripts/lab/esxi/inventory.js';
import {
  buildEsxiLab,
  closeLoop,
  listNamespaces,
  openLoop,
  standinArgv,
  teardownEsxiLab,
  type EsxiLab,
} from '../../scripts/lab/esxi/lab.js';
import {
  openMaster,
  rotateHostKey,
  runCapture,
  sshArgv,
  sshRun,
  sshTarget,
  trustHostKey,
  type Master,
  type SshResult,
} from '../../scripts/lab/esxi/sshd.js';
import { inject } from '../../scripts/lab/traffic.js';

const PREFIX = 'sbx-';
const FIXTURES = fileURLToPath(new URL('../fixtures/esxcli/', import.meta.url));
// The storm test's loop is opened this long after it closed, whatever happens. 6 s: with one core
// busy one read over ssh took 1.7 s, so at 2 s the guard could open the loop between the reads.
const STORM_GUARD_MS = 6000;
const NS = 'esx';

let lab: EsxiLab;
let master: Master | undefined;

const log = (msg: string): void => console.log(`[esxi-standin] ${msg}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function must<T>(r: Result<T>, what: string): T {
  if (!r.ok) throw new Error(`${what}: parse failed: ${r.error}${r.line ? ` (line ${r.line})` : ''}`);
  return r.value;
}

/** One command over the open ssh master; fails the test unless it exits 0. */
async function esx(remote: string[]): Promise<string> {
  const r = await sshRun(lab, remote, { controlPath: master?.controlPath });
  if (r.code !== 0) throw new Error(`ssh ${remote.join(' ')} -> exit ${String(r.code)}: ${r.stderr.trim()}`);
  return r.stdout;
}

function esxRaw(remote: string[]): Promise<SshResult> {
  return sshRun(lab, remote, { controlPath: master?.controlPath });
}

interface LinkState {
  adminUp: boolean;
  operstate: string;
}

async function link(dev: string, where: keyof EsxiLab['ns'] = NS): Promise<LinkState> {
  const { stdout } = await run(['ip', '-n', lab.ns[where], '-j', 'link', 'show', 'dev', dev]);
  const row = (JSON.parse(stdout) as Array<{ flags: string[]; operstate: string }>)[0]!;
  return { adminUp: row.flags.includes('UP'), operstate: row.operstate };
}

/** Frames dev has received, read in its namespace (no ssh): proves a storm circles, cheaply. */
async function rxPackets(dev: string): Promise<number> {
  const { stdout } = await run(['ip', '-n', lab.ns[NS], '-s', '-j', 'link', 'show', 'dev', dev]);
  return (JSON.parse(stdout) as Array<{ stats64: { rx: { packets: number } } }>)[0]!.stats64.rx.packets;
}

async function waitOperstate(dev: string, want: string, ms = 2000): Promise<LinkState> {
  const end = Date.now() + ms;
  let s = await link(dev);
  while (s.operstate !== want && Date.now() < end) {
    await sleep(20);
    s = await link(dev);
  }
  return s;
}

const nicStats = async (nic: string) => must(parseNicStats(await esx(['esxcli', 'network', 'nic', 'stats', 'get', '-n', nic])), `nic stats ${nic}`);
const vsish = async (nic: string) => must(parseVsishPnicStats(await esx(['vsish', '-pe', 'get', `/net/pNics/${nic}/stats`])), `vsish ${nic}`);
const portStats = async (port: number) => must(parsePortStats(await esx(['esxcli', 'network', 'port', 'stats', 'get', '-p', String(port)])), `port stats ${port}`);
const pgList = async () => must(parsePortgroupList(await esx(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'list'])), 'portgroup list');

function vnic(dev: string): EsxiLab['vmNics'][number] {
  const n = lab.vmNics.find((x) => x.dev === dev);
  if (!n) throw new Error(`no vNIC ${dev}`);
  return n;
}

async function currentPortId(dev: string): Promise<number> {
  const inv = await readInventory(lab);
  const n = inv.vms.flatMap((v) => v.nics).find((x) => x.dev === dev);
  if (!n) throw new Error(`no vNIC ${dev} in inventory`);
  return n.portId;
}

beforeAll(async () => {
  lab = await buildEsxiLab(PREFIX);
  master = await openMaster(lab);
}, 60_000);

afterAll(async () => {
  await master?.close().catch(() => undefined);
  await teardownEsxiLab(PREFIX);
  await teardownEsxiLab(PREFIX); // idempotent
  expect(await listNamespaces(PREFIX)).toEqual([]);
  if (lab) expect(existsSync(lab.dir)).toBe(false);
}, 60_000);

describe('stand-in ESXi host over a real sshd', () => {
  it('remote PATH finds the stand-ins first', async () => {
    for (const tool of ['esxcli', 'vsish', 'vim-cmd']) {
      expect((await esx(['sh', '-c', `command -v ${tool}`])).trim()).toBe(join(lab.standinBin, tool));
    }
    const t = sshTarget(lab);
    expect(t).toMatchObject({ host: '192.168.254.1', port: 22, user: 'root' });
    expect(t.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    // The fingerprint is the one ssh-keygen computes for the served key.
    const kg = await run(['ssh-keygen', '-l', '-f', join(lab.dir, 'ssh_host_ed25519_key.pub')]);
    expect(kg.stdout).toContain(t.hostKeyFingerprint);
  });

  it('nic list, vswitch list and portgroup list parse and describe the real lab', async () => {
    const nics = must(parseNicList(await esx(['esxcli', 'network', 'nic', 'list'])), 'nic list');
    expect(nics.map((n) => n.name)).toEqual(['vmnic0', 'vmnic1']);
    for (const n of nics) {
      const { stdout } = await run(['ip', '-n', lab.ns.esx, '-j', 'link', 'show', 'dev', n.name]);
      const row = (JSON.parse(stdout) as Array<{ address: string; mtu: number }>)[0]!;
      expect(n).toMatchObject({ adminUp: true, linkUp: true, mac: row.address, mtu: row.mtu, speedMbps: 10000, driver: 'veth' });
    }
    const sw = must(parseVswitchList(await esx(['esxcli', 'network', 'vswitch', 'standard', 'list'])), 'vswitch list');
    expect(sw).toHaveLength(1);
    expect(sw[0]).toMatchObject({ name: 'vSwitch0', uplinks: ['vmnic0', 'vmnic1'], portgroups: ['VM Network', 'Management Network'], mtu: 1500 });
    // 5 real bridge ports (2 uplinks, 3 vNICs) + vmk0.
    expect(sw[0]!.usedPorts).toBe(6);
    const pgs = await pgList();
    expect(pgs.map((p) => [p.name, p.vswitch, p.activeClients, p.vlanId])).toEqual([
      ['Management Network', 'vSwitch0', 1, 0],
      ['VM Network', 'vSwitch0', 3, 0],
    ]);
  });

  it('counters move with real broadcasts from the production host', async () => {
    const N = 500;
    const vm1Port = await currentPortId('vn10');
    const [s0, v1, p0] = [await nicStats('vmnic0'), await vsish('vmnic1'), await portStats(vm1Port)];
    const sent = await inject(lab, 'prod', 'eth0', { count: N, kind: 'broadcast' });
    expect(sent.sent).toBe(N);
    await sleep(100);
    const [s0b, v1b, p0b] = [await nicStats('vmnic0'), await vsish('vmnic1'), await portStats(vm1Port)];
    const d = {
      vmnic0Rx: s0b.rxBroadcast - s0.rxBroadcast,
      vmnic0RxPkts: s0b.rxPackets - s0.rxPackets,
      vmnic0Tx: s0b.txBroadcast - s0.txBroadcast,
      vmnic1Rx: v1b.rxBroadcast - v1.rxBroadcast,
      vm1Sent: p0b.txBroadcast - p0.txBroadcast,
      vm1Recv: p0b.rxBroadcast - p0.rxBroadcast,
    };
    log(`${N} broadcasts from prod: ${JSON.stringify(d)}`);
    // The physical switch floods each frame to both uplinks; the lab is quiet otherwise.
    expect(d.vmnic0Rx).toBe(N);
    expect(d.vmnic1Rx).toBe(N);
    expect(d.vmnic0RxPkts).toBe(N);
    // An ESXi vSwitch never forwards uplink to uplink (isolated bridge ports).
    expect(d.vmnic0Tx).toBe(0);
    // vm1 gets one copy per uplink; the vmA ports have no carrier while the loop is open.
    expect(d.vm1Sent).toBe(2 * N);
    expect(d.vm1Recv).toBe(0);
    expect(p0b.portId).toBe(vm1Port);
  });

  it('driverReportsBroadcast=false prints broadcast 0 while packets still move', async () => {
    const inv = await readInventory(lab);
    await writeInventory(lab, { ...inv, driverReportsBroadcast: false });
    try {
      const a = await nicStats('vmnic0');
      await inject(lab, 'prod', 'eth0', { count: 100 });
      await sleep(50);
      const b = await nicStats('vmnic0');
      const v = await vsish('vmnic0');
      expect(b.rxPackets - a.rxPackets).toBe(100);
      expect([b.rxBroadcast, b.txBroadcast, v.rxBroadcast, v.txBroadcast]).toEqual([0, 0, 0, 0]);
    } finally {
      await writeInventory(lab, inv);
    }
    expect((await nicStats('vmnic0')).rxBroadcast).toBeGreaterThan(0);
  });

  it('vm list, vm port list and vim-cmd agree with each other and the lab', async () => {
    const vms = must(parseVmList(await esx(['esxcli', 'network', 'vm', 'list'])), 'vm list');
    expect(vms.map((v) => [v.name, v.numPorts, v.networks])).toEqual([
      ['vmA', 2, ['VM Network', 'VM Network']],
      ['vm1', 1, ['VM Network']],
    ]);
    const vmA = vms.find((v) => v.name === 'vmA')!;
    const ports = must(parseVmPortList(await esx(['esxcli', 'network', 'vm', 'port', 'list', '-w', vmA.worldId])), 'vm port list');
    expect(ports.map((p) => [p.portId, p.mac, p.portgroup, p.vswitch])).toEqual([
      [vnic('vnA0').portId, vnic('vnA0').mac, 'VM Network', 'vSwitch0'],
      [vnic('vnA1').portId, vnic('vnA1').mac, 'VM Network', 'vSwitch0'],
    ]);
    for (const p of ports) expect(['vmnic0', 'vmnic1']).toContain(p.teamUplink);
    // The vNIC MACs are the guests' real interface addresses.
    const { stdout } = await run(['ip', '-n', lab.ns.vmA, '-j', 'link', 'show', 'dev', 'eth1']);
    expect((JSON.parse(stdout) as Array<{ address: string }>)[0]!.address).toBe(vnic('vnA1').mac);

    const all = must(parseGetAllVms(await esx(['vim-cmd', 'vmsvc/getallvms'])), 'getallvms');
    expect(all.map((v) => [v.vmid, v.name, v.file, v.version])).toEqual([
      ['1', 'vmA', '[datastore1] vmA/vmA.vmx', 'vmx-19'],
      ['2', 'vm1', '[datastore1] vm1/vm1.vmx', 'vmx-19'],
    ]);
    const devA = must(parseVmDevices(await esx(['vim-cmd', 'vmsvc/device.getdevices', '1'])), 'getdevices 1');
    expect(devA.map((d) => [d.key, d.type, d.portgroup, d.mac, d.connected])).toEqual([
      [4000, 'VirtualVmxnet3', 'VM Network', vnic('vnA0').mac, true],
      [4001, 'VirtualVmxnet3', 'VM Network', vnic('vnA1').mac, true],
    ]);
    const dev1 = must(parseVmDevices(await esx(['vim-cmd', 'vmsvc/device.getdevices', '2'])), 'getdevices 2');
    expect(dev1.map((d) => [d.key, d.type, d.mac, d.connected])).toEqual([[4000, 'VirtualE1000', vnic('vn10').mac, true]]);
  });

  it('policy security/failover get and advanced list parse and follow the inventory', async () => {
    const sec = must(parseSecurityPolicy(await esx(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'security', 'get', '-p', 'VM Network'])), 'security');
    expect(sec).toMatchObject({ allowPromiscuous: false, allowMacChanges: true, allowForgedTransmits: true });
    const fo = must(parseFailoverPolicy(await esx(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'failover', 'get', '-p', 'VM Network'])), 'failover');
    expect(fo).toMatchObject({ activeUplinks: ['vmnic0', 'vmnic1'], standbyUplinks: [], unusedUplinks: [], loadBalancing: 'srcport' });
    const bpdu = async () => must(parseAdvancedInt(await esx(['esxcli', 'system', 'settings', 'advanced', 'list', '-o', '/Net/BlockGuestBPDU']), '/Net/BlockGuestBPDU'), 'advanced');
    expect((await bpdu()).intValue).toBe(0);
    const inv = await readInventory(lab);
    const pg = inv.portgroups.find((p) => p.name === 'VM Network')!;
    await writeInventory(lab, {
      ...inv,
      advanced: { '/Net/BlockGuestBPDU': 1 },
      portgroups: inv.portgroups.map((p) => (p === pg ? { ...p, activeUplinks: ['vmnic1'], standbyUplinks: ['vmnic0'] } : p)),
    });
    try {
      expect((await bpdu()).intValue).toBe(1);
      const fo2 = must(parseFailoverPolicy(await esx(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'failover', 'get', '-p', 'VM Network'])), 'failover');
      expect(fo2).toMatchObject({ activeUplinks: ['vmnic1'], standbyUplinks: ['vmnic0'] });
      const ports = must(parseVmPortList(await esx(['esxcli', 'network', 'vm', 'port', 'list', '-w', '2101002'])), 'vm port list');
      expect(ports[0]!.teamUplink).toBe('vmnic1');
    } finally {
      await writeInventory(lab, inv);
    }
  });

  it('nic down really downs vmnic1, nic up brings it back', async () => {
    expect(await link('vmnic1')).toEqual({ adminUp: true, operstate: 'UP' });
    try {
      expect(await esx(['esxcli', 'network', 'nic', 'down', '-n', 'vmnic1'])).toBe('');
      expect(await link('vmnic1')).toEqual({ adminUp: false, operstate: 'DOWN' });
      // The switch side loses carrier, as a real switch port would.
      expect((await link('swe1', 'sw')).operstate).not.toBe('UP');
      const down = must(parseNicList(await esx(['esxcli', 'network', 'nic', 'list'])), 'nic list').find((n) => n.name === 'vmnic1')!;
      expect(down).toMatchObject({ adminUp: false, linkUp: false, speedMbps: 0 });
      // Traffic proves it: nothing arrives on vmnic1 while it is down.
      const a = await nicStats('vmnic1');
      await inject(lab, 'prod', 'eth0', { count: 50 });
      await sleep(50);
      expect((await nicStats('vmnic1')).rxPackets - a.rxPackets).toBe(0);
    } catch (e) {
      // vmnic1 left down would fail every later case that counts both uplinks (the port group's
      // 200 copies, the storm's vmnic1 rate): one failure here, not four.
      await run(standinArgv(lab, 'esxcli', ['network', 'nic', 'up', '-n', 'vmnic1'])).catch(() => undefined);
      throw e;
    }

    expect(await esx(['esxcli', 'network', 'nic', 'up', '-n', 'vmnic1'])).toBe('');
    expect(await waitOperstate('vmnic1', 'UP')).toEqual({ adminUp: true, operstate: 'UP' });
    const up = must(parseNicList(await esx(['esxcli', 'network', 'nic', 'list'])), 'nic list').find((n) => n.name === 'vmnic1')!;
    expect(up).toMatchObject({ adminUp: true, linkUp: true, speedMbps: 10000 });
  });

  it('portgroup set --vlan-id 999 cuts VM Network off the uplinks, 0 restores it', async () => {
    const pg = ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'VM Network', '--vlan-id'];
    const vm1Port = await currentPortId('vn10');
    const deliver = async (): Promise<number> => {
      const a = await portStats(vm1Port);
      await inject(lab, 'prod', 'eth0', { count: 100 });
      await sleep(50);
      return (await portStats(vm1Port)).txBroadcast - a.txBroadcast;
    };
    expect(await deliver()).toBe(200);
    try {
      expect(await esx([...pg, '999'])).toBe('');
      expect((await pgList()).find((p) => p.name === 'VM Network')!.vlanId).toBe(999);
      const rules = (await run(['ip', 'netns', 'exec', lab.ns.esx, 'nft', 'list', 'chain', 'bridge', 'stormbreaker_vlan', 'forward'])).stdout;
      for (const dev of ['vnA0', 'vnA1', 'vn10']) expect(rules).toContain(`oifname "${dev}"`);
      log(`VLAN 999 rules:\n${rules.trim()}`);
      // Real effect: prod's broadcasts still reach the uplinks but no longer the VM ports.
      const a0 = await nicStats('vmnic0');
      expect(await deliver()).toBe(0);
      expect((await nicStats('vmnic0')).rxBroadcast - a0.rxBroadcast).toBe(100);
      // ...and a VM's broadcasts reach its VLAN mates but no uplink.
      const [u0, u1] = [await nicStats('vmnic0'), await nicStats('vmnic1')];
      await inject(lab, 'vm1', 'eth0', { count: 30 });
      await sleep(50);
      expect((await nicStats('vmnic0')).txBroadcast - u0.txBroadcast).toBe(0);
      expect((await nicStats('vmnic1')).txBroadcast - u1.txBroadcast).toBe(0);
    } finally {
      expect(await esx([...pg, '0'])).toBe('');
    }
    expect((await pgList()).find((p) => p.name === 'VM Network')!.vlanId).toBe(0);
    expect(await deliver()).toBe(200);
    const u0 = await nicStats('vmnic0');
    await inject(lab, 'vm1', 'eth0', { count: 30 });
    await sleep(50);
    expect((await nicStats('vmnic0')).txBroadcast - u0.txBroadcast).toBe(30);
  });

  it('vim-cmd device.connection really disconnects and reconnects a vNIC', async () => {
    const before = await currentPortId('vn10');
    try {
      expect(await esx(['vim-cmd', 'vmsvc/device.connection', '2', '4000', '0'])).toBe('');
      expect((await link('vn10')).adminUp).toBe(false);
      expect((await link('eth0', 'vm1')).operstate).not.toBe('UP'); // the guest sees carrier loss
      const dev = must(parseVmDevices(await esx(['vim-cmd', 'vmsvc/device.getdevices', '2'])), 'getdevices');
      expect(dev[0]!.connected).toBe(false);
      expect(must(parseVmList(await esx(['esxcli', 'network', 'vm', 'list'])), 'vm list').find((v) => v.name === 'vm1')!.numPorts).toBe(0);
      expect(await esx(['esxcli', 'network', 'vm', 'port', 'list', '-w', '2101002'])).toBe('');
      expect((await esxRaw(['esxcli', 'network', 'port', 'stats', 'get', '-p', String(before)])).code).toBe(1);
      // No frame reaches the disconnected vNIC.
      const a = (await run(['ip', '-n', lab.ns.vm1, '-s', '-j', 'link', 'show', 'dev', 'eth0'])).stdout;
      await inject(lab, 'prod', 'eth0', { count: 20 });
      await sleep(50);
      expect((await run(['ip', '-n', lab.ns.vm1, '-s', '-j', 'link', 'show', 'dev', 'eth0'])).stdout).toBe(a);
    } catch (e) {
      // vm1's vNIC reconnected whatever failed above: no later case starts with vm1 cut off
      // (its ports and counters gone from every listing).
      await run(standinArgv(lab, 'vim-cmd', ['vmsvc/device.connection', '2', '4000', '1'])).catch(() => undefined);
      throw e;
    }

    expect(await esx(['vim-cmd', 'vmsvc/device.connection', '2', '4000', '1'])).toBe('');
    expect(await waitOperstate('vn10', 'UP')).toEqual({ adminUp: true, operstate: 'UP' });
    const after = await currentPortId('vn10');
    expect(after).not.toBe(before); // a reconnected vNIC gets a new port, as on ESXi
    const ports = must(parseVmPortList(await esx(['esxcli', 'network', 'vm', 'port', 'list', '-w', '2101002'])), 'vm port list');
    expect(ports.map((p) => p.portId)).toEqual([after]);
    expect(must(parseVmDevices(await esx(['vim-cmd', 'vmsvc/device.getdevices', '2'])), 'getdevices')[0]!.connected).toBe(true);
  });

  it('unknown names and bad arguments are refused with exit 1 and change nothing', async () => {
    const snapshot = async (): Promise<string> => {
      const inv = await readFile(join(lab.dir, 'inventory.json'), 'utf8');
      const links = (await run(['ip', '-n', lab.ns.esx, '-j', 'link', 'show'])).stdout;
      const linkState = (JSON.parse(links) as Array<{ ifname: string; flags: string[] }>).map((l) => [l.ifname, l.flags]);
      const vlan = (await run(['ip', 'netns', 'exec', lab.ns.esx, 'nft', 'list', 'table', 'bridge', 'stormbreaker_vlan'])).stdout;
      return JSON.stringify({ inv, linkState, vlan });
    };
    const before = await snapshot();
    const refused: string[][] = [
      ['esxcli', 'network', 'nic', 'down', '-n', 'vmnic7'],
      ['esxcli', 'network', 'nic', 'up', '-n', 'eth0'],
      ['esxcli', 'network', 'nic', 'down'],
      ['esxcli', 'network', 'nic', 'stats', 'get', '-n', 'vmnic9'],
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'No Such Network', '--vlan-id', '999'],
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'vm network', '--vlan-id', '999'],
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'VM Network', '--vlan-id', '4096'],
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'VM Network', '--vlan-id', '-1'],
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'security', 'get', '-p', 'Nope'],
      ['esxcli', 'network', 'vm', 'port', 'list', '-w', '1'],
      ['esxcli', 'network', 'port', 'stats', 'get', '-p', '1'],
      ['esxcli', 'system', 'settings', 'advanced', 'list', '-o', '/Net/Nope'],
      ['esxcli', 'network', 'nic', 'frobnicate'],
      ['esxcli', 'network', 'nic', 'list', '--bogus'],
      ['vsish', '-pe', 'get', '/net/pNics/vmnic9/stats'],
      ['vsish', '-pe', 'set', '/net/pNics/vmnic0/stats'],
      ['vim-cmd', 'vmsvc/device.connection', '99', '4000', '0'],
      ['vim-cmd', 'vmsvc/device.connection', '2', '4099', '0'],
      ['vim-cmd', 'vmsvc/device.connection', '2', '4000', '2'],
      ['vim-cmd', 'vmsvc/device.getdevices', '7'],
      ['vim-cmd', 'vmsvc/power.off', '1'],
    ];
    for (const argv of refused) {
      const r = await esxRaw(argv);
      expect({ argv, code: r.code, out: r.stdout }).toEqual({ argv, code: 1, out: '' });
      expect(r.stderr.trim().length).toBeGreaterThan(0);
    }
    expect(await snapshot()).toBe(before);
  });

  it('a VM bridging its two vNICs storms: rxbrdcast on vmnic0/vmnic1 climbs, read over ssh', async () => {
    // Both NICs are read in parallel (two sessions on the master). Under CPU load (the storm pegs a
    // core; other work may share the machine) a read can take a second, so the asserted rate is a
    // LOWER BOUND: the counter difference over the whole span from the start of the first read to
    // the end of the second. The midpoint estimate is logged next to it.
    const read = async () => {
      const t0 = nowMs();
      const [a, b] = await Promise.all([vsish('vmnic0'), vsish('vmnic1')]);
      return { t0, t1: nowMs(), v0: a.rxBroadcast, v1: b.rxBroadcast };
    };
    let tOpen = 0;
    const open = async (): Promise<void> => {
      await openLoop(lab);
      if (tOpen === 0) tOpen = nowMs();
    };
    let guard: NodeJS.Timeout | undefined;
    const rates = { vmnic0: 0, vmnic1: 0 };
    const tClose = nowMs();
    try {
      await closeLoop(lab);
      guard = setTimeout(() => void open().catch(() => undefined), STORM_GUARD_MS);
      await waitOperstate('vnA0', 'UP');
      await waitOperstate('vnA1', 'UP');
      // One frame starts the storm once both loop links forward. Under load a frame sent while a
      // link was still coming up passed once and no storm began (a clean-clone run with one core
      // busy read 0/s): inject again, at most 3 times, until vnA0 is seen receiving thousands.
      for (let i = 0; i < 3; i++) {
        const r0 = await rxPackets('vnA0');
        await inject(lab, 'prod', 'eth0', { count: 1 });
        await sleep(100);
        const got = (await rxPackets('vnA0')) - r0;
        log(`injection ${i + 1}: vnA0 received ${got} frames in 100 ms`);
        if (got > 100) break;
      }
      const a = await read();
      await sleep(300);
      const b = await read();
      const span = (b.t1 - a.t0) / 1000;
      const mid = ((b.t0 + b.t1) / 2 - (a.t0 + a.t1) / 2) / 1000;
      rates.vmnic0 = (b.v0 - a.v0) / span;
      rates.vmnic1 = (b.v1 - a.v1) / span;
      log(
        `storm: rxbrdcast vmnic0 >= ${rates.vmnic0.toFixed(0)}/s (midpoint ${((b.v0 - a.v0) / mid).toFixed(0)}/s), ` +
          `vmnic1 >= ${rates.vmnic1.toFixed(0)}/s (midpoint ${((b.v1 - a.v1) / mid).toFixed(0)}/s); ` +
          `reads took ${(a.t1 - a.t0).toFixed(0)} / ${(b.t1 - b.t0).toFixed(0)} ms`,
      );
    } finally {
      clearTimeout(guard);
      await open();
    }
    const stormMs = tOpen - tClose;
    log(`loop closed for ${stormMs.toFixed(0)} ms`);
    expect(stormMs).toBeLessThan(STORM_GUARD_MS + 300);
    // A loop, not its speed: one injected frame with the loop open adds 1; a loop adds thousands a
    // second. How fast it circles is the CPU's (69k/s idle; 5k/s lower bound, 8.8k/s midpoint, in
    // a clean-clone run with one core busy, where the old 10k/s bound failed).
    expect(rates.vmnic0).toBeGreaterThan(1_000);
    expect(rates.vmnic1).toBeGreaterThan(1_000);
    // Opening the loop ends it: nothing arrives any more.
    await sleep(200);
    const q0 = await vsish('vmnic0');
    await sleep(300);
    expect((await vsish('vmnic0')).rxBroadcast - q0.rxBroadcast).toBe(0);
  });

  it('cost of one stand-in call: over the ssh master and alone in the namespace', async () => {
    // 7 calls per median (15 until session 16: half the file's time with a core busy). The one
    // assertion compares two medians 2-4x apart in every CI run (107-215 vs 326-447 ms); the
    // other medians are only printed (bench-esxi is the measurement).
    const N = 7;
    const time = async (argv: string[]): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < N; i++) {
        const r = await runCapture(argv);
        if (r.code !== 0) throw new Error(`${argv.join(' ')} -> ${String(r.code)}: ${r.stderr}`);
        out.push(r.ms);
      }
      return out;
    };
    const cp = { controlPath: master!.controlPath };
    const m = {
      sshVsish: median(await time(sshArgv(lab, ['vsish', '-pe', 'get', '/net/pNics/vmnic0/stats'], cp))),
      sshNicStats: median(await time(sshArgv(lab, ['esxcli', 'network', 'nic', 'stats', 'get', '-n', 'vmnic0'], cp))),
      sshTrue: median(await time(sshArgv(lab, ['true'], cp))),
      aloneVsish: median(await time(standinArgv(lab, 'vsish', ['-pe', 'get', '/net/pNics/vmnic0/stats']))),
      aloneNicStats: median(await time(standinArgv(lab, 'esxcli', ['network', 'nic', 'stats', 'get', '-n', 'vmnic0']))),
      netnsExecTrue: median(await time(['ip', 'netns', 'exec', lab.ns.esx, 'true'])),
      sshNewConnection: median(await time(sshArgv(lab, ['vsish', '-pe', 'get', '/net/pNics/vmnic0/stats']))),
    };
    log(`median ms over ${N} calls: ${JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v.toFixed(1))])))}`);
    // Sanity, not a benchmark gate: a call over the master costs less than a new connection (a
    // handshake, ~4x here). Alone vs over the master is only reported: both run the same python
    // stand-in, and with one core busy 'alone' measured slower (182 vs 116 ms) in a clean-clone run.
    expect(m.sshVsish).toBeLessThan(m.sshNewConnection);
  }, 120_000);

  it('rotateHostKey makes a strict ssh fail with a changed host key', async () => {
    const before = sshTarget(lab).hostKeyFingerprint;
    try {
      const after = await rotateHostKey(lab);
      expect(after).not.toBe(before);
      const r = await sshRun(lab, ['true']); // new connection, pinned (old) known_hosts
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    } finally {
      // The new key trusted whatever failed above: no later ssh meets a changed key.
      await trustHostKey(lab);
    }
    expect((await sshRun(lab, ['true'])).code).toBe(0);
  });
});

// --- layouts ----------------------------------------------------------------------------------
// The stand-in's formatter (standin/esxi_standin/fmt.py) re-renders each capture from the capture's
// own cells; the result must equal the capture byte for byte. Fixtures whose layout contradicts the
// others are listed in README.md and left out here on purpose (nic-list_2vmnic and vm-list_unresolved:
// last column's dashes as wide as the header, not the values; vsish's int* keys; getallvms headers).

type Job =
  | { kind: 'table'; headers: string[]; rows: string[][]; numeric: string[] }
  | { kind: 'kv'; blocks: Array<{ title: string | null; pairs: Array<[string, string]> }>; keepSpace: boolean }
  | { kind: 'vsish'; pairs: Array<[string, string | number]> }
  | { kind: 'getallvms'; vms: Array<Record<string, string>> };

async function render(jobs: Job[]): Promise<string[]> {
  const r = await run(['python3', join(lab.standinBin, '..', 'render.py')], { input: JSON.stringify(jobs) });
  return JSON.parse(r.stdout) as string[];
}

const fixture = (name: string): Promise<string> => readFile(join(FIXTURES, name), 'utf8');
const trimEnd = (s: string): string => s.replace(/\n+$/, '');

function tableJob(text: string, numeric: string[]): Job {
  const t = must(parseTable(text), 'table');
  return { kind: 'table', headers: t.headers, rows: t.rows.map((r) => r.cells), numeric };
}

function kvJob(text: string, keepSpace: boolean): Job {
  const blocks: Array<{ title: string | null; pairs: Array<[string, string]> }> = [];
  let cur: (typeof blocks)[number] | null = null;
  for (const l of text.split('\n')) {
    if (l.trim() === '') {
      cur = null;
      continue;
    }
    if (!l.startsWith(' ')) {
      cur = { title: l, pairs: [] };
      blocks.push(cur);
      continue;
    }
    const kv = kvLine(l);
    if (!kv) throw new Error(`not a kv line: ${l}`);
    if (!cur) blocks.push((cur = { title: null, pairs: [] }));
    cur.pairs.push([kv.key, kv.value]);
  }
  return { kind: 'kv', blocks, keepSpace };
}

describe('stand-in layouts re-render the captures byte for byte', () => {
  it('esxcli tables (nic list, portgroup list, vm list)', async () => {
    const cases: Array<[string, string[]]> = [
      ['nic-list_12vmnic_ntg3_unresolved-repo.txt', ['Speed', 'MTU']],
      ['portgroup-list_elatov.txt', ['Active Clients', 'VLAN ID']],
      ['portgroup-list_unresolved-repo.txt', ['Active Clients', 'VLAN ID']],
      ['vm-list_rayd62-blog.txt', ['World ID', 'Num Ports']],
      ['vm-list_esxi67-vagrant-blog.txt', ['World ID', 'Num Ports']],
    ];
    const texts = await Promise.all(cases.map(([f]) => fixture(f)));
    const out = await render(cases.map(([, numeric], i) => tableJob(texts[i]!, numeric)));
    cases.forEach(([f], i) => expect({ f, text: trimEnd(out[i]!) }).toEqual({ f, text: trimEnd(texts[i]!) }));
  });

  it('esxcli "Key: value" blocks (vswitch list, nic stats, vm port list, port stats, policies, advanced)', async () => {
    const cases: Array<[string, boolean]> = [
      ['vswitch-standard-list_elatov.txt', true],
      ['vswitch-standard-list_unresolved-repo.txt', true],
      ['nic-stats-get_vmnic2_broadcom-kb341594.txt', false],
      ['nic-stats-get_vmnic9_intel-mfd.txt', false],
      ['vm-port-list_w2270220_unresolved-doc.txt', false],
      ['port-stats-get_RECONSTRUCTED.txt', false],
      ['portgroup-policy-security-get_RECONSTRUCTED.txt', false],
      ['portgroup-policy-failover-get_RECONSTRUCTED.txt', false],
      ['advanced-list-BlockGuestBPDU_RECONSTRUCTED.txt', false],
    ];
    const texts = await Promise.all(cases.map(([f]) => fixture(f)));
    const out = await render(cases.map(([, keep], i) => kvJob(texts[i]!, keep)));
    cases.forEach(([f], i) => expect({ f, text: trimEnd(out[i]!) }).toEqual({ f, text: trimEnd(texts[i]!) }));
  });

  it('vsish -pe body and vim-cmd getallvms rows', async () => {
    const vs = await fixture('vsish-pnic-stats_intel-mfd.txt');
    const body = vs.slice(vs.indexOf('{\n'));
    const pairs: Array<[string, string | number]> = [];
    for (const m of body.matchAll(/^ {3}"(\w+)" : (?:(\d+)|"([^"]*)"),$/gm)) pairs.push([m[1]!, m[2] !== undefined ? Number(m[2]) : m[3]!]);
    expect(pairs.length).toBe(30);
    const files = ['vim-cmd-getallvms_esxi5-restart-post.txt', 'vim-cmd-getallvms_usb-passthrough-notes.txt', 'vim-cmd-getallvms_unresolved-doc.txt'];
    const vimTexts = await Promise.all(files.map(fixture));
    const vmsOf = (t: string) =>
      must(parseGetAllVms(t), 'getallvms').map((v) => ({ vmid: v.vmid, name: v.name, file: v.file, guest: v.guestOs, version: v.version, annotation: v.annotation }));
    const out = await render([{ kind: 'vsish', pairs }, ...vimTexts.map((t): Job => ({ kind: 'getallvms', vms: vmsOf(t) }))]);
    expect(trimEnd(out[0]!)).toBe(trimEnd(body));
    expect(trimEnd(out[1]!)).toBe(trimEnd(vimTexts[0]!)); // header included: it is the one we print
    files.forEach((f, i) => {
      const rows = (t: string) => trimEnd(t).split('\n').slice(1);
      expect({ f, rows: rows(out[i + 1]!) }).toEqual({ f, rows: rows(vimTexts[i]!) });
    });
  });
});
