// The policy's `esxi` section (issue 4): defaults, every error with its file:line:col and field,
// the cross-checks, a policy directory (esxi is taken whole from the last file that writes it),
// and policies/schema.json saying the same as the loader about the values it parses itself.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPortgroupName } from '../../agent/esxi/names.js';
import { ESXI_HOST_DEFAULTS, MAX_ESXI_HOSTS, MAX_ESXI_PORTGROUPS, MAX_ESXI_VMNICS, POLICY_DEFAULTS } from '../../agent/policy/defaults.js';
import { formatPolicyError, type PolicyErrorCode } from '../../agent/policy/errors.js';
import { loadPolicy, parsePolicy } from '../../agent/policy/load.js';
import { effectivePolicy, esxiHostThresholds } from '../../agent/policy/match.js';
import { ESXI_HOST_NAME_RE, ESXI_PATH_RE, ESXI_USER_RE, ESXI_VMNIC_RE, IPV4_RE, POLICY_KEYS } from '../../agent/policy/schema.js';
import { ESXI_ACTION_KINDS, ROLES, type EsxiHostPolicy } from '../../agent/types.js';
import { ok, errs, brief, type Expect } from '../helpers/policy-result.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));


/**
 * A valid one-host policy; `extra` lines are host keys written at line 11 on (6 spaces in), so a
 * value `      key: v` written first sits at 11:(key.length + 9).
 *   line 4: `    - name: esx1` (the host entry starts at col 7; name's value at col 13)
 */
const HOST = (extra = ''): string => `version: 1
esxi:
  hosts:
    - name: esx1
      address: 192.0.2.10
      identityFile: /etc/stormbreaker/esx1_ed25519
      knownHostsFile: /etc/stormbreaker/known_hosts
      quarantineVlan: 4001
      vmnics:
        - { name: vmnic0, role: uplink }
${extra}`;
/** Errors of HOST with one more key `key: value` at line 11. */
const withKey = (key: string, value: string): Expect[] => brief(errs(parsePolicy(HOST(`      ${key}: ${value}\n`), 'p.yaml')));
const at11 = (key: string, code: PolicyErrorCode, field = `esxi.hosts[0].${key}`): Expect[] => [[11, key.length + 9, field, code]];
const host0 = (text: string): EsxiHostPolicy => ok(parsePolicy(text, 'p.yaml')).esxi!.hosts[0]!;

