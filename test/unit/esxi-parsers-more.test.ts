// The second set of pure ESXi parsers (port stats, vim-cmd getallvms / device.getdevices, port
// group security and failover policies, advanced options, vm list) against the outputs in
// test/fixtures/esxcli/ (provenance in SOURCES.txt there), plus malformed input and properties.
//
// Which fixtures are real: vm-list_* (three public captures), vim-cmd-getallvms_* (three) and
// vim-cmd-device-getdevices_usb-passthrough-notes (one). Every *_RECONSTRUCTED fixture was
// written by hand from documented field names because no public capture was found: those tests
// show the parser reads that shape, not that ESXi prints it.
//
// The golden files were written by running each parser once and checking the JSON field by field
// against the .txt (every VM row, world ID, network list, the one NIC of the device dump, every
// counter and flag). Re-check against the .txt before updating one.
import fc from 'fast-check';
import { assertMutationsFailInside, assertNeverThrows, describeGolden, fixture, value } from '../helpers/esxi-parsing.js';
import { describe, expect, it } from 'vitest';
import { BLOCK_GUEST_BPDU_PATH, blockGuestBpduOn, parseAdvancedInt } from '../../agent/esxi/advanced.js';
import { ADVANCED_PATHS, toArgv, type EsxOp } from '../../agent/esxi/commands.js';
import { parseFailoverPolicy, parseSecurityPolicy } from '../../agent/esxi/policy-get.js';
import { parsePortgroupList } from '../../agent/esxi/portgroup.js';
import { PORT_STATS_LABELS, parsePortStats } from '../../agent/esxi/port-stats.js';
import type { Result } from '../../agent/esxi/result.js';
import { joinVmNics, parseGetAllVms, parseVmDevices, parseVmodl, type VmNicDevice } from '../../agent/esxi/vim.js';
import { parseVmList } from '../../agent/esxi/vm-list.js';
import { parseVmPortList } from '../../agent/esxi/vm-port.js';


const bpdu = (t: unknown): Result<unknown> => parseAdvancedInt(t, BLOCK_GUEST_BPDU_PATH);

/** Every new fixture with its parser. Listed explicitly: none is skipped silently. */
const FIXTURES: Array<[string, (text: unknown) => Result<unknown>]> = [
  ['port-stats-get_RECONSTRUCTED', parsePortStats],
  ['vim-cmd-getallvms_unresolved-doc', parseGetAllVms],
  ['vim-cmd-getallvms_usb-passthrough-notes', parseGetAllVms],
  ['vim-cmd-getallvms_esxi5-restart-post', parseGetAllVms],
  ['vim-cmd-device-getdevices_usb-passthrough-notes', parseVmDevices],
  ['portgroup-policy-security-get_RECONSTRUCTED', parseSecurityPolicy],
  ['portgroup-policy-security-get_nested-lab-RECONSTRUCTED', parseSecurityPolicy],
  ['portgroup-policy-failover-get_RECONSTRUCTED', parseFailoverPolicy],
  ['portgroup-policy-failover-get_active-standby-RECONSTRUCTED', parseFailoverPolicy],
  ['advanced-list-BlockGuestBPDU_RECONSTRUCTED', bpdu],
  ['vm-list_rayd62-blog', parseVmList],
  ['vm-list_esxi67-vagrant-blog', parseVmList],
  ['vm-list_unresolved-doc', parseVmList],
];

const ALL_PARSERS: Array<(text: unknown) => Result<unknown>> = [
  parsePortStats, parseGetAllVms, parseVmDevices, parseSecurityPolicy, parseFailoverPolicy, bpdu, parseVmList,
  (t) => (typeof t === 'string' ? parseVmodl(t) : parseVmodl('')),
];

describeGolden('golden: every new fixture parses to its hand-checked JSON', FIXTURES);

