// The pure ESXi output parsers (agent/esxi/) against REAL captured outputs (test/fixtures/esxcli/,
// provenance and licenses in SOURCES.txt there), plus properties over arbitrary input.
//
// About the golden files (*.golden.json): they were produced by running each parser once and then
// checked by hand, field by field, against the fixture text (every counter of the three nic stats
// outputs, the vsish and ENS bodies, all 12 + 2 + 16 NIC rows, every port group, vSwitch and VM
// port). They are not a blind snapshot: when a parser change alters one, re-check it against the
// .txt the same way before updating it. The semantic tests below pin the points that matter most
// independently of the goldens.
import fc from 'fast-check';
import { assertMutationsFailInside, assertNeverThrows, describeGolden, fixture, value } from '../helpers/esxi-parsing.js';
import { describe, expect, it } from 'vitest';
import { ESX_OPS, toArgv, type EsxOp, type EsxOpName } from '../../agent/esxi/commands.js';
import { parseTitledBlocks, parseUntitledBlocks } from '../../agent/esxi/kv.js';
import {
  checkPortgroupName,
  isDeviceKey,
  isPortgroupName,
  isQuarantineVlan,
  isVlanId,
  isVmid,
  isVmnic,
  isVswitchName,
  isWorldId,
  validatePortgroup,
  validateVmnic,
} from '../../agent/esxi/names.js';
import { parseEsxcfgNics, parseNicList } from '../../agent/esxi/nic-list.js';
import { broadcastUsable, NIC_COUNTER_KEYS, NIC_STATS_LABELS, parseNicStats, type NicStats } from '../../agent/esxi/nic-stats.js';
import { parsePortgroupList } from '../../agent/esxi/portgroup.js';
import { parseCounter, type Result } from '../../agent/esxi/result.js';
import { parseTable } from '../../agent/esxi/table.js';
import { parseVmPortList } from '../../agent/esxi/vm-port.js';
import { parseEnsUplinkStats, parseVsishPnicStats } from '../../agent/esxi/vsish.js';
import { parseVswitchList } from '../../agent/esxi/vswitch.js';


/** Every fixture, with the parser for the command that produced it. Listed explicitly: none is skipped silently. */
const FIXTURES: Array<[string, (text: unknown) => Result<unknown>]> = [
  ['ens-uplink-stats_intel-mfd', parseEnsUplinkStats],
  ['esxcfg-nics-l_16nic_intel-mfd', parseEsxcfgNics],
  ['nic-list_12vmnic_ntg3_unresolved-repo', parseNicList],
  ['nic-list_2vmnic_masked-mac_unresolved-doc', parseNicList],
  ['nic-stats-get_vmnic0_PARTIAL_unresolved-doc', parseNicStats],
  ['nic-stats-get_vmnic2_broadcom-kb341594', parseNicStats],
  ['nic-stats-get_vmnic9_intel-mfd', parseNicStats],
  ['portgroup-list_elatov', parsePortgroupList],
  ['portgroup-list_unresolved-repo', parsePortgroupList],
  ['vm-port-list_w2270220_unresolved-doc', parseVmPortList],
  ['vsish-pnic-stats_intel-mfd', parseVsishPnicStats],
  ['vswitch-standard-list_elatov', parseVswitchList],
  ['vswitch-standard-list_unresolved-repo', parseVswitchList],
];

const ALL_PARSERS: Array<(text: unknown) => Result<unknown>> = [
  parseNicStats, parseNicList, parseEsxcfgNics, parseVswitchList, parsePortgroupList, parseVmPortList,
  parseVsishPnicStats, parseEnsUplinkStats, (t) => parseTable(t), (t) => parseTitledBlocks(t), (t) => parseUntitledBlocks(t, 'Port ID'),
];

describeGolden('golden: every captured output parses to its hand-checked JSON', FIXTURES);