describe('esxi: what loads', () => {
  it('is undefined when absent', () => {
    expect(ok(parsePolicy('version: 1\n', 'p.yaml')).esxi).toBeUndefined();
  });

  it('fills every default; line is the host entry line', () => {
    expect(ok(parsePolicy(HOST(), 'p.yaml')).esxi).toEqual({
      hosts: [
        {
          name: 'esx1',
          address: '192.0.2.10',
          port: 22,
          user: 'root',
          identityFile: '/etc/stormbreaker/esx1_ed25519',
          knownHostsFile: '/etc/stormbreaker/known_hosts',
          sampleMs: 100,
          staleMs: 1000,
          connectTimeoutMs: 5000,
          commandTimeoutMs: 5000,
          counters: 'vsish',
          fuse: 'armed',
          fuseSampleMs: 15,
          fuseLeaseMs: 10000,
          fuseBudget: 2,
          vmnics: [{ name: 'vmnic0', role: 'uplink', protected: false }],
          portgroups: [],
          protectedPortgroups: ['Management Network'],
          watchBridgingVms: true,
          actions: ['vnic-disconnect', 'portgroup-quarantine', 'nic-down'],
          quarantineVlan: 4001,
          thresholds: {},
          line: 4,
        },
      ],
    });
  });

  it('keeps every written value', () => {
    const h = host0(`version: 1
esxi:
  hosts:
    - name: lab-esx-02
      address: 10.0.0.2
      port: 2222
      user: svc_sb.1
      identityFile: /var/lib/stormbreaker/esxi/id+2@x,y:z=w~
      knownHostsFile: /var/lib/stormbreaker/esxi/known_hosts
      sampleMs: 250
      staleMs: 500
      connectTimeoutMs: 100
      commandTimeoutMs: 60000
      counters: esxcli
      fuse: stream
      fuseSampleMs: 5
      fuseLeaseMs: 600000
      fuseBudget: 0
      vmnics:
        - { name: vmnic999, role: vm, protected: true }
        - { name: vmnic1, role: other }
      portgroups: ["VM Network", "lab (1)%[a]/b"]
      protectedPortgroups: []
      watchBridgingVms: false
      actions: [nic-down]
      thresholds: { floodPps: 1000, clearPps: 200, holdSamples: 3 }
`);
    expect(h).toEqual({
      name: 'lab-esx-02',
      address: '10.0.0.2',
      port: 2222,
      user: 'svc_sb.1',
      identityFile: '/var/lib/stormbreaker/esxi/id+2@x,y:z=w~',
      knownHostsFile: '/var/lib/stormbreaker/esxi/known_hosts',
      sampleMs: 250,
      staleMs: 500,
      connectTimeoutMs: 100,
      commandTimeoutMs: 60000,
      counters: 'esxcli',
      fuse: 'stream',
      fuseSampleMs: 5,
      fuseLeaseMs: 600000,
      fuseBudget: 0,
      vmnics: [
        { name: 'vmnic999', role: 'vm', protected: true },
        { name: 'vmnic1', role: 'other', protected: false },
      ],
      portgroups: ['VM Network', 'lab (1)%[a]/b'],
      protectedPortgroups: [],
      watchBridgingVms: false,
      actions: ['nic-down'],
      // portgroup-quarantine not allowed: no VLAN needed.
      quarantineVlan: null,
      thresholds: { floodPps: 1000, clearPps: 200, holdSamples: 3 },
      line: 4,
    });
  });

  it('actions may be written in any order; they are kept smallest scope first', () => {
    expect(host0(HOST('      actions: [nic-down, vnic-disconnect]\n')).actions).toEqual(['vnic-disconnect', 'nic-down']);
    expect(host0(HOST('      actions: [nic-down, portgroup-quarantine, vnic-disconnect]\n')).actions).toEqual([...ESXI_ACTION_KINDS]);
  });

  it('a mgmt vmnic is protected unless it says otherwise (as a local mgmt rule is)', () => {
    const text = HOST('      vmnics:\n').replace('      vmnics:\n        - { name: vmnic0, role: uplink }\n', '');
    const h = host0(`${text}        - { name: vmnic0, role: mgmt }\n        - { name: vmnic1, role: mgmt, protected: false }\n        - { name: vmnic2, role: uplink, protected: true }\n`);
    expect(h.vmnics).toEqual([
      { name: 'vmnic0', role: 'mgmt', protected: true },
      { name: 'vmnic1', role: 'mgmt', protected: false },
      { name: 'vmnic2', role: 'uplink', protected: true },
    ]);
  });

  it('quarantineVlan: null (or ~, or nothing) is no VLAN, fine when quarantine is not allowed', () => {
    for (const v of ['null', '~', '']) {
      const h = host0(HOST(`      actions: [vnic-disconnect, nic-down]\n`).replace('quarantineVlan: 4001', `quarantineVlan: ${v}`));
      expect(h.quarantineVlan, v).toBeNull();
    }
    // A VLAN written while quarantine is not allowed is kept (and unused): harmless, and it
    // lets an operator take portgroup-quarantine out of actions without deleting the VLAN.
    expect(host0(HOST('      actions: [nic-down]\n')).quarantineVlan).toBe(4001);
  });

  it('bounds are inclusive where the spec says so', () => {
    const h = host0(HOST('      port: 65535\n      sampleMs: 10\n      staleMs: 20\n      connectTimeoutMs: 60000\n      commandTimeoutMs: 100\n').replace('4001', '4094'));
    expect([h.port, h.sampleMs, h.staleMs, h.connectTimeoutMs, h.commandTimeoutMs, h.quarantineVlan]).toEqual([65535, 10, 20, 60000, 100, 4094]);
    expect(host0(HOST('      port: 1\n      sampleMs: 10000\n      staleMs: 60000\n').replace('4001', '1'))).toMatchObject({ port: 1, sampleMs: 10000, staleMs: 60000, quarantineVlan: 1 });
  });

  it('hosts keep file order; aliases work as elsewhere', () => {
    const p = ok(
      parsePolicy(
        `version: 1
esxi:
  hosts:
    - &h { name: b, address: 192.0.2.2, identityFile: /k, knownHostsFile: /kh, quarantineVlan: 7, vmnics: [{ name: vmnic0, role: uplink }], thresholds: &t { holdSamples: 4 } }
    - { name: a, address: 192.0.2.1, identityFile: /k, knownHostsFile: /kh, actions: [nic-down], vmnics: *vn, thresholds: *t }
    - name: c
      address: 192.0.2.3
      identityFile: /k
      knownHostsFile: /kh
      actions: [nic-down]
      vmnics: &vn2 [{ name: vmnic3, role: vm }]
`.replace('vmnics: *vn,', 'vmnics: [{ name: vmnic1, role: uplink }],'),
        'p.yaml',
      ),
    );
    expect(p.esxi!.hosts.map((h) => [h.name, h.line, h.thresholds, h.vmnics[0]!.name])).toEqual([
      ['b', 4, { holdSamples: 4 }, 'vmnic0'],
      ['a', 5, { holdSamples: 4 }, 'vmnic1'],
      ['c', 6, {}, 'vmnic3'],
    ]);
  });

  it('the loaded policy shares no list with the frozen defaults', () => {
    const h = host0(HOST());
    h.actions.pop();
    h.protectedPortgroups.push('x');
    h.portgroups.push('y');
    expect(ESXI_HOST_DEFAULTS.actions).toEqual([...ESXI_ACTION_KINDS]);
    expect(ESXI_HOST_DEFAULTS.protectedPortgroups).toEqual(['Management Network']);
    expect(ESXI_HOST_DEFAULTS.portgroups).toEqual([]);
  });

  it('effectivePolicy (policy show --json) lists the hosts, thresholds merged over defaults', () => {
    const p = ok(parsePolicy(HOST('      thresholds: { holdSamples: 3 }\n').replace('version: 1\n', 'version: 1\ndefaults: { floodPps: 30000 }\n'), 'p.yaml'));
    const h = p.esxi!.hosts[0]!;
    expect(esxiHostThresholds(p, h)).toEqual({ ...POLICY_DEFAULTS.defaults, floodPps: 30000, holdSamples: 3 });
    const eff = effectivePolicy(p, []);
    expect(eff.esxi).toEqual([{ ...h, thresholds: esxiHostThresholds(p, h), fromHost: ['holdSamples'] }]);
    // The JSON `policy show --json` prints (it spreads effectivePolicy's result).
    expect(JSON.parse(JSON.stringify({ file: p.file, hash: p.hash, ...eff })).esxi[0]).toMatchObject({ name: 'esx1', line: 5, thresholds: { floodPps: 30000, holdSamples: 3 } });
    expect(effectivePolicy(ok(parsePolicy('version: 1\n', 'p.yaml')), []).esxi).toBeUndefined();
  });

  it('policies/esxi-lab.yaml loads with the lab host', async () => {
    const p = ok(await loadPolicy(join(ROOT, 'policies/esxi-lab.yaml')));
    expect(p.ports).toEqual([]);
    expect(p.esxi!.hosts).toEqual([
      {
        name: 'esx1',
        address: '192.168.254.1',
        port: 22,
        user: 'root',
        identityFile: '/var/lib/stormbreaker/esxi/esx1_ed25519',
        knownHostsFile: '/var/lib/stormbreaker/esxi/known_hosts',
        sampleMs: 100,
        staleMs: 1000,
        connectTimeoutMs: 5000,
        commandTimeoutMs: 5000,
        counters: 'vsish',
        fuse: 'armed',
        fuseSampleMs: 15,
        fuseLeaseMs: 10000,
        fuseBudget: 2,
        vmnics: [
          { name: 'vmnic0', role: 'uplink', protected: false },
          { name: 'vmnic1', role: 'uplink', protected: false },
        ],
        portgroups: ['VM Network'],
        protectedPortgroups: ['Management Network'],
        watchBridgingVms: true,
        actions: ['vnic-disconnect', 'portgroup-quarantine', 'nic-down'],
        quarantineVlan: 4001,
        thresholds: { holdSamples: 2, floodHoldMs: 300 },
        line: expect.any(Number),
      },
    ]);
  });
});

