// `stormbreaker guard-up PORT` in real labs: it refuses a port that would close a loop (and the
// port never forwarded while it was up for the probe), brings up a port that closes none, and
// shuts a port again at once when its flood rate explodes after it came up. Labs are torn down
// in finally and afterAll; storms are bounded by a guard that downs the loop ports.
import { describe, expect, it } from 'vitest';
import { run } from '../../scripts/lab/exec.js';
import { buildLab, linkDown, teardownLab, type Lab } from '../../scripts/lab/topology.js';
import { inject } from '../../scripts/lab/traffic.js';
import {
  usePreflightLab,
  isAdminUp,
  LAB_POLICY,
  moved,
  nftTables,
  parseReport,
  runInNetns,
  snapshot,
  sleep,
  startInNetns,
  stormGuard,
} from '../helpers/preflight-lab.js';

const PREFIX = 'sbp-b-';
const entry = usePreflightLab(PREFIX);

function guardUp(lab: Lab, port: string, ...extra: string[]) {
  return runInNetns(lab.ns.host, entry(), ['guard-up', port, '--policy', LAB_POLICY, '--json', ...extra]);
}

const outcome = (r: { stats?: Record<string, unknown> }) => (r.stats?.['guard'] as { outcome: string } | undefined)?.outcome;