describe('nic stats (esxcli network nic stats get)', () => {
  it('keeps counters far above 2^32 exact (KB 341594: 6.7e14 bytes) and breaks no invariant (packets 0, bytes 5271156)', () => {
    const kb = value(parseNicStats(fixture('nic-stats-get_vmnic2_broadcom-kb341594')));
    expect(kb.rxBytes).toBe(664124780523852);
    expect(kb.inexact).toEqual([]);
    const intel = value(parseNicStats(fixture('nic-stats-get_vmnic9_intel-mfd')));
    expect([intel.rxPackets, intel.rxBytes]).toEqual([0, 5271156]);
  });

  it('rejects the elided transcription at its "..." line, and parses the rest with the 9 missing counters as NaN', () => {
    const text = fixture('nic-stats-get_vmnic0_PARTIAL_unresolved-doc');
    expect(parseNicStats(text)).toMatchObject({ ok: false, line: 14 });
    const s = value(parseNicStats(text.replace('   ...\n', '')));
    expect([s.rxBroadcast, s.txBroadcast, s.rxMulticast]).toEqual([1959, 1613, 29569]);
    expect(s.missing).toEqual(['rxOverErrors', 'rxCrcErrors', 'rxFrameErrors', 'rxFifoErrors', 'rxMissedErrors', 'txCarrierErrors', 'txFifoErrors', 'txHeartbeatErrors', 'txWindowErrors']);
    for (const k of s.missing) expect(s[k]).toBeNaN();
  });

  it('flags counters above 2^53 - 1 as inexact and refuses what is not an unsigned 64-bit decimal', () => {
    const head = 'NIC statistics for vmnic3\n   Packets received: 1\n   Packets sent: 1\n   Bytes sent: 1\n   Multicast packets received: 1\n   Broadcast packets received: 1\n';
    const big = value(parseNicStats(`${head}   Bytes received: 18446744073709551615\n`));
    expect(big.rxBytes).toBe(2 ** 64);
    expect(big.inexact).toEqual(['rxBytes']);
    expect(value(parseNicStats(`${head}   Bytes received: 9007199254740991\n`)).inexact).toEqual([]);
    for (const bad of ['18446744073709551616', '-1', '1,234', '1e6', '12 ', '0x10', '']) {
      const r = parseNicStats(`${head}   Bytes received: ${bad}\n`);
      if (bad === '12 ') expect(r.ok).toBe(true); // trailing space is trimmed, like "Beacon Required By: "
      else expect(r, bad).toMatchObject({ ok: false, line: 7 });
    }
  });

  it('refuses a wrong header, a non-vmnic name, a duplicate label and missing required counters', () => {
    expect(parseNicStats('NIC statistics for eth0\n   Packets received: 1\n')).toMatchObject({ ok: false, line: 1 });
    expect(parseNicStats('Stats for vmnic0\n')).toMatchObject({ ok: false, line: 1 });
    expect(parseNicStats('NIC statistics for vmnic0\n   Packets received: 1\n   Packets received: 2\n')).toMatchObject({ ok: false, line: 3 });
    const r = parseNicStats('NIC statistics for vmnic0\n   Packets received: 1\n');
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.error).toMatch(/missing counters: txPackets, rxBytes, txBytes, rxMulticast, rxBroadcast/);
  });

  it('keeps counters under unknown labels (newer ESXi) in extra rather than failing', () => {
    const t = fixture('nic-stats-get_vmnic9_intel-mfd') + '   Receive undersize errors: 7\n';
    expect(value(parseNicStats(t)).extra).toEqual({ 'Receive undersize errors': 7 });
  });
});

describe('broadcastUsable: does this driver count rx broadcast at all?', () => {
  const stats = (name: string): NicStats => value(parseNicStats(fixture(name)));

  it('KB 341594 vmnic2: 7e11 frames, 0 broadcast -> absent, rate on multicast', () => {
    const c = broadcastUsable([stats('nic-stats-get_vmnic2_broadcom-kb341594')]);
    expect(c).toMatchObject({ status: 'absent', usable: false, fallback: 'multicast' });
    expect(c.reason).toMatch(/driver reports no rx broadcast/);
  });

  it('Intel vmnic9: packets 0, bytes and multicast move, broadcast counted only on tx -> absent, and says so', () => {
    const c = broadcastUsable([stats('nic-stats-get_vmnic9_intel-mfd')]);
    expect(c).toMatchObject({ status: 'absent', usable: false, fallback: 'multicast' });
    expect(c.reason).toMatch(/98241 broadcast sent/);
  });

  it('vsish, ENS and the partial esxcli output all count broadcast -> usable', () => {
    expect(broadcastUsable([value(parseVsishPnicStats(fixture('vsish-pnic-stats_intel-mfd')))]).usable).toBe(true);
    expect(broadcastUsable([value(parseEnsUplinkStats(fixture('ens-uplink-stats_intel-mfd')))]).usable).toBe(true);
    const partial = value(parseNicStats(fixture('nic-stats-get_vmnic0_PARTIAL_unresolved-doc').replace('   ...\n', '')));
    expect(broadcastUsable([partial])).toMatchObject({ status: 'reported', usable: true, fallback: 'none' });
  });

  it('judges a series: 0 broadcast while packets climb past minFrames -> absent; before that -> unknown', () => {
    const s = (rx: number) => ({ rxPackets: rx, rxBytes: rx * 100, rxBroadcast: 0, rxMulticast: 0, txBroadcast: 0 });
    expect(broadcastUsable([s(0), s(500)])).toMatchObject({ status: 'unknown', usable: false, fallback: 'packets' });
    expect(broadcastUsable([s(0), s(500), s(20_000)])).toMatchObject({ status: 'absent', usable: false, fallback: 'packets' });
    expect(broadcastUsable([s(0), { ...s(600), rxBroadcast: 3 }, s(0)])).toMatchObject({ status: 'reported', usable: true });
    expect(broadcastUsable([])).toMatchObject({ status: 'unknown', usable: false });
  });

  it('falls back to bytes when even the packet counter stays 0, and treats a missing counter as absent', () => {
    expect(broadcastUsable([{ rxPackets: 0, rxBytes: 5e8, rxBroadcast: 0, rxMulticast: 0, txBroadcast: 0 }])).toMatchObject({ status: 'absent', fallback: 'bytes' });
    expect(broadcastUsable([{ rxPackets: 9, rxBytes: 900, rxBroadcast: NaN, rxMulticast: 2, txBroadcast: NaN }])).toMatchObject({ status: 'absent', fallback: 'multicast' });
  });
});