describe('esxi: every error, at its file:line:col and field', () => {
  it('the section: {} without hosts, not a mapping, unknown keys, an empty or wrong hosts list', () => {
    const b = (t: string): Expect[] => brief(errs(parsePolicy(t, 'p.yaml')));
    expect(b('version: 1\nesxi: {}\n')).toEqual([[2, 7, 'esxi.hosts', 'E_POLICY_MISSING']]);
    // Where the mapping starts (as for metrics.listen).
    expect(b('version: 1\nesxi:\n  host: []\n')).toEqual([
      [3, 3, 'esxi.host', 'E_POLICY_UNKNOWN_KEY'],
      [3, 3, 'esxi.hosts', 'E_POLICY_MISSING'],
    ]);
    expect(errs(parsePolicy('version: 1\nesxi:\n  host: []\n', 'p.yaml'))[0]!.message).toContain('did you mean hosts?');
    expect(b('version: 1\nesxi: 5\n')).toEqual([[2, 7, 'esxi', 'E_POLICY_TYPE']]);
    expect(b('version: 1\nesxi:\n')).toEqual([[2, 1, 'esxi', 'E_POLICY_TYPE']]);
    expect(b('version: 1\nesxi: { hosts: [] }\n')).toEqual([[2, 16, 'esxi.hosts', 'E_POLICY_RANGE']]);
    expect(b('version: 1\nesxi:\n  hosts: { name: esx1 }\n')).toEqual([[3, 10, 'esxi.hosts', 'E_POLICY_TYPE']]);
    expect(b('version: 1\nesxi:\n  hosts:\n    - esx1\n    -\n')).toEqual([
      [4, 7, 'esxi.hosts[0]', 'E_POLICY_TYPE'],
      [5, 6, 'esxi.hosts[1]', 'E_POLICY_TYPE'],
    ]);
  });

  it('each required host key, missing, is reported at the host entry', () => {
    for (const [key, line] of [['name', 4], ['address', 5], ['identityFile', 6], ['knownHostsFile', 7]] as const) {
      const lines = HOST().split('\n');
      // Keep the entry's `- ` when the first key goes.
      lines[line - 1] = line === 4 ? '    - port: 22' : '      port: 22';
      expect(brief(errs(parsePolicy(lines.join('\n'), 'p.yaml'))), key).toEqual([[4, 7, `esxi.hosts[0].${key}`, 'E_POLICY_MISSING']]);
    }
    const noVmnics = HOST().replace('      vmnics:\n        - { name: vmnic0, role: uplink }\n', '');
    expect(brief(errs(parsePolicy(noVmnics, 'p.yaml')))).toEqual([[4, 7, 'esxi.hosts[0].vmnics', 'E_POLICY_MISSING']]);
  });

  it('unknown host and vmnic keys, with did-you-mean', () => {
    const e = errs(parsePolicy(HOST('      identityfile: /k\n      vmnic:\n        - { nam: vmnic1, role: vm }\n'), 'p.yaml'));
    expect(brief(e)).toEqual([
      [11, 7, 'esxi.hosts[0].identityfile', 'E_POLICY_UNKNOWN_KEY'],
      [12, 7, 'esxi.hosts[0].vmnic', 'E_POLICY_UNKNOWN_KEY'],
    ]);
    expect(e[0]!.message).toContain('did you mean identityFile?');
    expect(e[1]!.message).toContain('did you mean vmnics?');
    const v = errs(parsePolicy(HOST().replace('{ name: vmnic0, role: uplink }', '{ nam: vmnic0, role: uplink }'), 'p.yaml'));
    expect(brief(v)).toEqual([
      [10, 11, 'esxi.hosts[0].vmnics[0].name', 'E_POLICY_MISSING'],
      [10, 13, 'esxi.hosts[0].vmnics[0].nam', 'E_POLICY_UNKNOWN_KEY'],
    ]);
    expect(v[1]!.message).toContain('did you mean name?');
  });

  it('name', () => {
    for (const bad of ['ESX1', '-esx', 'esx_1', 'esx/1', 'a'.repeat(33), '""']) {
      const t = HOST().replace('name: esx1', `name: ${bad}`);
      expect(brief(errs(parsePolicy(t, 'p.yaml'))), bad).toEqual([[4, 13, 'esxi.hosts[0].name', 'E_POLICY_VALUE']]);
    }
    expect(brief(errs(parsePolicy(HOST().replace('name: esx1', 'name: 1'), 'p.yaml')))).toEqual([[4, 13, 'esxi.hosts[0].name', 'E_POLICY_TYPE']]);
    expect(host0(HOST().replace('name: esx1', `name: 0${'a-'.repeat(15)}b`)).name).toHaveLength(32);
  });

  it('address', () => {
    for (const bad of ['esx1.lab', '192.0.2.010', '256.0.0.1', '192.0.2', '::1', '"192.0.2.10 "']) {
      expect(brief(errs(parsePolicy(HOST().replace('192.0.2.10', bad), 'p.yaml'))), bad).toEqual([[5, 16, 'esxi.hosts[0].address', 'E_POLICY_VALUE']]);
    }
    expect(brief(errs(parsePolicy(HOST().replace('192.0.2.10', '3232235521'), 'p.yaml')))).toEqual([[5, 16, 'esxi.hosts[0].address', 'E_POLICY_TYPE']]);
  });

  it('identityFile and knownHostsFile: absolute, and nothing ssh would expand or split', () => {
    for (const bad of ['relative/key', '~/key', '/', '"/a key"', '"/a\\tkey"', '/a%h', '/a$HOME', '"/a\\"b"', "/a'b", '"/a\\\\b"', '/é', '"/a\\nb"']) {
      const e = errs(parsePolicy(HOST().replace('/etc/stormbreaker/esx1_ed25519', bad).replace('/etc/stormbreaker/known_hosts', bad), 'p.yaml'));
      expect(brief(e), bad).toEqual([
        [6, 21, 'esxi.hosts[0].identityFile', 'E_POLICY_VALUE'],
        [7, 23, 'esxi.hosts[0].knownHostsFile', 'E_POLICY_VALUE'],
      ]);
    }
    expect(brief(errs(parsePolicy(HOST().replace('/etc/stormbreaker/known_hosts', `/${'a'.repeat(4096)}`), 'p.yaml')))).toEqual([[7, 23, 'esxi.hosts[0].knownHostsFile', 'E_POLICY_VALUE']]);
    expect(host0(HOST().replace('/etc/stormbreaker/known_hosts', `/${'a'.repeat(4095)}`)).knownHostsFile).toHaveLength(4096);
  });

  it('port, user, counters', () => {
    for (const v of ['0', '65536', '22.5', '-1']) expect(withKey('port', v), v).toEqual(at11('port', v === '22.5' ? 'E_POLICY_TYPE' : 'E_POLICY_RANGE'));
    expect(withKey('port', '"22"')).toEqual(at11('port', 'E_POLICY_TYPE'));
    expect(errs(parsePolicy(HOST('      port: "22"\n'), 'p.yaml'))[0]!.message).toContain('remove the quotes');
    for (const v of ['Root', '1admin', 'a b', '"a:b"', 'a'.repeat(33), '""', '-x']) expect(withKey('user', v), v).toEqual(at11('user', 'E_POLICY_VALUE'));
    expect(withKey('user', '5')).toEqual(at11('user', 'E_POLICY_TYPE'));
    for (const v of ['snmp', 'VSISH', '""']) expect(withKey('counters', v), v).toEqual(at11('counters', 'E_POLICY_VALUE'));
    for (const v of ['on', 'ARMED', '""']) expect(withKey('fuse', v), v).toEqual(at11('fuse', 'E_POLICY_VALUE'));
    expect(withKey('fuse', 'true')).toEqual(at11('fuse', 'E_POLICY_TYPE'));
    for (const v of ['yes', '1', '"true"']) expect(withKey('watchBridgingVms', v), v).toEqual(at11('watchBridgingVms', 'E_POLICY_TYPE'));
  });

  it('timers', () => {
    const cases: Array<[string, string]> = [
      ['sampleMs', '9'], ['sampleMs', '10001'], ['sampleMs', '0'],
      ['staleMs', '19'], ['staleMs', '60001'],
      ['connectTimeoutMs', '99'], ['connectTimeoutMs', '60001'],
      ['commandTimeoutMs', '99.9'], ['commandTimeoutMs', '60000.5'],
      ['fuseSampleMs', '4'], ['fuseSampleMs', '101'], ['fuseLeaseMs', '999'], ['fuseLeaseMs', '600001'],
      ['fuseBudget', '-1'], ['fuseBudget', '17'],
    ];
    for (const [k, v] of cases) expect(withKey(k, v), `${k} ${v}`).toEqual(at11(k, 'E_POLICY_RANGE'));
    expect(withKey('sampleMs', '.nan')).toEqual(at11('sampleMs', 'E_POLICY_RANGE'));
    expect(withKey('staleMs', 'soon')).toEqual(at11('staleMs', 'E_POLICY_TYPE'));
    expect(withKey('fuseBudget', '1.5')).toEqual(at11('fuseBudget', 'E_POLICY_TYPE'));
  });

  it('vmnics', () => {
    const vm = (list: string): Expect[] => brief(errs(parsePolicy(HOST().replace('      vmnics:\n        - { name: vmnic0, role: uplink }\n', `      vmnics: ${list}\n`), 'p.yaml')));
    // `      vmnics: ` is 14 characters: the list starts at col 15.
    expect(vm('[]')).toEqual([[9, 15, 'esxi.hosts[0].vmnics', 'E_POLICY_RANGE']]);
    expect(vm('vmnic0')).toEqual([[9, 15, 'esxi.hosts[0].vmnics', 'E_POLICY_TYPE']]);
    expect(vm('[vmnic0]')).toEqual([[9, 16, 'esxi.hosts[0].vmnics[0]', 'E_POLICY_TYPE']]);
    for (const bad of ['eth0', 'vmnic', 'vmnic1000', 'vmnic-1', 'VMNIC0', 'vmnic01a', '"vmnic0 "']) {
      expect(vm(`[{ name: ${bad}, role: uplink }]`), bad).toEqual([[9, 24, 'esxi.hosts[0].vmnics[0].name', 'E_POLICY_VALUE']]);
    }
    expect(vm('[{ name: vmnic0 }]')).toEqual([[9, 16, 'esxi.hosts[0].vmnics[0].role', 'E_POLICY_MISSING']]);
    expect(vm('[{ name: vmnic0, role: uplnk }]')).toEqual([[9, 38, 'esxi.hosts[0].vmnics[0].role', 'E_POLICY_VALUE']]);
    expect(vm('[{ name: vmnic0, role: uplink, protected: yes }]')).toEqual([[9, 57, 'esxi.hosts[0].vmnics[0].protected', 'E_POLICY_TYPE']]);
    expect(vm('[{ role: vm }]')).toEqual([[9, 16, 'esxi.hosts[0].vmnics[0].name', 'E_POLICY_MISSING']]);
  });

  it('portgroups and protectedPortgroups: names as agent/esxi/names.ts accepts them', () => {
    for (const key of ['portgroups', 'protectedPortgroups']) {
      const col = key.length + 9;
      for (const bad of ['"a,b"', '"a$b"', '"a\'b"', '"a`b"', '"a\\\\b"', '"a\\"b"', '" lead"', '"trail "', '"-x"', '""', '"tab\\tx"', '"é"', `"${'x'.repeat(256)}"`]) {
        expect(withKey(key, `[${bad}]`), `${key} ${bad}`).toEqual([[11, col + 1, `esxi.hosts[0].${key}[0]`, 'E_POLICY_VALUE']]);
      }
      expect(withKey(key, '[1]')).toEqual([[11, col + 1, `esxi.hosts[0].${key}[0]`, 'E_POLICY_TYPE']]);
      expect(withKey(key, '"VM Network"')).toEqual([[11, col, `esxi.hosts[0].${key}`, 'E_POLICY_TYPE']]);
      expect(host0(HOST(`      ${key}: ["${'x'.repeat(255)}", "a (b) [c] %d /e"]\n`))[key as 'portgroups']).toHaveLength(2);
    }
  });

  it('actions', () => {
    expect(withKey('actions', '[]')).toEqual(at11('actions', 'E_POLICY_RANGE'));
    expect(withKey('actions', 'nic-down')).toEqual(at11('actions', 'E_POLICY_TYPE'));
    // `      actions: [` is 16 characters: the first item is at col 17, the second 10 further on.
    expect(withKey('actions', '[nic-down, reboot]')).toEqual([[11, 27, 'esxi.hosts[0].actions[1]', 'E_POLICY_VALUE']]);
    expect(withKey('actions', '[link-down]')).toEqual([[11, 17, 'esxi.hosts[0].actions[0]', 'E_POLICY_VALUE']]);
  });

  it('quarantineVlan', () => {
    const q = (v: string): Expect[] => brief(errs(parsePolicy(HOST().replace('quarantineVlan: 4001', `quarantineVlan: ${v}`), 'p.yaml')));
    for (const v of ['0', '4095', '-1', '65536']) expect(q(v), v).toEqual([[8, 23, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_RANGE']]);
    for (const v of ['1.5', '"4001"', 'x', 'true', '[4001]']) expect(q(v), v).toEqual([[8, 23, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_TYPE']]);
  });

  it('thresholds: the same keys and ranges as defaults', () => {
    const e = errs(parsePolicy(HOST('      thresholds:\n        holdSamples: 0\n        floodpps: 1\n        broadcastShare: 2\n'), 'p.yaml'));
    expect(brief(e)).toEqual([
      [12, 22, 'esxi.hosts[0].thresholds.holdSamples', 'E_POLICY_RANGE'],
      [13, 9, 'esxi.hosts[0].thresholds.floodpps', 'E_POLICY_UNKNOWN_KEY'],
      [14, 25, 'esxi.hosts[0].thresholds.broadcastShare', 'E_POLICY_RANGE'],
    ]);
    expect(e[1]!.message).toContain('did you mean floodPps?');
    expect(withKey('thresholds', '5')).toEqual(at11('thresholds', 'E_POLICY_TYPE'));
  });

  it('at most 64 hosts, 64 vmnics per host, 256 port group names (reported at the list)', () => {
    const hostLine = (i: number): string => `    - { name: h${i}, address: 192.0.2.1, identityFile: /k, knownHostsFile: /kh, actions: [nic-down], vmnics: [{ name: vmnic0, role: uplink }] }\n`;
    const hosts = (n: number): string => `version: 1\nesxi:\n  hosts:\n${Array.from({ length: n }, (_, i) => hostLine(i)).join('')}`;
    expect(ok(parsePolicy(hosts(MAX_ESXI_HOSTS), 'p.yaml')).esxi!.hosts).toHaveLength(64);
    expect(brief(errs(parsePolicy(hosts(MAX_ESXI_HOSTS + 1), 'p.yaml')))).toEqual([[4, 5, 'esxi.hosts', 'E_POLICY_RANGE']]);
    expect(errs(parsePolicy(hosts(65), 'p.yaml'))[0]!.message).toBe('at most 64 hosts are allowed, got 65');

    const nicList = (n: number): string => HOST().replace('      vmnics:\n        - { name: vmnic0, role: uplink }\n', `      vmnics: [${Array.from({ length: n }, (_, i) => `{ name: vmnic${i}, role: uplink }`).join(', ')}]\n`);
    expect(host0(nicList(MAX_ESXI_VMNICS)).vmnics).toHaveLength(64);
    expect(brief(errs(parsePolicy(nicList(MAX_ESXI_VMNICS + 1), 'p.yaml')))).toEqual([[9, 15, 'esxi.hosts[0].vmnics', 'E_POLICY_RANGE']]);

    const pgs = (n: number): string => `[${Array.from({ length: n }, (_, i) => `"pg ${i}"`).join(', ')}]`;
    expect(host0(HOST(`      portgroups: ${pgs(MAX_ESXI_PORTGROUPS)}\n`)).portgroups).toHaveLength(256);
    expect(withKey('portgroups', pgs(MAX_ESXI_PORTGROUPS + 1))).toEqual(at11('portgroups', 'E_POLICY_RANGE'));
    expect(withKey('protectedPortgroups', pgs(MAX_ESXI_PORTGROUPS + 1))).toEqual(at11('protectedPortgroups', 'E_POLICY_RANGE'));
  });

  it('every error prints as file:line:col: field: message', () => {
    const e = errs(parsePolicy(HOST().replace('vmnic0, role', 'vmnic0x, role'), 'policies/esx.yaml'));
    expect(e.map(formatPolicyError)).toEqual(['policies/esx.yaml:10:19: esxi.hosts[0].vmnics[0].name: "vmnic0x" is not a physical NIC name (vmnic0 ... vmnic999)']);
  });

  it('collects every error of a host, not just the first; a broken host does not hide the next', () => {
    const e = errs(
      parsePolicy(
        `version: 1
esxi:
  hosts:
    - name: Esx1
      address: esx1.lab
      identityFile: key
      knownHostsFile: /kh
      port: 0
      vmnics: [{ name: eth0, role: uplink }]
    - name: esx2
      address: 192.0.2.2
      identityFile: /k
      knownHostsFile: /kh
      vmnics: [{ name: vmnic0, role: uplink }]
`,
        'p.yaml',
      ),
    );
    expect(brief(e)).toEqual([
      [4, 13, 'esxi.hosts[0].name', 'E_POLICY_VALUE'],
      [5, 16, 'esxi.hosts[0].address', 'E_POLICY_VALUE'],
      [6, 21, 'esxi.hosts[0].identityFile', 'E_POLICY_VALUE'],
      [8, 13, 'esxi.hosts[0].port', 'E_POLICY_RANGE'],
      [9, 24, 'esxi.hosts[0].vmnics[0].name', 'E_POLICY_VALUE'],
      // esx2 is fine except for its cross-check: quarantine is allowed by default and needs a VLAN.
      [10, 7, 'esxi.hosts[1].quarantineVlan', 'E_POLICY_MISSING'],
    ]);
  });
});

describe('esxi: duplicates', () => {
  it('host names (even in an entry broken otherwise), naming the first', () => {
    const e = errs(
      parsePolicy(
        `${HOST()}    - { name: esx2, address: 192.0.2.2, identityFile: /k, knownHostsFile: /kh, quarantineVlan: 9, vmnics: [{ name: vmnic0, role: uplink }] }
    - { name: esx1, address: 192.0.2.3, identityFile: /k, knownHostsFile: /kh, quarantineVlan: 9, vmnics: [{ name: vmnic0, role: uplink }] }
    - { name: esx2 }
`,
        'p.yaml',
      ),
    );
    expect(brief(e)).toEqual([
      [12, 15, 'esxi.hosts[2].name', 'E_POLICY_DUPLICATE'],
      [13, 7, 'esxi.hosts[3].address', 'E_POLICY_MISSING'],
      [13, 7, 'esxi.hosts[3].identityFile', 'E_POLICY_MISSING'],
      [13, 7, 'esxi.hosts[3].knownHostsFile', 'E_POLICY_MISSING'],
      [13, 7, 'esxi.hosts[3].vmnics', 'E_POLICY_MISSING'],
      [13, 15, 'esxi.hosts[3].name', 'E_POLICY_DUPLICATE'],
    ]);
    expect(e[0]!.message).toBe('same name as esxi.hosts[0] (line 4): host names prefix their port names (esx1/vmnic0)');
    expect(e[5]!.message).toContain('same name as esxi.hosts[1] (line 11)');
  });

  it('vmnic names per host (the same name on two hosts is fine)', () => {
    const t = HOST().replace('        - { name: vmnic0, role: uplink }\n', '        - { name: vmnic0, role: uplink }\n        - { name: vmnic1, role: vm }\n        - { name: vmnic0, role: nope }\n');
    const e = errs(parsePolicy(t, 'p.yaml'));
    // `        - { name: ` puts the name at col 19; `vmnic0, role: ` puts the role at col 33.
    expect(brief(e)).toEqual([
      [12, 19, 'esxi.hosts[0].vmnics[2].name', 'E_POLICY_DUPLICATE'],
      [12, 33, 'esxi.hosts[0].vmnics[2].role', 'E_POLICY_VALUE'],
    ]);
    expect(e[0]!.message).toBe('same name as esxi.hosts[0].vmnics[0] (line 10): one NIC, one entry');
    const two = ok(parsePolicy(`${HOST()}    - { name: esx2, address: 192.0.2.2, identityFile: /k, knownHostsFile: /kh, actions: [nic-down], vmnics: [{ name: vmnic0, role: uplink }] }\n`, 'p.yaml'));
    expect(two.esxi!.hosts.map((h) => `${h.name}/${h.vmnics[0]!.name}`)).toEqual(['esx1/vmnic0', 'esx2/vmnic0']);
  });

  it('port group names and actions, each repeat where it was written', () => {
    const e = errs(parsePolicy(HOST('      portgroups: ["VM Network", "a", "VM Network", "b,c", "a"]\n      protectedPortgroups: [x, x]\n      actions: [nic-down, nic-down]\n'), 'p.yaml'));
    // Items start at cols 20, 34, 39, 53, 60 (`      portgroups: [` is 19 characters).
    expect(brief(e)).toEqual([
      [11, 39, 'esxi.hosts[0].portgroups[2]', 'E_POLICY_DUPLICATE'],
      [11, 53, 'esxi.hosts[0].portgroups[3]', 'E_POLICY_VALUE'],
      [11, 60, 'esxi.hosts[0].portgroups[4]', 'E_POLICY_DUPLICATE'],
      [12, 32, 'esxi.hosts[0].protectedPortgroups[1]', 'E_POLICY_DUPLICATE'],
      [13, 27, 'esxi.hosts[0].actions[1]', 'E_POLICY_DUPLICATE'],
    ]);
    expect(e[0]!.message).toBe('port group "VM Network" listed twice (first at line 11:20)');
    expect(e[4]!.message).toBe('action nic-down listed twice (first at line 13:17)');
  });
});

describe('esxi: cross-checks (resolve.ts)', () => {
  it('staleMs >= 2 x sampleMs: blames staleMs when written, else sampleMs', () => {
    expect(host0(HOST('      sampleMs: 500\n      staleMs: 1000\n'))).toMatchObject({ sampleMs: 500, staleMs: 1000 });
    const a = errs(parsePolicy(HOST('      sampleMs: 500\n      staleMs: 999\n'), 'p.yaml'));
    expect(brief(a)).toEqual([[12, 16, 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE']]);
    expect(a[0]!.message).toBe('must be >= 2 x sampleMs (1000; sampleMs is 500)');
    const b = errs(parsePolicy(HOST('      staleMs: 150\n'), 'p.yaml'));
    expect(brief(b)).toEqual([[11, 16, 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE']]);
    expect(b[0]!.message).toBe('must be >= 2 x sampleMs (200; sampleMs is 100, the default)');
    const c = errs(parsePolicy(HOST('      sampleMs: 501\n'), 'p.yaml'));
    expect(brief(c)).toEqual([[11, 17, 'esxi.hosts[0].sampleMs', 'E_POLICY_RANGE']]);
    expect(c[0]!.message).toBe('must be <= staleMs / 2 (500; staleMs is 1000, the default): write a larger staleMs too');
    // An invalid value is reported once, with no cross-check built on it.
    expect(withKey('sampleMs', '20000')).toEqual(at11('sampleMs', 'E_POLICY_RANGE'));
    expect(brief(errs(parsePolicy(HOST('      sampleMs: 5000\n      staleMs: 70000\n'), 'p.yaml')))).toEqual([[12, 16, 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE']]);
  });

  it('quarantineVlan is required while actions allows portgroup-quarantine (also by default)', () => {
    const none = HOST().replace('      quarantineVlan: 4001\n', '');
    const a = errs(parsePolicy(none, 'p.yaml'));
    expect(brief(a)).toEqual([[4, 7, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_MISSING']]);
    expect(a[0]!.message).toContain('required when actions lists portgroup-quarantine (the default lists every action)');
    const b = errs(parsePolicy(`${none}      actions: [portgroup-quarantine]\n`, 'p.yaml'));
    expect(brief(b)).toEqual([[4, 7, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_MISSING']]);
    expect(b[0]!.message).not.toContain('default');
    // Written as null: blamed where it was written.
    expect(brief(errs(parsePolicy(HOST().replace('quarantineVlan: 4001', 'quarantineVlan: null'), 'p.yaml')))).toEqual([[8, 23, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_MISSING']]);
    expect(host0(`${none}      actions: [vnic-disconnect, nic-down]\n`).quarantineVlan).toBeNull();
    // A bad actions list or a bad VLAN is reported alone.
    // (`none` has one line less: actions is at line 10.)
    expect(brief(errs(parsePolicy(`${none}      actions: [portgroup-quarantine, bogus]\n`, 'p.yaml')))).toEqual([[10, 39, 'esxi.hosts[0].actions[1]', 'E_POLICY_VALUE']]);
    expect(brief(errs(parsePolicy(HOST().replace('quarantineVlan: 4001', 'quarantineVlan: 0'), 'p.yaml')))).toEqual([[8, 23, 'esxi.hosts[0].quarantineVlan', 'E_POLICY_RANGE']]);
  });

  it('thresholds merged over defaults: clearPps < floodPps, blaming what the host wrote', () => {
    const a = errs(parsePolicy(HOST('      thresholds: { clearPps: 20000 }\n'), 'p.yaml'));
    expect(brief(a)).toEqual([[11, 31, 'esxi.hosts[0].thresholds.clearPps', 'E_POLICY_RANGE']]);
    expect(a[0]!.message).toBe('must be < floodPps (20000, from defaults)');
    const b = errs(parsePolicy(HOST('      thresholds: { floodPps: 4000 }\n'), 'p.yaml'));
    expect(brief(b)).toEqual([[11, 31, 'esxi.hosts[0].thresholds.floodPps', 'E_POLICY_RANGE']]);
    ok(parsePolicy(HOST('      thresholds: { floodPps: 4000, clearPps: 1000 }\n'), 'p.yaml'));
    // Against the policy's own defaults, not only the built-in ones.
    const c = HOST('      thresholds: { clearPps: 9000 }\n').replace('version: 1\n', 'version: 1\ndefaults: { floodPps: 8000, clearPps: 1000 }\n');
    expect(brief(errs(parsePolicy(c, 'p.yaml')))).toEqual([[12, 31, 'esxi.hosts[0].thresholds.clearPps', 'E_POLICY_RANGE']]);
  });
});

describe('esxi: a policy directory', () => {
  let tmp = '';
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sb-policy-esxi-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  let n = 0;
  const makeDir = async (files: Record<string, string>): Promise<string> => {
    const dir = join(tmp, `d${n++}`);
    await mkdir(dir);
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    return dir;
  };
  const hostYaml = (name: string, extra = ''): string =>
    `  hosts:\n    - { name: ${name}, address: 192.0.2.1, identityFile: /k, knownHostsFile: /kh, actions: [nic-down], vmnics: [{ name: vmnic0, role: uplink }]${extra} }\n`;

  it('esxi is taken whole from the last file that writes it; files without it change nothing', async () => {
    const d = await makeDir({
      '10-base.yaml': `version: 1\nesxi:\n${hostYaml('a', ', sampleMs: 200')}`,
      '20-site.yaml': `version: 1\nesxi:\n${hostYaml('b')}`,
      '30-host.yaml': 'version: 1\ndryRun: true\n',
    });
    const p = ok(await loadPolicy(d));
    // Only b, and b does not inherit a's sampleMs: hosts are neither concatenated nor merged key by key.
    expect(p.esxi!.hosts.map((h) => [h.name, h.sampleMs, h.line])).toEqual([['b', 100, 4]]);
    expect(p.dryRun).toBe(true);
    const only = await makeDir({ '10-a.yaml': `version: 1\nesxi:\n${hostYaml('a')}`, '20-b.yaml': 'version: 1\n' });
    expect(ok(await loadPolicy(only)).esxi!.hosts.map((h) => h.name)).toEqual(['a']);
    expect(ok(await loadPolicy(await makeDir({ 'a.yaml': 'version: 1\n', 'b.yaml': 'version: 1\n' }))).esxi).toBeUndefined();
  });

  it('errors point into the file that wrote them; cross-checks against defaults name the other file', async () => {
    const d = await makeDir({
      '10-base.yaml': 'version: 1\ndefaults: { floodPps: 8000 }\n',
      '20-esxi.yaml': `version: 1\nesxi:\n${hostYaml('a', ', thresholds: { clearPps: 9000 }, staleMs: 50')}`,
    });
    const e = errs(await loadPolicy(d));
    expect(e.map((x) => [basename(x.file), x.line, x.field, x.code])).toEqual([
      ['20-esxi.yaml', 4, 'esxi.hosts[0].thresholds.clearPps', 'E_POLICY_RANGE'],
      ['20-esxi.yaml', 4, 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE'],
    ]);
    expect(e[0]!.message).toBe(`must be < floodPps (8000, from defaults, set at ${join(d, '10-base.yaml')}:2:23)`);
  });

  it("an earlier file's broken esxi does not hide the later file's cross-check errors (bad fields are per file)", async () => {
    const d = await makeDir({
      '10-a.yaml': `version: 1\nesxi:\n${hostYaml('a', ', staleMs: 5')}`,
      '20-b.yaml': `version: 1\nesxi:\n${hostYaml('b', ', staleMs: 100, sampleMs: 100')}`,
    });
    const e = errs(await loadPolicy(d));
    expect(e.map((x) => [basename(x.file), x.field, x.code])).toEqual([
      ['10-a.yaml', 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE'],
      ['20-b.yaml', 'esxi.hosts[0].staleMs', 'E_POLICY_RANGE'],
    ]);
    expect(e[1]!.message).toBe('must be >= 2 x sampleMs (200; sampleMs is 100)');
  });

  it("merge.ts's header says so", async () => {
    const src = await readFile(join(ROOT, 'agent/policy/merge.ts'), 'utf8');
    expect(src).toMatch(/`esxi` is taken WHOLE from the last file that writes it/);
  });
});

describe('esxi: policies/schema.json says the same', () => {
  // Parsed JSON, walked by known paths: a wrong path fails the assertion that reads it.
  type S = Record<string, any>;
  let schema: S;
  beforeAll(async () => {
    schema = JSON.parse(await readFile(join(ROOT, 'policies/schema.json'), 'utf8')) as S;
  });
  const hostProps = (): S => schema.$defs.esxiHost.properties;
  const re = (p: string): RegExp => new RegExp(p, 'u');

  it('keys, required keys and list bounds', () => {
    expect(Object.keys(schema.properties.esxi.properties)).toEqual([...POLICY_KEYS.esxi]);
    expect(Object.keys(hostProps())).toEqual([...POLICY_KEYS.esxiHost]);
    expect(Object.keys(schema.$defs.esxiVmnic.properties)).toEqual([...POLICY_KEYS.esxiVmnic]);
    expect(schema.properties.esxi.required).toEqual(['hosts']);
    expect(schema.$defs.esxiHost.required).toEqual(['name', 'address', 'identityFile', 'knownHostsFile', 'vmnics']);
    expect(schema.$defs.esxiVmnic.required).toEqual(['name', 'role']);
    expect([schema.properties.esxi.properties.hosts.minItems, schema.properties.esxi.properties.hosts.maxItems]).toEqual([1, MAX_ESXI_HOSTS]);
    expect([hostProps().vmnics.minItems, hostProps().vmnics.maxItems]).toEqual([1, MAX_ESXI_VMNICS]);
    expect(hostProps().portgroups.maxItems).toBe(MAX_ESXI_PORTGROUPS);
    expect(hostProps().protectedPortgroups.maxItems).toBe(MAX_ESXI_PORTGROUPS);
    expect(hostProps().actions.items.enum).toEqual([...ESXI_ACTION_KINDS]);
    expect(hostProps().counters.enum).toEqual(['vsish', 'esxcli']);
    expect(schema.$defs.role.enum).toEqual([...ROLES]);
  });

  it('patterns are the loader regexps', () => {
    expect(hostProps().name.pattern).toBe(ESXI_HOST_NAME_RE.source);
    expect(hostProps().user.pattern).toBe(ESXI_USER_RE.source);
    expect(hostProps().address.pattern).toBe(IPV4_RE.source);
    expect(schema.$defs.esxiVmnic.properties.name.pattern).toBe(ESXI_VMNIC_RE.source);
    // The JS regexp literal escapes `/`; the JSON string has no need to.
    expect(schema.$defs.sshPath.pattern).toBe(ESXI_PATH_RE.source.replace(/\\\//g, '/'));
    for (const p of ['/k', '/var/lib/stormbreaker/esxi/esx1_ed25519', '/a+b@c,d:e=f~g', 'k', '/', '/a b', '/a%h', '/a$x', "/a'b", '/a"b', '/a\\b', '/é', `/${'a'.repeat(4095)}`, `/${'a'.repeat(4096)}`]) {
      expect(re(schema.$defs.sshPath.pattern).test(p), p).toBe(ESXI_PATH_RE.test(p));
    }
  });

  it('the port group name pattern accepts exactly what checkPortgroupName accepts', () => {
    const pat = re(schema.$defs.portgroupName.pattern);
    const names = ['VM Network', 'Management Network', 'a', 'a (1)', 'x%y', 'a/b', '[a]', '~', 'a-b', 'a  b', '', ' ', '-', ' a', 'a ', '-a', 'a,b', 'a$b', "a'b", 'a"b', 'a`b', 'a\\b', 'a\tb', 'a\nb', 'é', 'a\x7f', 'x'.repeat(255), 'x'.repeat(256)];
    // Every printable ASCII character alone and inside a name.
    for (let c = 0x20; c <= 0x7e; c++) names.push(String.fromCharCode(c), `a${String.fromCharCode(c)}b`);
    for (const n of names) expect(pat.test(n), JSON.stringify(n)).toBe(checkPortgroupName(n) === null);
  });

  it('quarantineVlan: the anyOf accepts what the loader accepts, at and around the bounds', () => {
    const [int, nul] = hostProps().quarantineVlan.anyOf as S[];
    expect(nul).toEqual({ type: 'null' });
    const schemaOk = (v: unknown): boolean => v === null || (typeof v === 'number' && Number.isInteger(v) && v >= int!.minimum && v <= int!.maximum);
    for (const v of [null, -1, 0, 0.5, 1, 1.5, 2, 4093, 4094, 4094.5, 4095, 65536]) {
      const r = parsePolicy(HOST().replace('quarantineVlan: 4001', `quarantineVlan: ${v === null ? 'null' : v}`).replace('      vmnics', '      actions: [nic-down]\n      vmnics'), 'p.yaml');
      expect('policy' in r, String(v)).toBe(schemaOk(v));
    }
  });

  it('defaults in the schema are ESXI_HOST_DEFAULTS', () => {
    for (const [k, v] of Object.entries(ESXI_HOST_DEFAULTS)) expect(hostProps()[k].default, k).toEqual(v);
    expect('default' in hostProps().quarantineVlan).toBe(false);
  });
});
