// Pure parts of the lab toolkit: topology plans, command order, parsers, storm-control step.
import { describe, expect, it } from 'vitest';
import { parseIpLinkStats, statsDelta } from '../../scripts/lab/counters.js';
import { ns } from '../../scripts/lab/exec.js';
import { stormControlStep, validateConfig } from '../../scripts/lab/storm-control.js';
import { labPlan, parseNetnsList, planCommands } from '../../scripts/lab/topology.js';
import { floodArgs, labNetns, sendArgs } from '../../scripts/lab/traffic.js';

describe('labPlan', () => {
  it('kvm: br0 with two uplinks to sw0 forms the loop', () => {
    const p = labPlan('kvm', 'x-');
    expect(p.lab.ns).toEqual({ host: 'x-host', sw: 'x-sw', prod: 'x-prod', vm1: 'x-vm1', mgmt: 'x-mgmt' });
    expect(p.lab.bridge).toBe('br0');
    expect(p.lab.loopPorts).toEqual(['up1', 'up2']);
    expect(p.lab.hostPorts).toEqual(['up1', 'up2', 'vm1', 'mgmt0']);
    const up = p.veths.filter((v) => v.ns === 'x-host' && v.peerNs === 'x-sw');
    expect(up.map((v) => [v.name, v.master, v.peer, v.peerMaster])).toEqual([
      ['up1', 'br0', 'sw1', 'sw0'],
      ['up2', 'br0', 'sw2', 'sw0'],
    ]);
  });

  it('esx: one uplink, and a VM bridging its two vNICs closes the loop', () => {
    const p = labPlan('esx', 'x-');
    expect(p.lab.ns.vmA).toBe('x-vmA');
    expect(p.lab.bridge).toBe('vsw0');
    expect(p.lab.loopPorts).toEqual(['vmA1', 'vmA2']);
    expect(p.veths.filter((v) => v.peerNs === 'x-sw' && v.ns === 'x-host')).toHaveLength(1);
    expect(p.veths.filter((v) => v.peerNs === 'x-vmA').map((v) => [v.name, v.peer, v.peerMaster])).toEqual([
      ['vmA1', 'eth0', 'vbr'],
      ['vmA2', 'eth1', 'vbr'],
    ]);
  });

  it('rejects bad prefixes and shapes', () => {
    expect(() => labPlan('kvm', '')).toThrow(/invalid lab prefix/);
    expect(() => labPlan('kvm', 'a;b')).toThrow(/invalid lab prefix/);
    expect(() => labPlan('xen' as 'kvm', 'x-')).toThrow(/unknown lab shape/);
  });
});

describe('planCommands', () => {
  for (const shape of ['kvm', 'esx'] as const) {
    it(`${shape}: quiet-lab order (IPv6 off before links, no snooping, loop closes last)`, () => {
      const p = labPlan(shape, 'x-');
      const cmds = planCommands(p).map((a) => a.join(' '));
      const firstLink = cmds.findIndex((c) => c.includes(' link add '));
      for (const n of p.namespaces) {
        for (const k of ['all', 'default']) {
          const i = cmds.indexOf(`ip netns exec ${n} sysctl -q -w net.ipv6.conf.${k}.disable_ipv6=1`);
          expect(i, `${n} ${k}`).toBeGreaterThanOrEqual(0);
          expect(i).toBeLessThan(firstLink);
        }
      }
      const bridges = cmds.filter((c) => c.includes('type bridge'));
      expect(bridges.length).toBe(p.bridges.length);
      for (const b of bridges) expect(b).toMatch(/stp_state 0 mcast_snooping 0$/);
      expect(cmds.some((c) => / addr /.test(c))).toBe(false);
      const last = cmds.slice(-2);
      expect(last).toEqual(p.lab.loopPorts.map((l) => `ip -n x-host link set dev ${l} up`));
    });
  }

  it("hostNetnsOfPid: the host side is the given process's namespace, attached by name, not a new one", () => {
    const p = labPlan('kvm', 'x-');
    const cmds = planCommands(p, { hostNetnsOfPid: 4242 }).map((a) => a.join(' '));
    expect(cmds).toContain('ip netns attach x-host 4242');
    expect(cmds).not.toContain('ip netns add x-host');
    expect(cmds).toContain('ip netns add x-sw');
    expect(cmds.indexOf('ip netns attach x-host 4242')).toBeLessThan(cmds.indexOf('ip netns exec x-host sysctl -q -w net.ipv6.conf.all.disable_ipv6=1'));
  });
});