describe('esxcli network port stats get (shape RECONSTRUCTED, see port-stats.ts)', () => {
  const head = 'Packet statistics for port 50331660\n';
  const req = '   Packets received: 1\n   Packets sent: 2\n   Bytes received: 3\n   Bytes sent: 4\n   Broadcast packets received: 5\n   Multicast packets received: 6\n';

  it('reads the port ID and the counters; labels it does not know go to extra, absent ones are NaN', () => {
    const s = value(parsePortStats(`${head}${req}   Packets dropped by filter: 9\n`));
    expect([s.portId, s.rxPackets, s.rxBroadcast, s.rxMulticast]).toEqual([50331660, 1, 5, 6]);
    expect(s.extra).toEqual({ 'Packets dropped by filter': 9 });
    expect(s.missing).toEqual(['txBroadcast', 'txMulticast', 'rxUnicast', 'txUnicast', 'rxDropped', 'txDropped']);
    expect(s.txDropped).toBeNaN();
    expect(Object.keys(PORT_STATS_LABELS)).toHaveLength(12);
  });

  it('refuses a wrong header, a port ID above 2^32 - 1, a duplicate, a non-counter, missing required counters, an unindented line', () => {
    expect(parsePortStats(`NIC statistics for vmnic0\n${req}`)).toMatchObject({ ok: false, line: 1 });
    expect(parsePortStats(`Packet statistics for port 4294967296\n${req}`)).toMatchObject({ ok: false, line: 1 });
    expect(value(parsePortStats(`Packet statistics for port 4294967295\n${req}`)).portId).toBe(4294967295);
    expect(parsePortStats(`${head}${req}   Packets sent: 2\n`)).toMatchObject({ ok: false, line: 8 });
    expect(parsePortStats(`${head}${req.replace('Bytes sent: 4', 'Bytes sent: -4')}`)).toMatchObject({ ok: false, line: 5 });
    const r = parsePortStats(`${head}   Packets received: 1\n`);
    expect(r.ok ? '' : r.error).toMatch(/missing counters: txPackets, rxBytes, txBytes, rxBroadcast, rxMulticast/);
    expect(parsePortStats(`${head}${req}Packet statistics for port 7\n`)).toMatchObject({ ok: false, line: 8 });
    expect(parsePortStats('')).toMatchObject({ ok: false, error: 'empty output' });
  });
});

describe('vim-cmd vmsvc/getallvms', () => {
  const H = 'Vmid   Name   File   Guest OS   Version   Annotation\n';

  it('rows do not line up with the header in any capture, and still parse', () => {
    const text = fixture('vim-cmd-getallvms_usb-passthrough-notes');
    const [header, row] = text.split('\n');
    expect(header!.indexOf('Name')).not.toBe(row!.indexOf('ate-tester1'));
    expect(value(parseGetAllVms(text))).toEqual([
      { vmid: '1', name: 'ate-tester1', file: '[datastore1] ate-tester1/ate-tester1.vmx', datastore: 'datastore1', guestOs: 'windows7Guest', version: 'vmx-11', annotation: '' },
    ]);
  });

  it('regression: "VMware vCenter Server 8" stays one name (a whitespace split made it "VMware"; ESXi 8.0.3 audit in SOURCES.txt notes)', () => {
    // The row as the audit's own mis-split cells show it, rejoined (index file id 68578492334).
    const row = '101    VMware vCenter Server 8   [datastore3] VMware vCenter Server 8/VMware vCenter Server 8.vmx   other3xLinux64Guest          vmx-10    VMware vCenter Server Appliance\n';
    expect(value(parseGetAllVms(H + row))[0]).toEqual({
      vmid: '101',
      name: 'VMware vCenter Server 8',
      file: '[datastore3] VMware vCenter Server 8/VMware vCenter Server 8.vmx',
      datastore: 'datastore3',
      guestOs: 'other3xLinux64Guest',
      version: 'vmx-10',
      annotation: 'VMware vCenter Server Appliance',
    });
  });

  it('names and datastores with spaces, a name with brackets, a row without guest id', () => {
    const t = `${H}2      db server 02   [SSD Store] db server 02/db server 02.vmx   ubuntu64Guest   vmx-19\n1558   [XMX_TEST]SP_1   [datastore1] sp1/sp1.vmx   otherGuest   vmx-08\n7      bare   [ds] bare/bare.vmx   vmx-13\n`;
    expect(value(parseGetAllVms(t)).map((v) => [v.vmid, v.name, v.datastore, v.file, v.guestOs])).toEqual([
      ['2', 'db server 02', 'SSD Store', '[SSD Store] db server 02/db server 02.vmx', 'ubuntu64Guest'],
      ['1558', '[XMX_TEST]SP_1', 'datastore1', '[datastore1] sp1/sp1.vmx', 'otherGuest'],
      ['7', 'bare', 'ds', '[ds] bare/bare.vmx', ''],
    ]);
  });

  it('a multi-line annotation is joined to its row (shape as in a public ESXi 5.0 page, see SOURCES.txt notes); lines elsewhere are refused', () => {
    const t = `${H}102    Test2.0   [datastore1] t/t.vmx   centos64Guest   vmx-08    Creator: Leo\nHost IP: 192.168.0.148\nProject: Test2.0\n103    next   [datastore1] n/n.vmx   centos64Guest   vmx-08\n`;
    const vms = value(parseGetAllVms(t));
    expect(vms.map((v) => [v.vmid, v.annotation])).toEqual([
      ['102', 'Creator: Leo\nHost IP: 192.168.0.148\nProject: Test2.0'],
      ['103', ''],
    ]);
    // After a row without annotation, a stray line (a prompt) is not absorbed.
    expect(parseGetAllVms(`${t}[root@esx:~] \n`)).toMatchObject({ ok: false, line: 6 });
    expect(parseGetAllVms(`${H}junk before any row\n`)).toMatchObject({ ok: false, line: 2 });
  });

  it('refuses a row it could read two ways, a missing header, a duplicate Vmid; skips "Skipping invalid VM" lines', () => {
    const amb = `${H}5      lab [test] box   [ds1] lab [test] box/lab.vmx   otherGuest   vmx-19\n`;
    const r = parseGetAllVms(amb);
    expect(r).toMatchObject({ ok: false, line: 2 });
    expect(r.ok ? '' : r.error).toMatch(/cannot tell where the name of VM 5 ends/);
    expect(parseGetAllVms('1      a   [ds] a/a.vmx   otherGuest   vmx-19\n')).toMatchObject({ ok: false, line: 1 });
    const dup = `${H}1   a   [ds] a/a.vmx   g   vmx-19\n1   b   [ds] b/b.vmx   g   vmx-19\n`;
    expect(parseGetAllVms(dup)).toMatchObject({ ok: false, line: 3 });
    const skip = `${H}Skipping invalid VM '12'\n1   a   [ds] a/a.vmx   g   vmx-19\n`;
    expect(value(parseGetAllVms(skip)).map((v) => v.vmid)).toEqual(['1']);
    expect(value(parseGetAllVms(H))).toEqual([]);
  });
});

