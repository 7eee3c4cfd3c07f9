// Proves the lab toolkit on real namespaces, veths and bridges: each shape is quiet when built,
// one injected broadcast frame becomes a storm, downing a loop member by hand ends it, and the
// 1-second storm-control baseline errdisables both loop members. Every storm is bounded: a
// guard downs the loop 2.5 s after injection, and teardown runs in finally and afterAll.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countAt, ppsBetween, ppsSeries, median, stormStats, type CounterSeries } from '../../scripts/lab/analyze.js';
import { startStormControl } from '../../scripts/lab/baseline.js';
import { readLinkStats } from '../../scripts/lab/counters.js';
import { run } from '../../scripts/lab/exec.js';
import { startObserver } from '../../scripts/lab/observer.js';
import {
  assertQuiet,
  breakLoopByHand,
  buildHostOnly,
  buildLab,
  linkDown,
  listNamespaces,
  teardownLab,
  type Lab,
  type Shape,
} from '../../scripts/lab/topology.js';
import { inject } from '../../scripts/lab/traffic.js';

const PREFIX = 'sbt-lab-';
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const STORM_MS = 300;
const GUARD_MS = 2500;
const MS = 1e6;

const now = (): number => Number(process.hrtime.bigint());
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Down every loop member GUARD_MS from now unless cancelled: no storm outlives a failed test. */
function stormGuard(lab: Lab): () => void {
  const t = setTimeout(() => {
    for (const p of lab.loopPorts) void linkDown(lab, p).catch(() => undefined);
  }, GUARD_MS);
  return () => clearTimeout(t);
}

function series(s: Record<string, CounterSeries>, iface: string): CounterSeries {
  const x = s[iface];
  if (!x) throw new Error(`no series for ${iface}`);
  return x;
}

let entry = '';
let buildDir = '';

beforeAll(async () => {
  await teardownLab(PREFIX);
  // The baseline runs as a separate node process inside the host namespace, so it needs the
  // compiled entry. Compile just the lab files into a private dir: other work in progress in
  // the tree must not break this test, and dist/ is left to `npm run build`.
  buildDir = await mkdtemp(join(tmpdir(), 'sbt-lab-build-'));
  await run(
    [
      process.execPath,
      join(REPO, 'node_modules/typescript/bin/tsc'),
      '--outDir', buildDir, '--rootDir', REPO,
      '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022',
      '--strict', '--skipLibCheck', '--types', 'node',
      join(REPO, 'scripts/lab/storm-control-run.ts'),
    ],
    { timeoutMs: 60_000 },
  );
  await writeFile(join(buildDir, 'package.json'), '{"type":"module"}\n');
  entry = join(buildDir, 'scripts/lab/storm-control-run.js');
}, 90_000);

afterAll(async () => {
  await teardownLab(PREFIX);
  if (buildDir) await rm(buildDir, { recursive: true, force: true });
  expect(await listNamespaces(PREFIX)).toEqual([]);
});