describe('parsers', () => {
  it('parseNetnsList takes the first word of each line', () => {
    expect(parseNetnsList('sb-host (id: 3)\nsb-sw\n\n other (id: 1)\n')).toEqual(['sb-host', 'sb-sw', 'other']);
    expect(parseNetnsList('')).toEqual([]);
  });

  it('parseIpLinkStats and statsDelta', () => {
    const json = JSON.stringify([
      { ifname: 'lo', flags: ['LOOPBACK', 'UP'], stats64: { rx: { packets: 0 }, tx: { packets: 0 } } },
      { ifname: 'up1', flags: ['BROADCAST', 'UP', 'LOWER_UP'], stats64: { rx: { packets: 10 }, tx: { packets: 4 } } },
      { ifname: 'up2', flags: ['BROADCAST'], stats64: { rx: { packets: 7 }, tx: { packets: 1 } } },
    ]);
    const a = parseIpLinkStats(json);
    expect(a.get('up1')).toEqual({ ifname: 'up1', up: true, rxPackets: 10, txPackets: 4 });
    expect(a.get('up2')?.up).toBe(false);
    const b = parseIpLinkStats(JSON.stringify([{ ifname: 'up1', flags: [], stats64: { rx: { packets: 15 }, tx: { packets: 4 } } }]));
    expect(statsDelta(a, b, ['up1', 'gone'])).toEqual({ up1: { rx: 5, tx: 0 }, gone: { rx: 0, tx: 0 } });
    expect(() => parseIpLinkStats('{}')).toThrow();
  });
});

describe('argv builders', () => {
  it('ns() and sendArgs() validate names and never build shell strings', () => {
    expect(ns('x-host', ['ip', 'link'])).toEqual(['ip', 'netns', 'exec', 'x-host', 'ip', 'link']);
    expect(() => ns('x host', [])).toThrow();
    expect(sendArgs('eth0', {})).toEqual(['eth0', '--count', '1']);
    expect(sendArgs('eth0', { pps: 1000, duration: 2, kind: 'multicast', randomSrc: true })).toEqual([
      'eth0', '--pps', '1000', '--duration', '2', '--kind', 'multicast', '--random-src',
    ]);
    expect(sendArgs('eth0', { pps: 15000, duration: 1.5, live: true })).toEqual(['eth0', '--pps', '15000', '--duration', '1.5', '--live']);
    expect(() => sendArgs('eth0; rm', {})).toThrow(/invalid interface name/);
  });

  it('floodArgs() bounds the full-speed sender in time and validates the interface', () => {
    expect(floodArgs('eth0', { duration: 1.5 })).toEqual(['eth0', '--duration', '1.5']);
    expect(floodArgs('eth0', { duration: 1, count: 5000, kind: 'multicast' })).toEqual(['eth0', '--duration', '1', '--count', '5000', '--kind', 'multicast']);
    expect(() => floodArgs('eth0', { duration: 11 })).toThrow(/duration/);
    expect(() => floodArgs('eth0', { duration: 0 })).toThrow(/duration/);
    expect(() => floodArgs('eth0 x', { duration: 1 })).toThrow(/invalid interface name/);
  });

  it('labNetns only resolves namespaces of the lab', () => {
    const lab = labPlan('kvm', 'x-').lab;
    expect(labNetns(lab, 'vm1')).toBe('x-vm1');
    expect(labNetns(lab, 'x-prod')).toBe('x-prod');
    expect(() => labNetns(lab, 'other-ns')).toThrow(/not part of lab/);
    expect(() => labNetns(lab, 'vmA')).toThrow(/not part of lab/);
  });
});

describe('stormControlStep', () => {
  it('shuts every port over the level once, from measured interval length', () => {
    const s0 = { prev: [0, 0, 0], shut: [false, false, false] };
    // 1.25 s measured interval: 30k frames = 24k pps (over 20k), 20k frames = 16k pps (under)
    const a = stormControlStep(s0, [30_000, 30_000, 20_000], 1.25e9, 20_000);
    expect(a.pps).toEqual([24_000, 24_000, 16_000]);
    expect(a.toShut).toEqual([0, 1]);
    const b = stormControlStep(a.state, [90_000, 90_000, 60_000], 1e9, 20_000);
    expect(b.toShut).toEqual([2]); // 0 and 1 stay errdisabled, not shut again
    expect(b.state.shut).toEqual([true, true, true]);
  });

  it('a counter going backwards is a reset, not a storm', () => {
    const r = stormControlStep({ prev: [1_000_000], shut: [false] }, [5], 1e9, 20_000);
    expect(r.pps).toEqual([0]);
    expect(r.toShut).toEqual([]);
  });

  it('validates its configuration', () => {
    expect(() => validateConfig({ ports: [], levelPps: 1, intervalMs: 1000, durationMs: 1000 })).toThrow(/ports/);
    expect(() => validateConfig({ ports: ['a b'], levelPps: 1, intervalMs: 1000, durationMs: 1000 })).toThrow();
    expect(() => validateConfig({ ports: ['up1'], levelPps: 0, intervalMs: 1000, durationMs: 1000 })).toThrow(/pps/);
  });
});