describe('vim-cmd vmsvc/device.getdevices', () => {
  it('the real dump: only the VirtualE1000 is a NIC (the VirtualUSB with its own "connected" is not)', () => {
    const d = value(parseVmDevices(fixture('vim-cmd-device-getdevices_usb-passthrough-notes')));
    expect(d).toEqual([
      {
        key: 4000, type: 'VirtualE1000', label: 'Network adapter 1', summary: 'VM Network', backing: 'NetworkBackingInfo',
        portgroup: 'VM Network', dvPortgroupKey: null, mac: '00:0c:29:31:8b:16', addressType: 'generated',
        connected: true, startConnected: true, status: 'ok',
      },
    ]);
  });

  /** A second NIC appended to the real dump: vmxnet3, disconnected, distributed port group, upper-case MAC. */
  const withVmxnet3 = (mac = '00:50:56:AB:CD:EF', key = '4001'): string =>
    fixture('vim-cmd-device-getdevices_usb-passthrough-notes').replace(
      /\n {3}\]\n\}\n$/,
      `,
      (vim.vm.device.VirtualVmxnet3) {
         key = ${key},
         deviceInfo = (vim.Description) {
            label = "Network adapter 2",
            summary = "DVSwitch: 50 2a"
         },
         backing = (vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo) {
            port = (vim.dvs.PortConnection) {
               switchUuid = "50 2a",
               portgroupKey = "dvportgroup-12",
               portKey = "7",
               connectionCookie = 123
            }
         },
         connectable = (vim.vm.device.VirtualDevice.ConnectInfo) {
            startConnected = false,
            allowGuestControl = true,
            connected = false,
            status = "untried"
         },
         addressType = "assigned",
         macAddress = "${mac}",
      }
   ]
}
`,
    );

  it('a vmxnet3 on a distributed port group: no standard port group, its dv key, MAC lower-cased, disconnected', () => {
    const d = value(parseVmDevices(withVmxnet3()));
    expect(d.map((n) => [n.key, n.type, n.backing, n.portgroup, n.dvPortgroupKey, n.mac, n.connected, n.startConnected])).toEqual([
      [4000, 'VirtualE1000', 'NetworkBackingInfo', 'VM Network', null, '00:0c:29:31:8b:16', true, true],
      [4001, 'VirtualVmxnet3', 'DistributedVirtualPortBackingInfo', null, 'dvportgroup-12', '00:50:56:ab:cd:ef', false, false],
    ]);
  });

  it('refuses a bad MAC, a duplicate key, a broken or unterminated dump, text after it, another dump type, and deep nesting, by line', () => {
    const bad = withVmxnet3('00:50:56:zz:cd:ef');
    expect(parseVmDevices(bad)).toMatchObject({ ok: false, line: bad.split('\n').findIndex((l) => l.includes('zz:cd')) + 1 });
    expect(parseVmDevices(withVmxnet3(undefined, '4000'))).toMatchObject({ ok: false });
    const real = fixture('vim-cmd-device-getdevices_usb-passthrough-notes');
    const cut = real.split('\n').slice(0, 100).join('\n');
    expect(parseVmDevices(cut).ok).toBe(false);
    const oops = real.replace('macAddress = "00:0c:29:31:8b:16",', 'macAddress = "00:0c:29:31:8b:16" oops,');
    expect(parseVmDevices(oops)).toMatchObject({ ok: false, line: oops.split('\n').findIndex((l) => l.includes(' oops,')) + 1 });
    expect(parseVmDevices(`${real}[root@localhost:~] \n`)).toMatchObject({ ok: false, line: real.split('\n').length });
    expect(parseVmDevices('(vim.vm.Summary) {\n}\n')).toMatchObject({ ok: false, line: 1 });
    expect(parseVmDevices(`(vim.vm.VirtualHardware) ${'(a) ['.repeat(200)}`).ok).toBe(false);
    expect(parseVmDevices('Devices:\n')).toMatchObject({ ok: false });
    expect(parseVmodl('(vim.X) { a = "unterminated }').ok).toBe(false);
  });
});

