// Which VM each watched vNIC belongs to, from the host's own answers (session 20): `esxcli network
// vm list` gives the World ID, `esxcli network vm port list -w <World ID>` that VM's ports, and the
// rates carry `<host>/world <World ID>` per VM port (PortRates.esxiVmId), so the detector can tell
// two vNICs of ONE guest forwarding to each other (a loop through it) from one VM's exchange with
// the world. The VM lists and the port list are real captures of one host (test/fixtures/esxcli/
// SOURCES.txt: fnOS_2, World ID 2270220, one vNIC on vSwitch0/"VM Network" and one on
// vSwitch1/"VM Network1"). No vswitch or port group list of that host was captured: those two
// are the captured elatov layouts with the second vSwitch and port group renamed to this host's.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostRates } from '../../agent/esxi/host-rates.js';
import { vmIdOf, watchedPorts } from '../../agent/esxi/ports.js';
import { readInventory } from '../../agent/esxi/read-inventory.js';
import type { RemoteExec } from '../../agent/esxi/session.js';
import { testPolicy } from '../../agent/testing/policy.js';
import type { EsxiHostPolicy } from '../../agent/types.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'esxcli');
const fixture = (name: string): string => readFileSync(join(DIR, `${name}.txt`), 'utf8');

const vswitchText = fixture('vswitch-standard-list_elatov')
  .replace(/^storage$/m, 'vSwitch1')
  .replace('Name: storage', 'Name: vSwitch1')
  .replace('Uplinks: vmnic32', 'Uplinks: vmnic1')
  .replace('Portgroups: nfs-for-vm, iscsi', 'Portgroups: VM Network1');
const pgText = `${fixture('portgroup-list_elatov').trimEnd()}\n${'VM Network1'.padEnd(18)}  ${'vSwitch1'.padEnd(14)}  ${'1'.padStart(14)}  ${'0'.padStart(7)}\n`;
const answers: Array<[RegExp, string]> = [
  [/^esxcli network nic list$/, fixture('nic-list_2vmnic_masked-mac_unresolved-doc')],
  [/^esxcli network vswitch standard list$/, vswitchText],
  [/^esxcli network vswitch standard portgroup list$/, pgText],
  [/^esxcli network vm list$/, fixture('vm-list_unresolved-doc')],
  [/^vim-cmd vmsvc\/getallvms$/, fixture('vim-cmd-getallvms_unresolved-doc')],
  [/^esxcli network vm port list -w 2270220$/, fixture('vm-port-list_w2270220_unresolved-doc')],
];
const exec: RemoteExec = async (argv) => {
  const line = argv.join(' ');
  const a = answers.find(([re]) => re.test(line));
  return a ? { code: 0, stdout: a[1], stderr: '', durationMs: 1 } : { code: 1, stdout: '', stderr: `no answer for ${line}`, durationMs: 1 };
};

const host: EsxiHostPolicy = {
  name: 'esx1', address: '192.0.2.21', port: 22, user: 'root', identityFile: '/k', knownHostsFile: '/kh',
  sampleMs: 100, staleMs: 1000, connectTimeoutMs: 3000, commandTimeoutMs: 5000, counters: 'vsish',
  vmnics: [{ name: 'vmnic0', role: 'uplink', protected: false }, { name: 'vmnic1', role: 'uplink', protected: false }],
  portgroups: ['VM Network', 'VM Network1'], protectedPortgroups: [], watchBridgingVms: true,
  actions: ['vnic-disconnect', 'portgroup-quarantine', 'nic-down'], quarantineVlan: 4001, thresholds: { holdSamples: 2 }, line: 1,
};
const log = { info: (): void => undefined, warn: (): void => undefined };

describe('the VM of each vNIC, from vm list + vm port list, into the rates', () => {
  it('fnOS_2 (World ID 2270220): its vNIC on vSwitch0 and its vNIC on vSwitch1 carry the same VM identity; the vmnics none', async () => {
    const { inventory, problems } = await readInventory(exec, { host: 'esx1', onlyPortgroups: [], alsoVms: ['fnOS_2'] });
    expect(problems).toEqual([]);
    expect(inventory.vms.map((v) => [v.name, v.worldId, v.nics.map((n) => [n.mac, n.vswitch, n.portgroup, n.portId])])).toEqual([
      ['fnOS_2', '2270220', [['00:0c:29:72:3f:e3', 'vSwitch0', 'VM Network', 67108881], ['00:0c:29:72:3f:ed', 'vSwitch1', 'VM Network1', 100663312]]],
    ]);
    const { ports } = watchedPorts(testPolicy(), host, inventory);
    const rates = hostRates(host, log);
    rates.set(ports);
    expect(rates.rates().map((r) => [r.port, r.bridge, r.esxiVm, r.esxiVmId, r.esxiVmName])).toEqual([
      ['esx1/vmnic0', 'esx1/vSwitch0', false, '', ''],
      ['esx1/vmnic1', 'esx1/vSwitch1', false, '', ''],
      ['esx1/vnic-000c29723fe3', 'esx1/vSwitch0', true, 'esx1/world 2270220', 'fnOS_2'],
      ['esx1/vnic-000c29723fed', 'esx1/vSwitch1', true, 'esx1/world 2270220', 'fnOS_2'],
    ]);
  });

  it('two VMs of one name are still two VMs (by World ID); by name only where the World ID is unknown; per host', () => {
    expect(vmIdOf('esx1', { kind: 'port', vm: 'fnOS', worldId: '2270066' })).not.toBe(vmIdOf('esx1', { kind: 'port', vm: 'fnOS', worldId: '2340597' }));
    expect(vmIdOf('esx1', { kind: 'port', vm: 'fnOS', worldId: null })).toBe('esx1/vm fnOS');
    expect(vmIdOf('esx2', { kind: 'port', vm: 'fnOS', worldId: '2270066' })).not.toBe(vmIdOf('esx1', { kind: 'port', vm: 'fnOS', worldId: '2270066' }));
    expect(vmIdOf('esx1', { kind: 'nic' })).toBe('');
  });
});
