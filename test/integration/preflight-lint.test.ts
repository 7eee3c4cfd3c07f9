// The static lint (`preflight --no-probe`) on live labs built to show each Linux rule:
// (a) bridge-uplinks-no-stp, (c) vm-port-no-bpdu-guard, (d) vm-peers-bridged. Rule (b) is OVS,
// which neither is installed nor has a datapath in this kernel: it is tested on literal fixtures
// only (test/unit/preflight-lint.test.ts). --no-probe sends nothing: counters stay exactly flat.
import { describe, expect, it } from 'vitest';
import { run } from '../../scripts/lab/exec.js';
import { buildLab, linkDown, linkUp, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import {
  usePreflightLab,
  LAB_POLICY,
  moved,
  parseReport,
  runInNetns,
  setStp,
  snapshot,
  waitStpBlocking,
  type JsonReport,
} from '../helpers/preflight-lab.js';

const PREFIX = 'sbp-c-';
const entry = usePreflightLab(PREFIX);

const lint = (lab: Lab, ...extra: string[]) => runInNetns(lab.ns.host, entry(), ['preflight', '--policy', LAB_POLICY, '--json', '--no-probe', ...extra]);
const summary = (r: JsonReport) => r.findings.map((f) => `${f.severity} ${f.rule} ${f.ports.join(',')}`).sort();

describe('static lint on live labs', () => {
  it('kvm: two uplinks in br0 with STP off (a) and a guest port without BPDU guard (c); nothing sent', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      const before = await snapshot(lab.ns.host);
      const r = await lint(lab);
      const after = await snapshot(lab.ns.host);
      const rep = parseReport(r);
      expect(r.code, r.stderr).toBe(1);
      expect(summary(rep)).toEqual(['error bridge-uplinks-no-stp up1,up2', 'warning vm-port-no-bpdu-guard vm1']);
      expect(rep.notes).toContain('--no-probe: the active loop probe did not run');
      expect(rep.notes.join('\n')).toMatch(/ovs-vsctl not installed/);
      for (const [k, v] of Object.entries(moved(before, after, lab.hostPorts.map((p): [string, string] => [lab.ns.host, p])))) expect(v, k).toEqual({ rx: 0, tx: 0 });

      // Human output names the ports and the fix.
      const text = await runInNetns(lab.ns.host, entry(), ['preflight', '--policy', LAB_POLICY, '--no-probe']);
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/^error {3}bridge-uplinks-no-stp {2}\[up1, up2\]$/m);
      expect(text.stdout).toMatch(/fix: .*stp_state 1/);
      expect(text.stdout.trimEnd().split('\n').at(-1)).toBe('2 findings (1 error, 1 warning)');
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('esx: vmA1 and vmA2 lead into one bridge in the guest namespace (d)', async () => {
    const lab = await buildLab('esx', PREFIX);
    try {
      const rep = parseReport(await lint(lab));
      const d = rep.findings.find((f) => f.rule === 'vm-peers-bridged');
      expect(d).toMatchObject({ severity: 'error', ports: ['vmA1', 'vmA2'], evidence: { bridge: 'vsw0', peerNamespace: lab.ns.vmA, peerBridge: 'vbr' } });
      // A single uplink is no redundancy: rule (a) is silent here.
      expect(rep.findings.some((f) => f.rule === 'bridge-uplinks-no-stp')).toBe(false);
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('guard on but STP off is inert (c); with kernel STP on br0 the uplink rule (a) is satisfied', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2');
      await run(['ip', '-n', lab.ns.host, 'link', 'set', 'dev', 'vm1', 'type', 'bridge_slave', 'guard', 'on']);
      let rep = parseReport(await lint(lab));
      expect(summary(rep)).toEqual(['warning bridge-uplinks-no-stp up1,up2', 'warning vm-port-no-bpdu-guard vm1']);
      expect(rep.findings.find((f) => f.rule === 'vm-port-no-bpdu-guard')?.what).toMatch(/guard on, but bridge br0 runs no STP/);
      expect(rep.ok).toBe(true);

      await setStp(lab.ns.host, 'br0');
      await linkUp(lab, 'up2');
      await waitStpBlocking(lab.ns.host, ['up1', 'up2']);
      const r = await lint(lab);
      rep = parseReport(r);
      expect(r.code).toBe(0);
      expect(rep.findings).toEqual([]);
    } finally {
      await teardownLab(PREFIX);
    }
  });
});