describe('joinVmNics: vm port list + device.getdevices by MAC', () => {
  const ports = value(parseVmPortList(fixture('vm-port-list_w2270220_unresolved-doc')));
  const pgs = value(parsePortgroupList('Name         Virtual Switch  Active Clients  VLAN ID\n-----------  --------------  --------------  -------\nVM Network   vSwitch0                     1        0\nVM Network1  vSwitch1                     1        0\nSpare        vSwitch1                     0        7\n'));
  const dev = (key: number, mac: string | null, portgroup: string | null, connected: boolean | null): VmNicDevice => ({
    key, type: 'VirtualVmxnet3', label: `Network adapter ${key - 3999}`, summary: portgroup, backing: 'NetworkBackingInfo',
    portgroup, dvPortgroupKey: null, mac, addressType: 'generated', connected, startConnected: connected, status: 'ok',
  });

  it('gives each running port its device key; a disconnected vNIC without a port comes from its backing', () => {
    const j = joinVmNics(ports, [dev(4000, '00:0c:29:72:3f:e3', 'VM Network', true), dev(4001, '00:0c:29:72:3f:ed', 'VM Network1', true), dev(4002, '00:0c:29:72:3f:f7', 'Spare', false)], pgs);
    expect(j.nics.map((n) => [n.portId, n.mac, n.portgroup, n.vswitch, n.teamUplink, n.deviceKey, n.connected])).toEqual([
      [67108881, '00:0c:29:72:3f:e3', 'VM Network', 'vSwitch0', 'vmnic0', 4000, true],
      [100663312, '00:0c:29:72:3f:ed', 'VM Network1', 'vSwitch1', 'vmnic1', 4001, true],
      [null, '00:0c:29:72:3f:f7', 'Spare', 'vSwitch1', null, 4002, false],
    ]);
    expect(j.notes).toEqual([]);
  });

  it('says what it could not join instead of guessing', () => {
    const j = joinVmNics(ports, [dev(4000, '00:0c:29:72:3f:e3', 'VM Network', true), dev(4005, null, 'Gone', false)], pgs);
    expect(j.nics.map((n) => n.deviceKey)).toEqual([4000, null]);
    expect(j.notes).toHaveLength(2);
    expect(j.notes[0]).toMatch(/port 100663312 .* no virtual NIC with this MAC/);
    expect(j.notes[1]).toMatch(/virtual NIC 4005 .* left out/);
    expect(joinVmNics(ports, null, pgs).nics.every((n) => n.deviceKey === null && n.connected === null)).toBe(true);
  });
});