describe('tables by header row (nic list, esxcfg-nics -l, portgroup list)', () => {
  it('regression: the vSwitch column reads "vSwitch0" and "mgmt-sw", not the fixed-slice "Switch0" / "gmt-sw"', () => {
    const text = fixture('portgroup-list_unresolved-repo');
    // What the public fixed-offset parser did (line[21:35]); kept here to show the failure mode.
    const sliced = text.split('\n').filter((l) => l.length === 59).map((l) => l.slice(21, 35).trim());
    expect(sliced).toContain('Switch0');
    const pgs = value(parsePortgroupList(text));
    expect(pgs.map((p) => p.vswitch)).toEqual(['vSwitch0', 'vSwitch0', 'mgmt-sw', 'svc1-sw2', 'svc2ha-sw', 'svc2ha-sw', 'mgmt-sw']);
    expect(pgs.find((p) => p.name === 'v0305-m')?.vlanId).toBe(305);
  });

  it('port group names with spaces, and the same table re-padded wider, give the same rows', () => {
    const text = fixture('portgroup-list_elatov');
    const a = value(parsePortgroupList(text));
    expect(a[0]).toEqual({ name: 'Management Network', vswitch: 'vSwitch0', activeClients: 1, vlanId: 0, unusable: null });
    // Add a longer port group: esxcli widens the Name column and shifts every column right.
    const rows = [...a.map((p) => [p.name, p.vswitch, String(p.activeClients), String(p.vlanId)]), ['Quarantine For Loops 4000', 'vSwitch0', '0', '4000']];
    const shifted = render(['Name', 'Virtual Switch', 'Active Clients', 'VLAN ID'], rows, [0, 0, 1, 1], 2, true);
    const b = value(parsePortgroupList(shifted));
    expect(b.slice(0, a.length)).toEqual(a);
    expect(b[a.length]).toMatchObject({ name: 'Quarantine For Loops 4000', vlanId: 4000 });
  });

  it('nic list: vmnic10 widens Name (7 wide), igc-community widens Driver, Description keeps its spaces', () => {
    const wide = value(parseNicList(fixture('nic-list_12vmnic_ntg3_unresolved-repo')));
    expect(wide.find((n) => n.name === 'vmnic10')).toMatchObject({ pci: '0000:41:00.2', linkUp: true, speedMbps: 1000, mac: 'b0:26:28:9c:f8:2e' });
    const narrow = value(parseNicList(fixture('nic-list_2vmnic_masked-mac_unresolved-doc')));
    expect(narrow.map((n) => [n.driver, n.speedMbps, n.mac, n.description])).toEqual([
      ['ne1000', 1000, null, 'Intel Corporation Ethernet Connection (7) I219-LM'],
      ['igc-community', 2500, null, 'Intel Corporation Ethernet Controller I226-V'],
    ]);
  });

  it('esxcfg-nics -l (no dashes): "Link Speed" is two columns, "MAC Address" one; without knowing that it fails loudly', () => {
    const text = fixture('esxcfg-nics-l_16nic_intel-mfd');
    const nics = value(parseEsxcfgNics(text));
    expect(nics).toHaveLength(16);
    expect(nics.find((n) => n.name === 'vmnic14')).toMatchObject({ driver: 'bnxtnet', linkUp: false, speedMbps: 0, duplex: 'Half', adminUp: null });
    const naive = parseTable(text); // "MAC" and "Address" taken as two columns
    expect(naive).toMatchObject({ ok: false, line: 2 });
  });

  it('refuses a prompt or stray line inside a table, with its line number', () => {
    const t = fixture('nic-list_12vmnic_ntg3_unresolved-repo') + '[root@localhost:~] \n';
    expect(parseNicList(t)).toMatchObject({ ok: false, line: 15 });
    expect(parsePortgroupList('Name  VLAN ID\n----  -------\nx           0\n')).toMatchObject({ ok: false });
    expect(parsePortgroupList('')).toMatchObject({ ok: false, error: 'empty output' });
  });
});

