// `stormbreaker preflight` in real lab namespaces, run inside the lab's host namespace as on a
// host. Labs with a loop that is present but QUIET (closed, no frame has circled yet): the probe
// must find it, name both ports, and move the counters by its own frames only (no storm). A
// loop-free lab and redundant links that STP blocks (on the switch, or on the host bridge) pass.
// Every lab is torn down in finally and afterAll; a storm guard downs the loop ports if anything
// ever started to circle.
import { describe, expect, it } from 'vitest';
import { assertQuiet, buildLab, linkDown, linkUp, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import {
  usePreflightLab,
  LAB_POLICY,
  moved,
  nftTables,
  parseReport,
  runInNetns,
  setStp,
  snapshot,
  sleep,
  stormGuard,
  waitStpBlocking,
  type JsonReport,
} from '../helpers/preflight-lab.js';

const PREFIX = 'sbp-a-';
const entry = usePreflightLab(PREFIX);

function preflight(lab: Lab, ...extra: string[]) {
  return runInNetns(lab.ns.host, entry(), ['preflight', '--policy', LAB_POLICY, '--json', ...extra]);
}

const probeStats = (r: JsonReport) => r.stats?.['probe'] as { framesSent: number; framesSeen: number; totalMs: number; tapDrops: number; paths: Array<{ from: string; to: string; count: number }> };
const summary = (r: JsonReport) => r.findings.map((f) => `${f.severity} ${f.rule} ${f.ports.join(',')}`).sort();

describe('quiet loops are found without starting a storm', () => {
  it('kvm: up1 and up2 close a loop through br0; only the probe frames move', async () => {
    const lab = await buildLab('kvm', PREFIX);
    const cancel = stormGuard(lab, lab.loopPorts);
    try {
      const before = await snapshot(lab.ns.host, lab.ns.prod, lab.ns.sw);
      const r = await preflight(lab);
      const after = await snapshot(lab.ns.host, lab.ns.prod, lab.ns.sw);
      await sleep(300);
      const later = await snapshot(lab.ns.host, lab.ns.prod, lab.ns.sw);
      const rep = parseReport(r);

      expect(r.code, r.stderr).toBe(1);
      const loop = rep.findings.find((f) => f.rule === 'loop-probe');
      expect(loop).toMatchObject({ severity: 'error', ports: ['up1', 'up2'] });
      expect(loop?.what).toContain('sending on up1 arrives on up2');
      expect(loop?.what).toContain('sending on up2 arrives on up1');
      expect(loop?.what).toContain('ports up1 and up2 close a loop through bridge br0');
      // The static rule agrees, and the probe confirmed it.
      expect(rep.findings.find((f) => f.rule === 'bridge-uplinks-no-stp')).toMatchObject({ severity: 'error', evidence: { confirmedByProbe: true } });
      const ps = probeStats(rep);
      expect(ps.framesSent).toBe(4); // up1, up2, vm1, mgmt0
      expect(ps.tapDrops).toBe(0);

      // No storm: prod received exactly the two probes that left through the uplinks into sw0;
      // each uplink received exactly the other's probe (then nft dropped it before br0).
      const d = moved(before, after, [[lab.ns.prod, 'eth0'], [lab.ns.host, 'up1'], [lab.ns.host, 'up2'], [lab.ns.host, 'vm1'], [lab.ns.host, 'mgmt0'], [lab.ns.sw, 'sw1'], [lab.ns.sw, 'sw2']]);
      expect(d[`${lab.ns.prod}/eth0`]).toEqual({ rx: 2, tx: 0 });
      expect(d[`${lab.ns.host}/up1`]).toEqual({ rx: 1, tx: 1 });
      expect(d[`${lab.ns.host}/up2`]).toEqual({ rx: 1, tx: 1 });
      // br0 forwarded nothing: vm1 and mgmt0 sent only their own probe.
      expect(d[`${lab.ns.host}/vm1`]).toEqual({ rx: 0, tx: 1 });
      expect(d[`${lab.ns.host}/mgmt0`]).toEqual({ rx: 0, tx: 1 });
      // And nothing moved after the run: no frame is circling.
      const rest = moved(after, later, [[lab.ns.prod, 'eth0'], ...lab.hostPorts.map((p): [string, string] => [lab.ns.host, p])]);
      for (const [k, v] of Object.entries(rest)) expect(v, k).toEqual({ rx: 0, tx: 0 });
      await assertQuiet(lab);
      expect(await nftTables(lab.ns.host)).not.toContain('stormbreaker_probe');
      console.log(`[preflight kvm] exit ${r.code} in ${r.ms.toFixed(0)} ms (probe ${ps.totalMs} ms), frames sent ${ps.framesSent}, seen ${ps.framesSeen}; counters moved ${JSON.stringify(d)}`);
    } finally {
      cancel();
      await teardownLab(PREFIX);
    }
  });

  it('esx: the guest bridging vmA1 and vmA2 is found by the probe and by the lint', async () => {
    const lab = await buildLab('esx', PREFIX);
    const cancel = stormGuard(lab, lab.loopPorts);
    try {
      const before = await snapshot(lab.ns.host, lab.ns.prod);
      const r = await preflight(lab);
      const after = await snapshot(lab.ns.host, lab.ns.prod);
      const rep = parseReport(r);
      expect(r.code, r.stderr).toBe(1);
      expect(summary(rep)).toEqual([
        'error loop-probe vmA1,vmA2',
        'error vm-peers-bridged vmA1,vmA2',
        'warning vm-port-no-bpdu-guard vm1,vmA1,vmA2',
      ]);
      expect(rep.findings.find((f) => f.rule === 'loop-probe')?.what).toContain('ports vmA1 and vmA2 close a loop through bridge vsw0');
      const d = moved(before, after, [[lab.ns.prod, 'eth0'], [lab.ns.host, 'vmA1'], [lab.ns.host, 'vmA2'], [lab.ns.host, 'up1']]);
      expect(d[`${lab.ns.prod}/eth0`]).toEqual({ rx: 1, tx: 0 }); // up1's probe
      expect(d[`${lab.ns.host}/vmA1`]).toEqual({ rx: 1, tx: 1 });
      expect(d[`${lab.ns.host}/vmA2`]).toEqual({ rx: 1, tx: 1 });
      expect(d[`${lab.ns.host}/up1`]).toEqual({ rx: 0, tx: 1 });
      await assertQuiet(lab);
      expect(await nftTables(lab.ns.host)).not.toContain('stormbreaker_probe');
      console.log(`[preflight esx] exit ${r.code} in ${r.ms.toFixed(0)} ms (probe ${probeStats(rep).totalMs} ms); counters moved ${JSON.stringify(d)}`);
    } finally {
      cancel();
      await teardownLab(PREFIX);
    }
  });
});

describe('what has no loop passes', () => {
  it('kvm with up2 down: exit 0; the two-uplinks rule stays a warning; up2 noted as not probed', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2');
      const r = await preflight(lab);
      const rep = parseReport(r);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(rep.ok).toBe(true);
      expect(summary(rep)).toEqual(['warning bridge-uplinks-no-stp up1,up2', 'warning vm-port-no-bpdu-guard vm1']);
      expect(rep.notes.join('\n')).toMatch(/up2 is down: not probed/);
      expect(probeStats(rep).framesSent).toBe(3);
      expect(probeStats(rep).paths).toEqual([]);
      // --strict: the warnings fail the check.
      const strict = await preflight(lab, '--strict');
      expect(strict.code).toBe(1);
      expect(parseReport(strict).ok).toBe(false);
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('the switch runs STP and blocks sw2: no loop; the static uplink finding is downgraded by the probe', async () => {
    const lab = await buildLab('kvm', PREFIX);
    const cancel = stormGuard(lab, lab.loopPorts, 20_000);
    try {
      const t0 = performance.now();
      await setStp(lab.ns.sw, 'sw0');
      const blocked = await waitStpBlocking(lab.ns.sw, ['sw1', 'sw2']);
      const convergeMs = performance.now() - t0;
      const r = await preflight(lab);
      const rep = parseReport(r);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(rep.findings.some((f) => f.rule === 'loop-probe')).toBe(false);
      expect(probeStats(rep).paths).toEqual([]);
      const up = rep.findings.find((f) => f.rule === 'bridge-uplinks-no-stp');
      expect(up).toMatchObject({ severity: 'warning', ports: ['up1', 'up2'], evidence: { confirmedByProbe: false } });
      expect(up?.what).toMatch(/probe found no path between them now/);
      console.log(`[preflight switch-stp] ${blocked} blocking ${convergeMs.toFixed(0)} ms after stp_state 1; preflight exit ${r.code}`);
    } finally {
      cancel();
      await teardownLab(PREFIX);
    }
  });

  it('the host bridge runs STP and blocks one uplink: the probe sees the path, and passes because STP holds it', async () => {
    const lab = await buildLab('kvm', PREFIX);
    const cancel = stormGuard(lab, lab.loopPorts, 20_000);
    try {
      // Open the loop, turn STP on, close it again: the returning uplink starts in listening.
      await linkDown(lab, 'up2');
      await setStp(lab.ns.host, 'br0');
      await linkUp(lab, 'up2');
      const blocked = await waitStpBlocking(lab.ns.host, ['up1', 'up2']);
      const r = await preflight(lab);
      const rep = parseReport(r);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      // The tap saw both probes cross (it runs before the bridge), yet there is no loop finding:
      expect(probeStats(rep).paths.map((p) => `${p.from}>${p.to}`).sort()).toEqual(['up1>up2', 'up2>up1']);
      expect(rep.findings.filter((f) => f.severity === 'error')).toEqual([]);
      expect(rep.findings.some((f) => f.rule === 'loop-probe' || f.rule === 'bridge-uplinks-no-stp')).toBe(false);
      expect(rep.notes.join('\n')).toContain(`STP holds ${blocked} (blocking) in br0: no loop`);
    } finally {
      cancel();
      await teardownLab(PREFIX);
    }
  });
});
