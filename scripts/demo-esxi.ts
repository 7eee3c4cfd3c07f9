// The demo's ESXi leg (scripts/demo.sh --esxi): the agent next to a STAND-IN ESXi host, reached
// only over SSH, breaks a real loop storm (a VM bridging its two vNICs) by disconnecting one vNIC
// with vim-cmd (run on the host by the agent's armed fuse, the default, or over SSH by the agent),
// then an operator restores it through the CLI. Prints a timeline and writes an SVG chart of
// storm frames/s at prod. No real ESXi host is involved (scripts/lab/esxi/README.md).
//
// The flow is test/integration/esxi-agent.test.ts's "breaks a real loop storm" case (and
// esxi-fuse-agent.test.ts's), told to a human: same lab, same policy shape, same checks, and a
// non-zero exit when they fail.
import { esxiLabPolicy } from './lab/esxi/policy.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildEsxiLab, closeLoop, openLoop, teardownEsxiLab, type EsxiLab } from './lab/esxi/lab.js';
import { readInventory } from './lab/esxi/inventory.js';
import { agentEntry, startAgent, type AgentHandle } from './lab/agent.js';
import { startObserver, type ObserverHandle } from './lab/observer.js';
import { inject } from './lab/traffic.js';
import { ns, run, ExecError } from './lab/exec.js';
import { assertPrefix } from './lab/names.js';
import { ppsSeries, stormStats, type CounterSeries } from './lab/analyze.js';
import { chartSvg } from './lab/svg.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    prefix: { type: 'string', default: 'sb-demx-' },
    out: { type: 'string', default: resolve(root, 'out') },
    // For scripts/demo.sh's trap: stop sshd, delete the namespaces and /tmp/<prefix>esxi-*, exit.
    'teardown-only': { type: 'boolean', default: false },
  },
});
const prefix = assertPrefix(values.prefix!);
const outDir = values.out!;

/** The storm is bounded whatever the agent does: the VM stops bridging after this long. */
const GUARD_MS = 5000;
/** Residual frames at prod tolerated in the quiet check after the trip (the test uses < 50). */
const QUIET_MAX_FRAMES = 50;
const HOST = 'esx1';