describe('port group policies (shape RECONSTRUCTED, see policy-get.ts)', () => {
  const sec = (mac = 'Allow MAC Address Change: false', extra = ''): string =>
    `   Allow Promiscuous: true\n   ${mac}\n   Allow Forged Transmits: true\n${extra}`;

  it('security: singular and plural MAC-change labels, overrides and unknown lines kept', () => {
    expect(value(parseSecurityPolicy(sec()))).toMatchObject({ allowPromiscuous: true, allowMacChanges: false, allowForgedTransmits: true });
    expect(value(parseSecurityPolicy(sec('Allow MAC Address Changes: true'))).allowMacChanges).toBe(true);
    const s = value(parseSecurityPolicy(sec(undefined, '   Override Port Allow Promiscuous: true\n   Future Field: x\n')));
    expect([s.overrides, s.extra]).toEqual([{ 'Override Port Allow Promiscuous': true }, { 'Future Field': 'x' }]);
  });

  it('security: refuses non-boolean values, missing or doubled keys, unindented lines, by line', () => {
    expect(parseSecurityPolicy(sec().replace('Promiscuous: true', 'Promiscuous: yes'))).toMatchObject({ ok: false, line: 1 });
    expect(parseSecurityPolicy(sec('Allow MAC Address Change: false\n   Allow MAC Address Changes: false'))).toMatchObject({ ok: false, line: 3 });
    expect(parseSecurityPolicy('   Allow Promiscuous: false\n   Allow Forged Transmits: false\n')).toMatchObject({ ok: false });
    expect(parseSecurityPolicy(`${sec()}   Allow Promiscuous: false\n`)).toMatchObject({ ok: false, line: 4 });
    expect(parseSecurityPolicy(`${sec()}Allow Promiscuous false\n`)).toMatchObject({ ok: false, line: 4 });
    expect(parseSecurityPolicy(sec(undefined, '   Override Vswitch Allow Promiscuous: maybe\n'))).toMatchObject({ ok: false, line: 4 });
    expect(parseSecurityPolicy('')).toMatchObject({ ok: false });
  });

  const fo = (active: string, standby = '', unused = ''): string =>
    `   Load Balancing: iphash\n   Network Failure Detection: beacon\n   Active Adapters: ${active}\n   Standby Adapters: ${standby}\n   Unused Adapters: ${unused}\n`;

  it('failover: lists split on ", ", empty lists empty, optional lines null when absent', () => {
    expect(value(parseFailoverPolicy(fo('vmnic10, vmnic2', '', 'vmnic3')))).toMatchObject({
      activeUplinks: ['vmnic10', 'vmnic2'], standbyUplinks: [], unusedUplinks: ['vmnic3'], loadBalancing: 'iphash', failureDetection: 'beacon', notifySwitches: null, failback: null,
    });
    expect(value(parseFailoverPolicy('   Active Adapters:\n   Standby Adapters:\n')).activeUplinks).toEqual([]);
  });

  it('failover: refuses a NIC in two lists, a non-vmnic, a missing Active Adapters line, a bad boolean', () => {
    expect(parseFailoverPolicy(fo('vmnic0', 'vmnic0'))).toMatchObject({ ok: false, line: 4 });
    expect(parseFailoverPolicy(fo('vmnic0, eth1'))).toMatchObject({ ok: false, line: 3 });
    expect(parseFailoverPolicy('   Standby Adapters: vmnic1\n')).toMatchObject({ ok: false });
    expect(parseFailoverPolicy(`${fo('vmnic0')}   Failback: sometimes\n`)).toMatchObject({ ok: false, line: 6 });
  });
});