describe('blocks (vswitch standard list, vm port list)', () => {
  it('vSwitches: uplinks and port groups split on ", ", trailing spaces trimmed, empty lists empty', () => {
    const v = value(parseVswitchList(fixture('vswitch-standard-list_elatov')));
    expect(v.map((s) => [s.name, s.mtu, s.uplinks, s.portgroups, s.beaconRequiredBy])).toEqual([
      ['vSwitch0', 1500, ['vmnic0'], ['VM_VLAN1', 'VM Network', 'VM_VLAN3', 'Management Network'], []],
      ['storage', 9000, ['vmnic32'], ['nfs-for-vm', 'iscsi'], []],
    ]);
    const two = 'vSwitch1\n   Name: vSwitch1\n   Uplinks: vmnic1, vmnic10\n   Portgroups: \n';
    expect(value(parseVswitchList(two))[0]).toMatchObject({ uplinks: ['vmnic1', 'vmnic10'], portgroups: [], mtu: null });
  });

  it('vSwitches: refuses a title that disagrees with Name, a non-vmnic uplink, a missing Uplinks line', () => {
    expect(parseVswitchList('vSwitch1\n   Name: vSwitch2\n   Uplinks:\n   Portgroups:\n')).toMatchObject({ ok: false, line: 1 });
    expect(parseVswitchList('vSwitch1\n   Name: vSwitch1\n   Uplinks: eth0\n   Portgroups:\n')).toMatchObject({ ok: false, line: 3 });
    expect(parseVswitchList('vSwitch1\n   Name: vSwitch1\n   Portgroups:\n')).toMatchObject({ ok: false });
    expect(parseVswitchList('   Name: vSwitch1\n')).toMatchObject({ ok: false, line: 1 });
  });

  it('VM ports: Team Uplink per vNIC, 0.0.0.0 as no IP, and a lost blank line still splits at "Port ID"', () => {
    const text = fixture('vm-port-list_w2270220_unresolved-doc');
    const ports = value(parseVmPortList(text));
    expect(ports.map((p) => [p.portId, p.portgroup, p.teamUplink, p.ip])).toEqual([
      [67108881, 'VM Network', 'vmnic0', null],
      [100663312, 'VM Network1', 'vmnic1', null],
    ]);
    expect(value(parseVmPortList(text.replace('\n\n', '\n')))).toEqual(ports);
    expect(value(parseVmPortList(''))).toEqual([]);
    expect(parseVmPortList(text.replace('00:0c:29:72:3f:ed', 'not-a-mac'))).toMatchObject({ ok: false, line: 15 });
  });
});