type Line = Record<string, unknown>;
interface TripLine {
  port: string;
  reason: string;
  evidence: { tNs: number; clues: string[]; thresholds: Record<string, number>; window: Array<{ port: string; tMs: number; rxPps: number; txPps: number; floodPps: number | null }> };
  action: { ok: boolean; via: string; argv?: string[]; durationMs: number; verified: boolean; esxi?: { action: string; target: string } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hrNs = () => Number(process.hrtime.bigint());
const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
const n = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : Math.round(x).toLocaleString('en-US'));
const say = (s: string) => process.stdout.write(`${s}\n`);

// pino's `time` is wall-clock ms; the injection and the evidence are CLOCK_MONOTONIC ns. One
// offset taken at start maps the first onto the second (1 ms resolution, enough for events
// hundreds of ms before the storm).
const wallToMonoNs = hrNs() - Date.now() * 1e6;
const logNs = (l: Line) => {
  const ms = typeof l.time === 'number' ? l.time : typeof l.time === 'string' ? Date.parse(l.time) : NaN;
  return ms * 1e6 + wallToMonoNs;
};

function writePolicy(lab: EsxiLab): string {
  const p = join(lab.dir, 'policy.yaml');
  // As the integration test: stream every 100 ms, judge after 2 hot samples, disconnect a vNIC
  // of the port group "VM Network" before anything else; the uplinks are never the first choice.
  writeFileSync(p, esxiLabPolicy(lab));
  return p;
}

async function adminUp(netns: string): Promise<Map<string, boolean>> {
  const { stdout } = await run(ns(netns, ['ip', '-j', 'link', 'show']));
  const links = JSON.parse(stdout) as Array<{ ifname: string; flags: string[] }>;
  return new Map(links.map((l) => [l.ifname, l.flags.includes('UP')]));
}

/** The CLI, as an operator runs it on the Linux host: exit code and output, never a throw. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run([process.execPath, agentEntry(), ...args], { timeoutMs: 15_000 });
    return { code: 0, out: (r.stdout + r.stderr).trim() };
  } catch (e) {
    if (e instanceof ExecError) return { code: e.exitCode ?? -1, out: e.stderrTail };
    throw e;
  }
}

/**
 * When each port of the evidence window first crossed its rise threshold, as [tNs, text]. The
 * window's tMs is relative to the verdict. A sample without a broadcast rate (floodPps null: no
 * broadcast counter, or none diffable yet in that sample) is judged on rx packets, as the
 * detector does.
 */
function crossings(trip: TripLine): Array<[number, string]> {
  const ev = trip.evidence;
  const out: Array<[number, string]> = [];
  for (const p of [...new Set(ev.window.map((w) => w.port))]) {
    const rise = ev.thresholds[`${p}.risePps`] ?? ev.thresholds[`${p}.floodPps`] ?? ev.thresholds[`${p}.rxPps`];
    if (rise === undefined) continue;
    const hot = ev.window.find((w) => w.port === p && (w.floodPps ?? w.rxPps) >= rise);
    if (!hot) continue;
    const what = hot.floodPps === null ? `rx ${n(hot.rxPps)} pps (no broadcast rate in this sample)` : `broadcast+multicast rx ${n(hot.floodPps)} pps`;
    out.push([ev.tNs + hot.tMs * 1e6, `${p} over its threshold ${n(rise)} pps: ${what}, tx ${n(hot.txPps)} pps`]);
  }
  return out;
}

interface Outcome {
  ok: boolean;
  problems: string[];
  /** Who cut: the host's own fuse, or the agent over SSH. */
  cutBy?: 'fuse' | 'ssh';
}

async function demo(): Promise<Outcome> {
  const problems: string[] = [];
  let cutBy: Outcome['cutBy'];
  say('stormbreaker demo, ESXi leg:');
  say('ESXi over SSH — a STAND-IN ESXi host (real sshd, python esxcli/vsish/vim-cmd printing real formats from real namespace counters); no real ESXi host is used');
  say('');
  const lab = await buildEsxiLab(prefix);
  say(`   lab built and quiet: ${Object.values(lab.ns).join(', ')} (sshd in ${lab.ns.esx} at ${lab.mgmt.esxIp}, out of band)`);
  say(`   vSwitch0: uplinks vmnic0, vmnic1 into the physical switch (prod hangs off it); vmA bridges its two vNICs (keys 4000, 4001)`);
  const policy = writePolicy(lab);
  const tStartNs = hrNs();
  let agent: AgentHandle | null = null;
  let obs: ObserverHandle | null = null;
  let guardFired = false;
  let guard: NodeJS.Timeout | undefined;
  try {
    agent = await startAgent(lab.ns.agent, { policy, stateDir: join(lab.dir, 'agent-state') });
    say(`   agent running in ${lab.ns.agent}; it reaches ${HOST} only over ssh root@${lab.mgmt.esxIp}`);
    const streaming = await agent.waitFor((l) => l.component === 'esxi' && l.state === 'streaming', 15_000);
    // Let a second of samples arrive, so samples/s and round trip are measured, not guessed.
    await sleep(1200);
    const st = (await agent.ask('status')) as { esxi: Array<{ samplesPerSec: number; session: { roundTripMs: number | null } }> };
    const h = st.esxi[0];
    obs = await startObserver(lab.ns.prod, ['eth0'], GUARD_MS + 4000);
    const tCloseNs = hrNs();
    await closeLoop(lab);
    await sleep(200);
    const seen = agent.logs.length;
    guard = setTimeout(() => {
      guardFired = true;
      void openLoop(lab).catch(() => undefined);
    }, GUARD_MS);
    const sent = await inject({ prefix: lab.prefix, ns: { prod: lab.ns.prod } }, 'prod', 'eth0', { count: 1, kind: 'broadcast' });
    const t0 = sent.tFirstNs;
    // A trip may take until the guard ends the storm (a 100 ms stream judged after 2 hot samples
    // needed 0.4-1.5 s in runs here); a trip logged after the guard fired does not count.
    let trip: TripLine | null = null;
    try {
      const left = GUARD_MS - (hrNs() - t0) / 1e6;
      trip = (await agent.waitFor((l) => agent!.logs.indexOf(l) >= seen && l.msg === 'trip', Math.max(1, left))) as unknown as TripLine;
    } catch (e) {
      problems.push(`no trip before the guard (${(e as Error).message.split(';')[0]})`);
    }
    // Past the trip the guard has no job; if it already fired, the storm may have ended by it.
    if (trip && !guardFired) clearTimeout(guard);
    if (trip) cutBy = trip.action.via === 'esxi-fuse' ? 'fuse' : 'ssh';
    // Watch prod long enough to see it quiet (or the guard end the storm), then stop the observer.
    await sleep(trip ? 700 : Math.max(0, GUARD_MS - (hrNs() - t0) / 1e6 + 300));
    clearTimeout(guard);
    const prod: CounterSeries = (await obs.stop()).eth0 ?? { t: [], c: [] };
    obs = null;
    const stats = stormStats(prod, t0);
    const tEnd = prod.t.at(-1) ?? t0;
    const tail = prod.c.length ? (prod.c.at(-1) as number) - countBefore(prod, tEnd - 500e6) : NaN;

    // Check the outcome on the stand-in host itself: its inventory and its real links.
    const inv = await readInventory(lab);
    const disconnected = inv.vms.flatMap((v) => v.nics.filter((x) => !x.connected).map((x) => `${v.name} key ${x.key}`));
    const esxUp = await adminUp(lab.ns.esx);
    const downDevs = [...lab.uplinks, ...lab.vmNics.map((v) => v.dev)].filter((d) => esxUp.get(d) === false);
    if (!trip) {
      // already reported
    } else if (!trip.action.ok) problems.push(`trip action failed: ${JSON.stringify(trip.action).slice(0, 300)}`);
    if (disconnected.length !== 1 || !disconnected[0]!.startsWith('vmA ')) problems.push(`disconnected vNICs: ${disconnected.join(', ') || 'none'} (want exactly one of vmA's)`);
    if (downDevs.length !== 1) problems.push(`ports down on vSwitch0: ${downDevs.join(', ') || 'none'} (want exactly one)`);
    if (guardFired) problems.push(`the guard opened the loop after ${GUARD_MS} ms: the agent did not end the storm`);
    if (stats.quietAtNs === null || !(tail < QUIET_MAX_FRAMES)) problems.push(`prod not quiet: ${n(tail)} frames in the last 500 ms observed`);
    if (problems.length > 0) {
      const logPath = resolve(outDir, 'demo-esxi-agent.jsonl');
      mkdirSync(outDir, { recursive: true });
      writeFileSync(logPath, agent.logs.map((l) => JSON.stringify(l)).join('\n') + '\n');
      say(`   agent log (for the failure below): ${logPath}`);
    }

    // The timeline, in time order (the trip is logged after vim-cmd ran AND a re-read verified it,
    // so quiet at prod can come before the trip line).
    const ev: Array<[number, string]> = [];
    ev.push([logNs(streaming), `agent streaming counters of ${HOST} over one SSH connection (${f(h?.samplesPerSec, 1)} samples/s, round trip ${f(h?.session.roundTripMs, 1)} ms, measured 1.2 s later)`]);
    ev.push([tCloseNs, 'vmA starts bridging its eth0 and eth1: the loop is closed (quiet until a frame arrives)']);
    ev.push([t0, 'ONE broadcast frame leaves prod (a production host on the physical switch)']);
    if (stats.firstFrameNs !== null) ev.push([stats.firstFrameNs, 'first storm frame back at prod']);
    if (trip) {
      ev.push(...crossings(trip));
      const why = trip.evidence.clues.map((c) => `\n              why: ${c}`).join('');
      // Armed by default, the host's own fuse decides and cuts; with `fuse: off` the agent does, over ssh.
      const onHost = trip.action.via === 'esxi-fuse';
      ev.push([trip.evidence.tNs, `verdict: ${trip.reason}${why}\n              ${onHost ? 'cut on the host by its fuse (the agent waited for it rather than cut twice)' : 'runs over ssh'}: ${(trip.action.argv ?? []).join(' ')}`]);
      ev.push([trip.evidence.tNs + trip.action.durationMs * 1e6, `trip ${trip.port}: \`${(trip.action.argv ?? []).join(' ')}\` done${onHost ? ' on the host' : ` and verified=${trip.action.verified}`} (${trip.action.esxi?.action ?? '?'} ${trip.action.esxi?.target ?? ''}, ${f(trip.action.durationMs)} ms${onHost ? ' for the cut call' : ' incl. the re-read'})`]);
    }
    if (stats.quietAtNs !== null) ev.push([stats.quietAtNs, 'last storm frame at prod: quiet']);
    ev.sort((x, y) => x[0] - y[0]);
    say('');
    say('   timeline (ms from the injected frame):');
    for (const [t, text] of ev) say(`${f((t - t0) / 1e6).padStart(9)}  ${text}`);
    if (!trip) say('              (no trip: the agent did NOT break this loop)');
    const leaked = stats.framesLeaked ?? (prod.c.length ? (prod.c.at(-1) as number) - countBefore(prod, t0) : NaN);
    say(`   frames that reached prod: ${n(leaked)}; vNICs disconnected: ${disconnected.join(', ') || 'none'}; vSwitch0 ports down: ${downDevs.join(', ') || 'none'}`);

    // Chart: storm frames/s at prod, 10 ms bins, from the frame to a little after quiet.
    mkdirSync(outDir, { recursive: true });
    const svgPath = resolve(outDir, 'demo-esxi.svg');
    const endMs = stats.quietAtNs !== null ? (stats.quietAtNs - t0) / 1e6 + 500 : (tEnd - t0) / 1e6;
    // 10 ms bins: 5 ms bins show the observer's scheduling gaps (busy 2-core machine) as spikes.
    const series = ppsSeries(prod, 10, t0);
    const k = series.tMs.findIndex((t) => t > endMs);
    const cut = k < 0 ? series : { tMs: series.tMs.slice(0, k), pps: series.pps.slice(0, k) };
    const markers = trip ? [{ tMs: (trip.evidence.tNs - t0) / 1e6, label: `trip: vim-cmd ${(trip.action.argv ?? []).slice(1).join(' ')}` }] : [];
    writeFileSync(
      svgPath,
      chartSvg({
        title: 'ESXi over SSH (stand-in host): storm frames/s reaching the production host',
        series: [{ name: `stormbreaker over SSH: ${n(stats.framesLeaked)} frames`, ...cut }],
        width: 1000,
        height: 420,
        markers,
        yLog: true,
        xLabel: 'ms since the one broadcast frame was sent (10 ms bins)',
        yLabel: 'frames/s at prod',
      }),
    );
    say(`   chart: ${svgPath}`);
    const summaryPath = resolve(outDir, 'demo-esxi-summary.json');
    const rel = (t: number | null) => (t === null ? null : (t - t0) / 1e6);
    writeFileSync(
      summaryPath,
      JSON.stringify({ standIn: true, samplesPerSec: h?.samplesPerSec ?? null, roundTripMs: h?.session.roundTripMs ?? null, firstFrameMs: rel(stats.firstFrameNs), verdictMs: trip ? rel(trip.evidence.tNs) : null, quietMs: rel(stats.quietAtNs), framesLeaked: stats.framesLeaked, disconnected, downDevs, trip }, null, 2) + '\n',
    );

    // Restore, as an operator would once the VM stopped bridging: through the agent's socket.
    if (trip) {
      await openLoop(lab);
      say('');
      say('   vmA stops bridging (loop opened); the operator restores the vNIC through the CLI:');
      const from = agent.logs.length;
      const args = ['restore', trip.port, '--reason', 'vmA no longer bridges', '--socket', agent.socket];
      say(`     $ stormbreaker ${args.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ')}`);
      const r = await cli(args);
      say(`     ${r.out.split('\n').join('\n     ')} (exit ${r.code})`);
      if (r.code !== 0) problems.push(`restore CLI exited ${r.code}`);
      else {
        try {
          const rl = (await agent.waitFor((l) => agent!.logs.indexOf(l) >= from && l.msg === 'restore' && l.port === trip!.port, 10_000)) as unknown as TripLine;
          say(`     agent ran over ssh \`${(rl.action.argv ?? []).join(' ')}\` (${rl.action.esxi?.action ?? '?'}; ${f(rl.action.durationMs)} ms, verified ${rl.action.verified})`);
          if (!rl.action.ok) problems.push('restore action failed');
        } catch (e) {
          problems.push(`no restore logged: ${(e as Error).message.split(';')[0]}`);
        }
        const dev = downDevs[0];
        if (dev && (await adminUp(lab.ns.esx)).get(dev) !== true) problems.push(`${dev} still down after restore`);
        else if (dev) say(`     ${dev} (the vNIC's vSwitch0 port) is up again`);
      }
    }
    say(`   (whole leg so far: ${f((hrNs() - tStartNs) / 1e9)} s since the agent started)`);
  } finally {
    if (guard) clearTimeout(guard);
    await openLoop(lab).catch(() => undefined);
    await obs?.stop().catch(() => undefined);
    await agent?.stop();
  }
  return { ok: problems.length === 0, problems, ...(cutBy ? { cutBy } : {}) };
}

/** Counter value at or before tNs (the first sample's before any). */
function countBefore(s: CounterSeries, tNs: number): number {
  let v = s.c[0] ?? 0;
  for (let i = 0; i < s.t.length && (s.t[i] as number) <= tNs; i++) v = s.c[i] as number;
  return v;
}

if (values['teardown-only']) {
  await teardownEsxiLab(prefix);
  process.exit(0);
}

const onSignal = () => {
  void teardownEsxiLab(prefix).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

let outcome: Outcome;
try {
  outcome = await demo();
} catch (e) {
  outcome = { ok: false, problems: [(e as Error).message] };
} finally {
  await teardownEsxiLab(prefix);
}
if (!outcome.ok) {
  say(`\nDEMO FAILED (ESXi over SSH): ${outcome.problems.join('; ')}`);
  process.exit(1);
}
say(`\nESXi leg ok: one vNIC of the bridging VM disconnected ${outcome.cutBy === 'fuse' ? "by the host's own fuse" : 'over SSH'}, the storm stopped, the vNIC restored; no namespace is left behind.`);