describe('esxcli system settings advanced list -o (shape from a real 5.0 capture; BlockGuestBPDU RECONSTRUCTED)', () => {
  const block = (path: string, type = 'integer', iv = '1', extra = ''): string =>
    `   Path: ${path}\n   Type: ${type}\n   Int Value: ${iv}\n   Default Int Value: 0\n   Min Value: 0\n   Max Value: 1\n   Description: d\n${extra}`;

  it('reads the integer option; lines newer releases add are kept raw', () => {
    const a = value(parseAdvancedInt(block(BLOCK_GUEST_BPDU_PATH, 'integer', '1', '   Host Specific: false\n   Impact: none\n'), BLOCK_GUEST_BPDU_PATH));
    expect([a.intValue, a.defaultIntValue, a.minValue, a.maxValue, a.extra]).toEqual([1, 0, 0, 1, { 'Host Specific': 'false', Impact: 'none' }]);
    expect(blockGuestBpduOn(a)).toBe(true);
    expect(blockGuestBpduOn(value(parseAdvancedInt(fixture('advanced-list-BlockGuestBPDU_RECONSTRUCTED'), BLOCK_GUEST_BPDU_PATH)))).toBe(false);
    expect(value(parseAdvancedInt(block('/X/Y', 'integer', '-1'), '/X/Y')).intValue).toBe(-1);
  });

  it('refuses the output of another option, a string option, a non-integer, a path listed twice', () => {
    expect(parseAdvancedInt(block('/VMFS3/EnableBlockDelete'), BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false, line: 1 });
    expect(parseAdvancedInt(block(BLOCK_GUEST_BPDU_PATH, 'string'), BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false, line: 2 });
    expect(parseAdvancedInt(block(BLOCK_GUEST_BPDU_PATH, 'integer', '1.5'), BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false, line: 3 });
    expect(parseAdvancedInt(block(BLOCK_GUEST_BPDU_PATH, 'integer', '4294967296'), BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false, line: 3 });
    const twice = `${block(BLOCK_GUEST_BPDU_PATH)}\n${block(BLOCK_GUEST_BPDU_PATH)}`;
    expect(parseAdvancedInt(twice, BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false, line: 9 });
    expect(parseAdvancedInt('', BLOCK_GUEST_BPDU_PATH)).toMatchObject({ ok: false });
  });
});

describe('esxcli network vm list', () => {
  it('keeps repeated port groups (two vNICs on one port group) and names with spaces/commas by header offsets', () => {
    const g = value(parseVmList(fixture('vm-list_esxi67-vagrant-blog')));
    expect(g.find((v) => v.name === 'gns3_vm')).toEqual({ worldId: '4455345', name: 'gns3_vm', numPorts: 2, networks: ['Server Network', 'Server Network'], networksComplete: true });
    const ftd = value(parseVmList(fixture('vm-list_rayd62-blog'))).find((v) => v.name === 'FTD_Lab')!;
    expect(ftd.networks.filter((n) => n === 'Security_Lab_Site1_Inside')).toHaveLength(2);
    // The esximon Go test's row: a VM name with a comma, one column wider than its neighbours.
    const t = 'World ID  Name                            Num Ports  Networks\n--------  ------------------------------  ---------  --------\n 2100710  Windows Server 2022, with GPU           2  VM Network, Internal\n';
    expect(value(parseVmList(t))[0]).toMatchObject({ name: 'Windows Server 2022, with GPU', networks: ['VM Network', 'Internal'] });
  });

  it('flags a Networks list that does not map one per port; refuses bad World IDs, duplicates, a missing dashes row', () => {
    const row = (id: string, ports: string, nets: string): string => `${id.padStart(8)}  vm    ${ports.padStart(9)}  ${nets}\n`;
    const t = (id: string, ports: string, nets: string): string => `World ID  Name  Num Ports  Networks\n--------  ----  ---------  --------\n${row(id, ports, nets)}`;
    expect(value(parseVmList(t('1', '2', 'a, b, c')))[0]!.networksComplete).toBe(false);
    expect(parseVmList(t('0', '1', 'a'))).toMatchObject({ ok: false, line: 3 });
    expect(parseVmList(t('12x', '1', 'a'))).toMatchObject({ ok: false, line: 3 });
    expect(parseVmList(t('5', '1', 'a, , b'))).toMatchObject({ ok: false, line: 3 });
    const dup = `${t('5', '1', 'a')}${row('5', '1', 'a')}`;
    expect(parseVmList(dup)).toMatchObject({ ok: false, line: 4 });
    expect(parseVmList('World ID  Name  Num Ports  Networks\n1  a  1  b\n')).toMatchObject({ ok: false });
    expect(value(parseVmList('World ID  Name  Num Ports  Networks\n--------  ----  ---------  --------\n'))).toEqual([]);
  });
});