describe('vsish -pe get /net/pNics/<nic>/stats and nsxdp-cli ens uplink stats', () => {
  it('skips the stderr banner, reads the multi-line "hw" string, tolerates the trailing comma', () => {
    const s = value(parseVsishPnicStats(fixture('vsish-pnic-stats_intel-mfd')));
    expect(s.banner[0]).toMatch(/^main\(\):Python mode is deprecated/);
    expect(s.strings['hw']!.split('\n')).toHaveLength(15);
    expect([s.rxBroadcast, s.txBroadcast, s.rxMulticast]).toEqual([42, 125, 3037]);
  });

  it('keeps digits JSON.parse would round, and refuses nesting, garbage after "}", and a missing "}"', () => {
    const body = (x: string) => `{\n   "rxpkt" : 1,\n   "txpkt" : 1,\n   "rxbytes" : ${x},\n   "txbytes" : 1,\n   "rxmltcast" : 1,\n   "rxbrdcast" : 1,\n}\n`;
    const s = value(parseVsishPnicStats(body('18446744073709551615')));
    expect(s.inexact).toEqual(['rxBytes']);
    expect(parseVsishPnicStats(body('{ "a" : 1 }'))).toMatchObject({ ok: false, line: 4 });
    expect(parseVsishPnicStats(`${body('5')}oops\n`)).toMatchObject({ ok: false, line: 9 });
    expect(parseVsishPnicStats(body('5').replace('}\n', ''))).toMatchObject({ ok: false });
    expect(parseVsishPnicStats('no braces here')).toMatchObject({ ok: false });
  });

  it('ENS: camelCase keys map onto the same counters; the private-stats section after it is ignored', () => {
    const text = fixture('ens-uplink-stats_intel-mfd') + 'Uplink Private Stats:\n\n    txXon=0\n    rxq0 (hwq0): ringSize=1024\n';
    const s = value(parseEnsUplinkStats(text));
    expect([s.rxPackets, s.rxBroadcast, s.txBroadcast, s.extra]).toEqual([5076600, 176, 104, { collisions: 0 }]);
    expect(parseEnsUplinkStats('Uplink Stats:\n    rxPkts: many\n')).toMatchObject({ ok: false, line: 2 });
  });

  it('the three sources fill one shape: the same 23 counter keys', () => {
    const keys = (s: NicStats) => NIC_COUNTER_KEYS.filter((k) => typeof s[k] === 'number');
    expect(keys(value(parseVsishPnicStats(fixture('vsish-pnic-stats_intel-mfd'))))).toEqual(NIC_COUNTER_KEYS);
    expect(keys(value(parseEnsUplinkStats(fixture('ens-uplink-stats_intel-mfd'))))).toEqual(NIC_COUNTER_KEYS);
    expect(NIC_COUNTER_KEYS).toHaveLength(23);
  });
});

describe('names', () => {
  it('vmnic names', () => {
    for (const ok of ['vmnic0', 'vmnic10', 'vmnic9999']) expect(isVmnic(ok), ok).toBe(true);
    for (const bad of ['vmnic', 'vmnic10000', 'vmk0', 'eth0', 'vmnic1 ', 'vmnic1;reboot', 'VMNIC1', 7]) expect(isVmnic(bad), String(bad)).toBe(false);
  });

  it('port group names: spaces and punctuation seen on real hosts pass; control chars, quotes, $, \\, comma, edge spaces, leading "-" do not', () => {
    for (const ok of ['VM Network', 'Management Network', 'VM_VLAN3', 'v0003-svc1-sw2', 'nfs-for-vm', 'VLAN1234 (1.2.3.4/5)', '[100]MyNetwork', '10.0.0.0%2f24']) {
      expect(checkPortgroupName(ok), ok).toBeNull();
    }
    for (const bad of ['', 'a\nb', 'tab\there', "it's", 'say "hi"', 'a`id`', '$(reboot)', 'back\\slash', 'a, b', ' lead', 'trail ', '-x', 'réseau', 'x'.repeat(256), '\u202eevil']) {
      expect(checkPortgroupName(bad), JSON.stringify(bad)).not.toBeNull();
    }
    expect(isVswitchName('vSwitch0')).toBe(true);
    expect(isVswitchName('foo/bar')).toBe(false); // ESXi 7.0.2 refuses '/' in vSwitch names
  });

  it('validatePortgroup matches what the host lists exactly and names a near miss', () => {
    const host = value(parsePortgroupList(fixture('portgroup-list_elatov'))).map((p) => p.name);
    expect(validatePortgroup('VM Network', host)).toEqual({ ok: true, value: 'VM Network' });
    const near = validatePortgroup('vm network', host);
    expect(near.ok).toBe(false);
    expect(near.ok ? '' : near.error).toMatch(/did you mean "VM Network"/);
    expect(validatePortgroup('Nope', host)).toMatchObject({ ok: false });
    expect(validatePortgroup("VM Network'; reboot; '", [...host, "VM Network'; reboot; '"])).toMatchObject({ ok: false });
    expect(validateVmnic('vmnic3', ['vmnic0'])).toMatchObject({ ok: false });
  });

  it('IDs and VLANs', () => {
    expect([isVlanId(0), isVlanId(4095), isVlanId(4096), isVlanId(-1), isVlanId(1.5)]).toEqual([true, true, false, false, false]);
    expect([isQuarantineVlan(0), isQuarantineVlan(1), isQuarantineVlan(4094), isQuarantineVlan(4095)]).toEqual([false, true, true, false]);
    expect([isWorldId('2270220'), isWorldId('0'), isWorldId('12a'), isWorldId('99999999999')]).toEqual([true, false, false, false]);
    expect([isVmid('130'), isVmid('-1'), isVmid('01')]).toEqual([true, false, false]);
    expect([isDeviceKey(4000), isDeviceKey(0), isDeviceKey(2 ** 31)]).toEqual([true, false, false]);
  });
});