describe('guard-up', () => {
  it('refuses up2, which would close the kvm loop; while up for the probe it forwarded nothing', async () => {
    const lab = await buildLab('kvm', PREFIX);
    const cancel = stormGuard(lab, ['up2'], 4000);
    try {
      await linkDown(lab, 'up2');
      const before = await snapshot(lab.ns.prod);
      // A stream of broadcasts from the VM during the whole guard-up: if up2 forwarded for even
      // one frame while the loop is closed, that frame would circle (~100k pps at prod).
      const stream = inject(lab, 'vm1', 'eth0', { pps: 500, duration: 1.5, kind: 'broadcast' });
      await sleep(150);
      const r = await guardUp(lab, 'up2', '--watch-ms', '500');
      const sent = await stream;
      await sleep(100);
      const after = await snapshot(lab.ns.prod);
      const rep = parseReport(r);

      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(outcome(rep)).toBe('refused');
      expect(rep.findings.find((f) => f.rule === 'loop-probe')).toMatchObject({ severity: 'error', ports: ['up1', 'up2'] });
      expect(rep.notes.join('\n')).toContain('up2 would close a loop: left down');
      expect(await isAdminUp(lab.ns.host, 'up2')).toBe(false);
      expect(await nftTables(lab.ns.host)).not.toContain('stormbreaker_probe');
      // The isolation chains caught the stream both ways: frames the switch sent in on up2, and
      // frames br0 tried to flood out of it.
      const iso = rep.stats?.['isolation'] as Record<string, number>;
      expect(iso['guard_in'], JSON.stringify(iso)).toBeGreaterThan(0);
      expect(iso['guard_out'], JSON.stringify(iso)).toBeGreaterThan(0);
      // No storm: prod got each streamed frame once (vm1 -> br0 -> up1 -> sw0) plus at most the
      // probes guard-up sent (those out of up1 and up2 reach prod; those out of vm1 do not). A
      // round that found no loop is followed by another, so the probe count varies with timing.
      const probe = rep.stats?.['probe'] as { framesSent: number };
      expect(probe.framesSent).toBeGreaterThanOrEqual(2);
      const d = moved(before, after, [[lab.ns.prod, 'eth0']])[`${lab.ns.prod}/eth0`]!;
      expect(d.rx).toBeGreaterThanOrEqual(sent.sent);
      expect(d.rx).toBeLessThanOrEqual(sent.sent + probe.framesSent);
      console.log(`[guard-up refuse] exit ${r.code} in ${r.ms.toFixed(0)} ms; stream ${sent.sent} frames, ${probe.framesSent} probes, prod rx +${d.rx}; isolation drops ${JSON.stringify(iso)}`);
    } finally {
      cancel();
      await teardownLab(PREFIX);
    }
  });

  it('brings up vm1, which closes no loop, and it stays up through the watch', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2');
      await linkDown(lab, 'vm1');
      const r = await guardUp(lab, 'vm1', '--watch-ms', '1000');
      const rep = parseReport(r);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(outcome(rep)).toBe('up');
      expect(rep.findings).toEqual([]);
      expect(rep.notes.join('\n')).toContain('vm1 is up and stayed quiet for 1000 ms');
      expect(await isAdminUp(lab.ns.host, 'vm1')).toBe(true);
      expect(await nftTables(lab.ns.host)).not.toContain('stormbreaker_probe');
      console.log(`[guard-up clean] exit ${r.code} in ${r.ms.toFixed(0)} ms (1000 ms of it the watch)`);

      // Already up: nothing switched, probed as it is.
      const again = await guardUp(lab, 'vm1', '--watch-ms', '0');
      expect(again.code).toBe(0);
      expect(outcome(parseReport(again))).toBe('already-up');
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('shuts vm1 again at once when a flood hits it after it came up', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2'); // no loop: this is a flooding guest, bounded by send.py's duration
      await linkDown(lab, 'vm1');
      const flood = inject(lab, 'vm1', 'eth0', { pps: 50_000, duration: 2.5, kind: 'broadcast' });
      await sleep(200);
      const r = await guardUp(lab, 'vm1', '--watch-ms', '2000');
      await flood;
      const rep = parseReport(r);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(outcome(rep)).toBe('shut');
      const f = rep.findings.find((x) => x.rule === 'guard-watch-flood');
      expect(f).toMatchObject({ severity: 'error', ports: ['vm1'] });
      const ev = f?.evidence as { window: Array<{ floodPps: number; hot: boolean }>; shutMs: number };
      expect(ev.window.filter((w) => w.hot).length).toBeGreaterThanOrEqual(2);
      expect(Math.max(...ev.window.map((w) => w.floodPps))).toBeGreaterThan(20_000);
      expect(await isAdminUp(lab.ns.host, 'vm1')).toBe(false);
      console.log(`[guard-up flood] ${f?.what}; shut took ${ev.shutMs.toFixed(2)} ms`);
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('SIGTERM during the watch: the port is not accepted (down again); SIGKILL-style leftovers make the next run refuse', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2');
      await linkDown(lab, 'vm1');
      const g = startInNetns(lab.ns.host, entry(), ['guard-up', 'vm1', '--policy', LAB_POLICY, '--watch-ms', '10000']);
      // Wait until the probe is over and the watch runs: the port is up and the table is gone.
      const t0 = performance.now();
      while (!(await isAdminUp(lab.ns.host, 'vm1')) || (await nftTables(lab.ns.host)).includes('stormbreaker_probe')) {
        if (performance.now() - t0 > 8000) throw new Error('guard-up never reached its watch');
        await sleep(20);
      }
      const tKill = performance.now() - t0;
      g.child.kill('SIGTERM');
      const r = await g.done;
      console.log(`[guard-up SIGTERM] sent ${tKill.toFixed(0)} ms after start; exit ${r.code} signal ${r.signal} after ${r.ms.toFixed(0)} ms; ${r.stderr}`);
      expect(r.code, r.stderr).toBe(143); // exited through our handler (a plain signal death has no code)
      expect(await isAdminUp(lab.ns.host, 'vm1')).toBe(false);
      expect(await nftTables(lab.ns.host)).not.toContain('stormbreaker_probe');

      // A table left by a killed run (here: made by hand) is never replaced: the next run
      // refuses, sends nothing, and leaves that table as it found it.
      await run(['ip', 'netns', 'exec', lab.ns.host, 'nft', 'add', 'table', 'netdev', 'stormbreaker_probe']);
      const busy = await runInNetns(lab.ns.host, entry(), ['preflight', '--policy', LAB_POLICY, '--json']);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/already exists: another preflight or guard-up is running/);
      expect(JSON.parse(busy.stdout)).toMatchObject({ ok: false, error: { code: 'E_PROBE_NFT' } });
      expect(await nftTables(lab.ns.host)).toContain('table netdev stormbreaker_probe');
      const refused = await guardUp(lab, 'vm1');
      expect(refused.code).toBe(1);
      expect(await isAdminUp(lab.ns.host, 'vm1')).toBe(false);
    } finally {
      await teardownLab(PREFIX);
    }
  });

  it('usage errors exit 2: bad name, a port no rule matches, a missing port, a bad --watch-ms', async () => {
    const lab = await buildLab('kvm', PREFIX);
    try {
      await linkDown(lab, 'up2');
      for (const [args, msg] of [
        [['guard-up', 'a b', '--policy', LAB_POLICY], /invalid interface name/],
        [['guard-up', 'br0', '--policy', LAB_POLICY], /matches no rule/],
        [['guard-up', 'up9', '--policy', LAB_POLICY], /no interface up9/],
        [['guard-up', 'up2', '--policy', LAB_POLICY, '--watch-ms', '-1'], /watch-ms/],
        [['guard-up', '--policy', LAB_POLICY], /missing required argument/],
      ] as Array<[string[], RegExp]>) {
        const r = await runInNetns(lab.ns.host, entry(), args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.stderr).toMatch(msg);
      }
      // None of that touched up2.
      expect(await isAdminUp(lab.ns.host, 'up2')).toBe(false);
    } finally {
      await teardownLab(PREFIX);
    }
  });
});