describe('commands: the new read ops', () => {
  it('build exact argv', () => {
    expect(toArgv({ op: 'port-stats', portId: '33554578' })).toEqual({ ok: true, value: ['esxcli', 'network', 'port', 'stats', 'get', '-p', '33554578'] });
    expect(toArgv({ op: 'pg-security', portgroup: 'Security_Lab_Site1_Inside' })).toMatchObject({ ok: true, value: ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'security', 'get', '-p', 'Security_Lab_Site1_Inside'] });
    expect(toArgv({ op: 'pg-failover', portgroup: 'VM Network' })).toMatchObject({ ok: true, value: ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'failover', 'get', '-p', 'VM Network'] });
    expect(toArgv({ op: 'advanced-get', path: '/Net/BlockGuestBPDU' })).toMatchObject({ ok: true, value: ['esxcli', 'system', 'settings', 'advanced', 'list', '-o', '/Net/BlockGuestBPDU'] });
    expect(ADVANCED_PATHS).toEqual(['/Net/BlockGuestBPDU']);
  });

  it('refuse anything else before building argv', () => {
    const bad = [
      { op: 'port-stats', portId: '-1' },
      { op: 'port-stats', portId: '33554578; reboot' },
      { op: 'port-stats', portId: '4294967296' },
      { op: 'port-stats', portId: '' },
      { op: 'port-stats', portId: 33554578 },
      { op: 'pg-security', portgroup: "VM Network'; reboot; '" },
      { op: 'pg-failover', portgroup: '-p' },
      { op: 'pg-failover', portgroup: '' },
      { op: 'advanced-get', path: '/UserVars/SuppressShellWarning' },
      { op: 'advanced-get', path: '/Net/BlockGuestBPDU -i 1' },
    ] as unknown as EsxOp[];
    for (const op of bad) expect(toArgv(op).ok, JSON.stringify(op)).toBe(false);
  });
});

// --- properties ---------------------------------------------------------------------------------

const RUNS = 300;

describe('properties', () => {
  it('no parser throws, whatever the input', () => assertNeverThrows(ALL_PARSERS, RUNS));

  it('no parser throws on mutated real or reconstructed outputs; an error carries a line inside the text', () => assertMutationsFailInside(FIXTURES.map(([n]) => fixture(n)), ALL_PARSERS, RUNS));

  it('getallvms: any name, datastore and path without " [" round-trip, however the columns are padded', () => {
    const word = fc.stringMatching(/^[A-Za-z0-9_.()-]{1,10}$/);
    const spaced = fc.array(word, { minLength: 1, maxLength: 3 }).map((w) => w.join(' '));
    const row = fc.record({ name: spaced, ds: spaced, dir: spaced, guest: fc.stringMatching(/^[a-z0-9_]{1,12}Guest$/), hw: fc.integer({ min: 4, max: 21 }), pad: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 4, maxLength: 4 }) });
    fc.assert(
      fc.property(fc.uniqueArray(row, { minLength: 1, maxLength: 5, selector: (r) => r.name }), (rows) => {
        const text = `Vmid   Name   File   Guest OS   Version   Annotation\n${rows
          .map((r, i) => `${i + 1}${' '.repeat(r.pad[0]!)}${r.name}${' '.repeat(r.pad[1]!)}[${r.ds}] ${r.dir}/x.vmx${' '.repeat(r.pad[2]!)}${r.guest}${' '.repeat(r.pad[3]!)}vmx-${r.hw}`)
          .join('\n')}\n`;
        const got = value(parseGetAllVms(text));
        expect(got.map((v) => [v.name, v.datastore, v.file, v.guestOs, v.version])).toEqual(rows.map((r) => [r.name, r.ds, `[${r.ds}] ${r.dir}/x.vmx`, r.guest, `vmx-${r.hw}`]));
      }),
      { numRuns: RUNS },
    );
  });

  it('port stats: any u64 counters in any order read back as Number(digits)', () => {
    const keys = Object.keys(PORT_STATS_LABELS) as Array<keyof typeof PORT_STATS_LABELS>;
    fc.assert(
      fc.property(fc.shuffledSubarray(keys, { minLength: keys.length, maxLength: keys.length }), fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { minLength: 12, maxLength: 12 }), (ks, vals) => {
        const s = value(parsePortStats(`Packet statistics for port 1\n${ks.map((k, i) => `   ${PORT_STATS_LABELS[k]}: ${vals[i]}`).join('\n')}\n`));
        ks.forEach((k, i) => expect(s[k]).toBe(Number(vals[i])));
      }),
      { numRuns: RUNS },
    );
  });
});