describe('commands: exact argv per operation, identifiers validated first', () => {
  const hostNics = ['vmnic0', 'vmnic1', 'vmnic10'];
  const hostPortgroups = ['VM Network', 'Management Network'];
  const samples: Record<EsxOpName, [EsxOp, string[]]> = {
    'nic-stats': [{ op: 'nic-stats', nic: 'vmnic2' }, ['esxcli', 'network', 'nic', 'stats', 'get', '-n', 'vmnic2']],
    'vsish-pnic-stats': [{ op: 'vsish-pnic-stats', nic: 'vmnic2' }, ['vsish', '-pe', 'get', '/net/pNics/vmnic2/stats']],
    'ens-uplink-stats': [{ op: 'ens-uplink-stats', nic: 'vmnic2' }, ['nsxdp-cli', 'ens', 'uplink', 'stats', 'get', '-n', 'vmnic2']],
    'nic-list': [{ op: 'nic-list' }, ['esxcli', 'network', 'nic', 'list']],
    'esxcfg-nics': [{ op: 'esxcfg-nics' }, ['esxcfg-nics', '-l']],
    'vswitch-list': [{ op: 'vswitch-list' }, ['esxcli', 'network', 'vswitch', 'standard', 'list']],
    'portgroup-list': [{ op: 'portgroup-list' }, ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'list']],
    'vm-list': [{ op: 'vm-list' }, ['esxcli', 'network', 'vm', 'list']],
    'vm-port-list': [{ op: 'vm-port-list', worldId: '2270220' }, ['esxcli', 'network', 'vm', 'port', 'list', '-w', '2270220']],
    'vim-vm-list': [{ op: 'vim-vm-list' }, ['vim-cmd', 'vmsvc/getallvms']],
    'vim-vm-devices': [{ op: 'vim-vm-devices', vmid: '130' }, ['vim-cmd', 'vmsvc/device.getdevices', '130']],
    'port-stats': [{ op: 'port-stats', portId: '2214592517' }, ['esxcli', 'network', 'port', 'stats', 'get', '-p', '2214592517']],
    'pg-security': [{ op: 'pg-security', portgroup: 'VM Network' }, ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'security', 'get', '-p', 'VM Network']],
    'pg-failover': [{ op: 'pg-failover', portgroup: 'VM Network' }, ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'failover', 'get', '-p', 'VM Network']],
    'advanced-get': [{ op: 'advanced-get', path: '/Net/BlockGuestBPDU' }, ['esxcli', 'system', 'settings', 'advanced', 'list', '-o', '/Net/BlockGuestBPDU']],
    'nic-down': [{ op: 'nic-down', nic: 'vmnic10', hostNics }, ['esxcli', 'network', 'nic', 'down', '-n', 'vmnic10']],
    'nic-up': [{ op: 'nic-up', nic: 'vmnic10', hostNics }, ['esxcli', 'network', 'nic', 'up', '-n', 'vmnic10']],
    'portgroup-quarantine': [
      { op: 'portgroup-quarantine', portgroup: 'VM Network', vlanId: 3999, hostPortgroups },
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'VM Network', '--vlan-id', '3999'],
    ],
    'portgroup-restore-vlan': [
      { op: 'portgroup-restore-vlan', portgroup: 'VM Network', vlanId: 0, hostPortgroups },
      ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', 'VM Network', '--vlan-id', '0'],
    ],
    'vm-nic-disconnect': [{ op: 'vm-nic-disconnect', vmid: '130', deviceKey: 4001, vmNicKeys: [4000, 4001] }, ['vim-cmd', 'vmsvc/device.connection', '130', '4001', '0']],
    'vm-nic-connect': [{ op: 'vm-nic-connect', vmid: '130', deviceKey: 4001, vmNicKeys: [4000, 4001] }, ['vim-cmd', 'vmsvc/device.connection', '130', '4001', '1']],
  };

  it('every operation has its exact argv', () => {
    expect(Object.keys(samples).sort()).toEqual([...ESX_OPS].sort());
    for (const name of ESX_OPS) {
      const [op, argv] = samples[name];
      expect(toArgv(op), name).toEqual({ ok: true, value: argv });
    }
  });

  it('refuses bad or unlisted identifiers before building anything', () => {
    const bad: EsxOp[] = [
      { op: 'nic-stats', nic: 'vmnic2; reboot' },
      { op: 'vsish-pnic-stats', nic: '../../x' },
      { op: 'nic-down', nic: 'vmnic7', hostNics },
      { op: 'nic-up', nic: 'eth0', hostNics },
      { op: 'vm-port-list', worldId: '2270220 -x' },
      { op: 'vim-vm-devices', vmid: '0' },
      { op: 'portgroup-quarantine', portgroup: 'VM Network', vlanId: 0, hostPortgroups },
      { op: 'portgroup-quarantine', portgroup: 'VM Network', vlanId: 4095, hostPortgroups },
      { op: 'portgroup-quarantine', portgroup: 'Storage', vlanId: 3999, hostPortgroups },
      { op: 'portgroup-restore-vlan', portgroup: 'VM Network', vlanId: 4096, hostPortgroups },
      { op: 'vm-nic-disconnect', vmid: '130', deviceKey: 4002, vmNicKeys: [4000, 4001] },
      { op: 'vm-nic-disconnect', vmid: 'abc', deviceKey: 4000, vmNicKeys: [4000] },
    ];
    for (const op of bad) expect(toArgv(op).ok, JSON.stringify(op)).toBe(false);
  });
});