for (const shape of ['kvm', 'esx'] as const satisfies readonly Shape[]) {
  describe(`${shape} lab`, () => {
    it('is quiet, storms from one frame, and stops when a loop member is downed by hand', async () => {
      const lab = await buildLab(shape, PREFIX);
      let cancelGuard = (): void => undefined;
      try {
        expect(lab.ns.host).toBe(`${PREFIX}host`);
        const prodObs = await startObserver(lab.ns.prod, ['eth0'], 5000);
        const hostObs = await startObserver(lab.ns.host, lab.hostPorts, 5000);
        await sleep(300); // the quiet window, observed at 0.25 ms resolution

        const inj = await inject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
        cancelGuard = stormGuard(lab);
        expect(inj.sent).toBe(1);
        // The lab's own quiet check must see the storm (it would otherwise pass a noisy lab).
        await expect(assertQuiet(lab, 50)).rejects.toThrow(/lab not quiet/);
        await sleep(STORM_MS - 80);
        const tBreak = now();
        await breakLoopByHand(lab);
        const tBroken = now();
        await sleep(200);
        cancelGuard();
        const prodS = await prodObs.stop();
        const hostS = await hostObs.stop();

        const prod = series(prodS, 'eth0');
        // Quiet before injection: nothing counted anywhere from observer start to injection.
        expect(countAt(prod, inj.tFirstNs) - countAt(prod, prodObs.startNs)).toBe(0);
        for (const p of lab.hostPorts) {
          const s = series(hostS, p);
          expect(countAt(s, inj.tFirstNs) - countAt(s, hostObs.startNs), `${p} before injection`).toBe(0);
        }

        // One frame, then a storm at prod and on both loop members.
        const st = stormStats(prod, inj.tFirstNs);
        expect(st.firstFrameNs).not.toBeNull();
        const firstMs = ((st.firstFrameNs as number) - inj.tFirstNs) / MS;
        // send.py stamps CLOCK_MONOTONIC, the observer process.hrtime.bigint(): if they were not
        // the same clock, the first frame would not land within a few ms after the send.
        expect(firstMs).toBeGreaterThanOrEqual(0);
        expect(firstMs).toBeLessThan(50);
        const prodPps = ppsBetween(prod, inj.tFirstNs + 20 * MS, tBreak);
        const prodBins = ppsSeries(prod, 10, inj.tFirstNs + 20 * MS).pps.slice(0, Math.floor((tBreak - inj.tFirstNs) / 10 / MS) - 2);
        expect(prodPps).toBeGreaterThanOrEqual(20_000);
        const perPort: Record<string, number> = {};
        for (const p of lab.hostPorts) perPort[p] = Math.round(ppsBetween(series(hostS, p), inj.tFirstNs + 20 * MS, tBreak));
        for (const p of lab.loopPorts) expect(perPort[p], `${p} pps`).toBeGreaterThanOrEqual(20_000);

        // Downing one loop member ends it: quiet within 50 ms of the command and nothing after.
        expect(st.quietAtNs).not.toBeNull();
        const quietAfterBreakMs = ((st.quietAtNs as number) - tBreak) / MS;
        expect(quietAfterBreakMs).toBeGreaterThan(0);
        expect(((st.quietAtNs as number) - tBroken) / MS).toBeLessThan(50);
        const end = prod.t[prod.t.length - 1] as number;
        expect(countAt(prod, end) - countAt(prod, end - 100 * MS)).toBe(0);

        console.log(
          `[lab ${shape}] first frame at prod +${firstMs.toFixed(2)} ms; storm mean pps prod=${Math.round(prodPps)} ` +
            `(median 10 ms bin ${Math.round(median(prodBins))}); rx pps per host port ${JSON.stringify(perPort)}; ` +
            `break by hand took ${((tBroken - tBreak) / MS).toFixed(1)} ms (spawn), quiet at prod ${quietAfterBreakMs.toFixed(1)} ms ` +
            `after the command started; frames at prod ${st.framesLeaked} in ${st.msToQuiet?.toFixed(0)} ms`,
        );
      } finally {
        cancelGuard();
        await teardownLab(PREFIX);
      }
    });

    it('storm-control baseline (1 s, 20k pps) errdisables both loop members, late', async () => {
      const lab = await buildLab(shape, PREFIX);
      let cancelGuard = (): void => undefined;
      try {
        const prodObs = await startObserver(lab.ns.prod, ['eth0'], 5000);
        const sc = await startStormControl(lab, { levelPps: 20_000, intervalMs: 1000, durationMs: 2400, entry });
        // Storms begin at any phase of a switch's free-running interval.
        await sleep(100 + Math.random() * 800);
        const inj = await inject(lab, 'vm1', 'eth0', { count: 1 });
        cancelGuard = stormGuard(lab);
        const r = await sc.done();
        await sleep(100);
        cancelGuard();
        const prod = series(await prodObs.stop(), 'eth0');

        // It shuts every port that saw the storm: both loop members, and nothing else.
        expect(r.shut.map((s) => s.port).sort()).toEqual([...lab.loopPorts].sort());
        for (const s of r.shut) expect(s.ok).toBe(true);
        const links = await readLinkStats(lab.ns.host);
        for (const p of lab.loopPorts) expect(links.get(p)?.up, `${p} down`).toBe(false);
        for (const p of lab.hostPorts.filter((x) => !lab.loopPorts.includes(x))) expect(links.get(p)?.up, `${p} up`).toBe(true);

        const st = stormStats(prod, inj.tFirstNs);
        expect(st.quietAtNs).not.toBeNull();
        const phaseMs = (inj.tFirstNs - sc.startNs) / MS;
        // Quiet comes at the end of the interval the storm began in (or the next one, if it
        // began in the last few ms): never sooner than the interval boundary.
        const boundaryMs = Math.ceil(phaseMs / 1000) * 1000 - phaseMs;
        expect(st.msToQuiet as number).toBeGreaterThanOrEqual(boundaryMs - 5);
        expect(st.msToQuiet as number).toBeLessThan(boundaryMs + 1000 + 100);
        expect(st.framesLeaked as number).toBeGreaterThan(1000);
        const shutAfterMs = Math.min(...r.shut.map((s) => s.tNs)) - inj.tFirstNs;
        console.log(
          `[storm-control ${shape}] storm began ${phaseMs.toFixed(0)} ms into the interval; shut ${r.shut
            .map((s) => `${s.port}@${s.pps}pps`)
            .join(',')} ${(shutAfterMs / MS).toFixed(0)} ms after injection; at prod: ms-to-quiet ${st.msToQuiet?.toFixed(1)}, ` +
            `frames leaked ${st.framesLeaked}`,
        );
      } finally {
        cancelGuard();
        await teardownLab(PREFIX);
      }
    });
  });
}

describe('host-only lab and teardown', () => {
  it('builds N bridge ports without a loop, quiet, and tears down twice without error', async () => {
    try {
      const h = await buildHostOnly(PREFIX, 16);
      const links = await readLinkStats(h.ns.host);
      expect(h.ports).toHaveLength(16);
      for (const p of h.ports) expect(links.get(p)?.up, p).toBe(true);
      const { stdout } = await run(['ip', '-n', h.ns.host, '-j', 'link', 'show', 'master', 'br0']);
      expect((JSON.parse(stdout) as unknown[]).length).toBe(16);
      await sleep(200);
      const later = await readLinkStats(h.ns.host);
      for (const p of h.ports) expect(later.get(p)?.rxPackets, p).toBe(links.get(p)?.rxPackets);
    } finally {
      expect((await teardownLab(PREFIX)).length).toBe(1);
      expect(await teardownLab(PREFIX)).toEqual([]);
    }
    expect(await listNamespaces(PREFIX)).toEqual([]);
  });

  it('refuses an empty or odd prefix', async () => {
    await expect(teardownLab('')).rejects.toThrow(/invalid lab prefix/);
    await expect(buildLab('kvm', 'a b')).rejects.toThrow(/invalid lab prefix/);
  });
});