// --- properties (fast-check) --------------------------------------------------------------------

const RUNS = 300;

/** Render a fixed-width table the way esxcli does: columns as wide as their widest cell. */
function render(headers: string[], rows: string[][], rightAlign: number[], gap: number, dashes: boolean, extraPad: number[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + (extraPad[i] ?? 0));
  const cell = (s: string, i: number) => (rightAlign[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!));
  const line = (cells: string[]) => cells.map((c, i) => cell(c, i)).join(' '.repeat(gap)).trimEnd();
  const out = [line(headers)];
  if (dashes) out.push(widths.map((w) => '-'.repeat(w)).join(' '.repeat(gap)));
  for (const r of rows) out.push(line(r));
  return `${out.join('\n')}\n`;
}

const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9:._-]{0,11}$/);
const phrase = fc.array(word, { minLength: 1, maxLength: 3 }).map((w) => w.join(' '));

describe('properties', () => {
  it('no parser throws, whatever the input (strings of any characters, non-strings)', () => assertNeverThrows(ALL_PARSERS, RUNS));

  it('no parser throws on mutated real outputs; an error carries a line inside the text', () => assertMutationsFailInside(FIXTURES.map(([n]) => fixture(n)), ALL_PARSERS, RUNS));

  it('tables: any column widths, gaps, alignments and extra padding give back the same cells (dashes row)', () => {
    const table = fc.integer({ min: 1, max: 6 }).chain((cols) =>
      fc.record({
        headers: fc.uniqueArray(phrase, { minLength: cols, maxLength: cols }),
        rows: fc.array(fc.array(fc.oneof(phrase, fc.constant('')), { minLength: cols, maxLength: cols }), { maxLength: 8 }),
        right: fc.array(fc.nat({ max: 1 }), { minLength: cols, maxLength: cols }),
        pad: fc.array(fc.nat({ max: 6 }), { minLength: cols, maxLength: cols }),
        gap: fc.integer({ min: 1, max: 4 }),
      }),
    );
    fc.assert(
      fc.property(table, ({ headers, rows, right, pad, gap }) => {
        const r = value(parseTable(render(headers, rows, right, gap, true, pad)));
        expect(r.headers).toEqual(headers);
        expect(r.rows.map((x) => x.cells)).toEqual(rows.filter((row) => row.some((c) => c !== '')));
      }),
      { numRuns: RUNS },
    );
  });

  it('tables without dashes (esxcfg-nics style): single-word or known multi-word headers, spaces only in the last column', () => {
    const table = fc.integer({ min: 1, max: 6 }).chain((cols) =>
      fc.record({
        headers: fc.uniqueArray(fc.oneof(word, fc.constant('MAC Address')), { minLength: cols, maxLength: cols }),
        rows: fc.array(fc.tuple(fc.array(word, { minLength: cols - 1, maxLength: cols - 1 }), phrase), { minLength: 1, maxLength: 8 }),
        pad: fc.array(fc.nat({ max: 6 }), { minLength: cols, maxLength: cols }),
        gap: fc.integer({ min: 1, max: 4 }),
      }),
    );
    fc.assert(
      fc.property(table, ({ headers, rows, pad, gap }) => {
        const cells = rows.map(([first, last]) => [...first, last]);
        const r = value(parseTable(render(headers, cells, [], gap, false, pad), { multiWordHeaders: ['MAC Address'] }));
        expect(r.headers).toEqual(headers);
        expect(r.rows.map((x) => x.cells)).toEqual(cells);
      }),
      { numRuns: RUNS },
    );
  });

  it('tables: a row running across a column boundary is refused at its own line, never sliced wrong', () => {
    const table = fc.record({
      rows: fc.array(fc.tuple(word, word, word), { minLength: 1, maxLength: 6 }),
      pick: fc.nat(),
      boundary: fc.integer({ min: 1, max: 2 }),
    });
    fc.assert(
      fc.property(table, ({ rows, pick, boundary }) => {
        const text = render(['Name', 'Virtual Switch', 'VLAN ID'], rows, [0, 0, 1], 2, true);
        const lines = text.split('\n');
        const starts = value(parseTable(text)).starts;
        const row = 2 + (pick % rows.length);
        const p = starts[boundary]!;
        const l = lines[row]!.padEnd(p + 1);
        lines[row] = `${l.slice(0, p - 1)}XX${l.slice(p + 1)}`;
        expect(parseTable(lines.join('\n'))).toMatchObject({ ok: false, line: row + 1 });
      }),
      { numRuns: RUNS },
    );
  });

  it('port group tables round-trip any name the agent accepts (spaces included), at any column width', () => {
    const pgChar = fc.constantFrom(...[...Array(95).keys()].map((i) => String.fromCharCode(32 + i)).filter((c) => !/['"`\\$,]/.test(c)));
    const pgName = fc.string({ unit: pgChar, minLength: 1, maxLength: 30 }).filter(isPortgroupName);
    const rows = fc.uniqueArray(fc.tuple(pgName, fc.constantFrom('vSwitch0', 'mgmt-sw', 'storage'), fc.nat({ max: 99 }), fc.nat({ max: 4095 })), {
      minLength: 1,
      maxLength: 8,
      selector: (r) => r[0],
    });
    fc.assert(
      fc.property(rows, fc.integer({ min: 1, max: 4 }), (rs, gap) => {
        const text = render(['Name', 'Virtual Switch', 'Active Clients', 'VLAN ID'], rs.map(([n, s, c, v]) => [n, s, String(c), String(v)]), [0, 0, 1, 1], gap, true);
        const got = value(parsePortgroupList(text));
        expect(got.map((p) => [p.name, p.vswitch, p.activeClients, p.vlanId])).toEqual(rs);
        for (const p of got) expect(validatePortgroup(p.name, got.map((x) => x.name)).ok).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('nic stats: any u64 counters in any order read back as Number(digits), inexact exactly above 2^53 - 1', () => {
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    const entries = fc.shuffledSubarray(NIC_COUNTER_KEYS, { minLength: NIC_COUNTER_KEYS.length, maxLength: NIC_COUNTER_KEYS.length });
    fc.assert(
      fc.property(entries, fc.array(u64, { minLength: 23, maxLength: 23 }), (keys, vals) => {
        const text = `NIC statistics for vmnic5\n${keys.map((k, i) => `   ${NIC_STATS_LABELS[k]}: ${vals[i]}`).join('\n')}\n`;
        const s = value(parseNicStats(text));
        keys.forEach((k, i) => expect(s[k]).toBe(Number(vals[i])));
        expect(new Set(s.inexact)).toEqual(new Set(keys.filter((_, i) => vals[i]! > BigInt(Number.MAX_SAFE_INTEGER))));
        expect(parseCounter(String(vals[0]))?.exact).toBe(vals[0]! <= BigInt(Number.MAX_SAFE_INTEGER));
      }),
      { numRuns: RUNS },
    );
  });

  it('broadcastUsable says usable exactly when some sample counted rx broadcast', () => {
    const c = fc.oneof(fc.nat({ max: 1e12 }), fc.constant(0), fc.constant(NaN));
    const sample = fc.record({ rxPackets: c, rxBytes: c, rxBroadcast: c, rxMulticast: c, txBroadcast: c });
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 6 }), (ss) => {
        const r = broadcastUsable(ss);
        expect(r.usable).toBe(ss.some((s) => s.rxBroadcast > 0));
        expect(r.usable).toBe(r.status === 'reported');
        expect(r.fallback === 'none').toBe(r.usable);
        expect(r.reason.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });
});
