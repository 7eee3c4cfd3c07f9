// The main job: a real loop storm in network namespaces, broken by the agent, printed as a
// timeline next to the same storm under a switch-style 1-second storm-control, with an SVG
// chart per loop shape. Run through scripts/demo.sh (root; it builds and cleans up).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLab, teardownLab, type Lab, type Shape } from './lab/topology.js';
import { startAgent, type AgentHandle } from './lab/agent.js';
import { resetPorts, stormWithAgent, stormWithStormControl, type StormRun } from './lab/scenario.js';
import { ppsSeries } from './lab/analyze.js';
import { chartSvg } from './lab/svg.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    prefix: { type: 'string', default: 'sb-demo-' },
    policy: { type: 'string', default: resolve(root, 'policies/lab.yaml') },
    out: { type: 'string', default: resolve(root, 'out') },
    shapes: { type: 'string', default: 'kvm,esx' },
  },
});
const prefix = values.prefix!;
const outDir = values.out!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (ns: number, t0: number) => (ns - t0) / 1e6;
const n = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : Math.round(x).toLocaleString('en-US'));
const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

const SHAPES: Record<Shape, string> = {
  kvm: 'KVM-style: host bridge br0 with two uplinks (up1, up2) into a switch with STP off',
  esx: 'ESX-style: a VM bridges its two vNICs (vmA1, vmA2) on the host vSwitch vsw0',
};

interface TripLog {
  port: string;
  reason: string;
  evidence?: { tNs: number; clues: string[]; thresholds: Record<string, number> };
  action?: { via: string; durationMs: number; verified: boolean; stoppedNs?: number; forwardingStoppedMs?: number; adminDownVia?: string };
}

interface ShapeDemo {
  shape: Shape;
  agent: StormRun;
  baseline: StormRun;
  trip: TripLog | null;
}

async function demoShape(shape: Shape): Promise<ShapeDemo> {
  process.stdout.write(`\n== ${SHAPES[shape]}\n`);
  const lab: Lab = await buildLab(shape, prefix);
  process.stdout.write(`   lab built and quiet: namespaces ${Object.values(lab.ns).join(', ')}\n`);
  let agent: AgentHandle | null = null;
  let run: StormRun;
  try {
    agent = await startAgent(lab.ns.host, { policy: values.policy! });
    await sleep(300);
    process.stdout.write(`   agent running in ${lab.ns.host} with ${values.policy}; injecting ONE broadcast frame from vm1\n`);
    run = await stormWithAgent(lab, agent, 400);
  } finally {
    await agent?.stop();
  }
  await resetPorts(lab);
  process.stdout.write('   same storm again under a 1-second storm-control (the switch way)...\n');
  let baseline: StormRun;
  try {
    baseline = await stormWithStormControl(lab);
  } finally {
    await teardownLab(prefix);
  }
  const t = run.trips.find((l) => l.msg === 'trip') as unknown as TripLog | undefined;
  return { shape, agent: run, baseline, trip: t ?? null };
}

function timeline(d: ShapeDemo): string {
  const a = d.agent;
  const b = d.baseline;
  const t0 = a.tInjectNs;
  // The agent's events in time order (a bridge port stops forwarding before its admin-down ends,
  // and prod can be quiet before that): each with the lines that belong to it.
  const events: Array<{ t: number; lines: string[] }> = [{ t: 0, lines: [`     ${f(0).padStart(8)}  one broadcast frame leaves vm1`] }];
  const at = (t: number, text: string, more: string[] = []) => events.push({ t, lines: [`     ${f(t).padStart(8)}  ${text}`, ...more] });
  if (a.stats.firstFrameNs !== null) at(ms(a.stats.firstFrameNs, t0), 'first storm frame reaches prod (a production host on the switch)');
  if (d.trip?.evidence) {
    const tv = ms(d.trip.evidence.tNs, t0);
    at(tv, `verdict: ${d.trip.reason}`, d.trip.evidence.clues.map((c) => `               why: ${c}`));
    const act = d.trip.action;
    if (act?.stoppedNs !== undefined && act.forwardingStoppedMs !== undefined) {
      const tStart = ms(act.stoppedNs, t0) - act.forwardingStoppedMs;
      at(ms(act.stoppedNs, t0), `${d.trip.port} stops forwarding (${act.via})`);
      at(tStart + act.durationMs, `${d.trip.port} is down (admin-down by ${act.adminDownVia ?? '?'}, ${f(act.durationMs)} ms after the action started, verified ${act.verified})`);
    } else if (act) {
      at(tv + act.durationMs, `${d.trip.port} is down (${act.via}, ${f(act.durationMs)} ms, verified ${act.verified})`);
    }
  }
  if (a.stats.quietAtNs !== null) at(ms(a.stats.quietAtNs, t0), 'last storm frame at prod: quiet');
  const lines: string[] = [`   stormbreaker (ms from the injected frame):`];
  for (const e of events.sort((x, y) => x.t - y.t)) lines.push(...e.lines);
  if (!d.trip?.evidence) lines.push('     (no trip: the agent did NOT break this loop; it was opened by hand)');
  lines.push(`     frames leaked to prod: ${n(a.stats.framesLeaked)}; ports down: ${a.downPorts.join(', ') || 'none'}`);
  lines.push(`   1-second storm-control baseline, same storm:`);
  const bt0 = b.tInjectNs;
  for (const s of b.shut) lines.push(`     ${f(ms(s.tNs, bt0), 0).padStart(8)}  storm-control errdisables ${s.port}`);
  if (b.stats.quietAtNs !== null) lines.push(`     ${f(ms(b.stats.quietAtNs, bt0), 0).padStart(8)}  quiet at prod`);
  lines.push(`     frames leaked to prod: ${n(b.stats.framesLeaked)}; ports shut: ${b.shut.map((s) => s.port).join(', ') || 'none'}`);
  const ratio = (a.stats.framesLeaked ?? NaN) / (b.stats.framesLeaked ?? NaN);
  const faster = ((b.stats.quietAtNs ?? NaN) - bt0) / ((a.stats.quietAtNs ?? NaN) - t0);
  lines.push(`   => stormbreaker let through ${f(ratio * 100)}% of the baseline's frames, was quiet ${f(faster, 0)}x sooner, and shut ${a.downPorts.length} port(s) instead of ${b.shut.length}.`);
  return lines.join('\n');
}

function chart(d: ShapeDemo): string {
  const a = d.agent;
  const b = d.baseline;
  const bq = b.stats.quietAtNs !== null ? ms(b.stats.quietAtNs, b.tInjectNs) : 1000;
  const span = Math.ceil((bq + 100) / 100) * 100;
  const cut = (s: { tMs: number[]; pps: number[] }) => {
    const k = s.tMs.findIndex((t) => t > span);
    return k < 0 ? s : { tMs: s.tMs.slice(0, k), pps: s.pps.slice(0, k) };
  };
  const sa = cut(ppsSeries(a.prod, 1, a.tInjectNs));
  // 10 ms bins for the long baseline storm: 1 ms bins show the observer's polling jitter as spikes.
  const sb = cut(ppsSeries(b.prod, 10, b.tInjectNs));
  const markers = [];
  if (d.trip?.evidence) markers.push({ tMs: ms(d.trip.evidence.tNs, a.tInjectNs), label: `stormbreaker shuts ${d.trip.port}` });
  const lastShut = b.shut[b.shut.length - 1];
  if (lastShut) markers.push({ tMs: ms(lastShut.tNs, b.tInjectNs), label: `storm-control shuts ${b.shut.map((s) => s.port).join('+')}` });
  return chartSvg({
    title: `${d.shape === 'kvm' ? 'KVM-style' : 'ESX-style'} loop: storm frames/s reaching the production host`,
    series: [
      { name: `stormbreaker: ${n(a.stats.framesLeaked)} frames`, ...sa },
      { name: `1 s storm-control: ${n(b.stats.framesLeaked)} frames`, ...sb },
    ],
    width: 1000,
    height: 420,
    markers,
    yLog: true,
    xLabel: 'ms since the one broadcast frame was sent (stormbreaker in 1 ms bins, storm-control in 10 ms bins)',
    yLabel: 'frames/s at prod',
  });
}

const onSignal = () => {
  void teardownLab(prefix).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

process.stdout.write('stormbreaker demo: a real broadcast loop storm in network namespaces, broken by the agent.\n');
const results: ShapeDemo[] = [];
try {
  for (const s of values.shapes!.split(',') as Shape[]) {
    const d = await demoShape(s);
    results.push(d);
    process.stdout.write(timeline(d) + '\n');
    mkdirSync(outDir, { recursive: true });
    const svg = resolve(outDir, `demo-${s}.svg`);
    writeFileSync(svg, chart(d));
    process.stdout.write(`   chart: ${svg}\n`);
  }
} finally {
  await teardownLab(prefix);
}
writeFileSync(
  resolve(outDir, 'demo-summary.json'),
  JSON.stringify(
    results.map((d) => ({
      shape: d.shape,
      stormbreaker: { msToQuiet: d.agent.stats.quietAtNs === null ? null : ms(d.agent.stats.quietAtNs, d.agent.tInjectNs), framesLeaked: d.agent.stats.framesLeaked, down: d.agent.downPorts, trip: d.trip },
      stormControl: { msToQuiet: d.baseline.stats.quietAtNs === null ? null : ms(d.baseline.stats.quietAtNs, d.baseline.tInjectNs), framesLeaked: d.baseline.stats.framesLeaked, shut: d.baseline.shut.map((s) => s.port) },
    })),
    null,
    2,
  ) + '\n',
);
// The demo fails loudly if the agent did not break a loop by shutting exactly one member.
const bad = results.filter((d) => !d.trip || d.agent.downPorts.length !== 1 || !d.agent.downPorts.every((p) => d.trip!.port === p));
if (bad.length > 0) {
  process.stdout.write(`\nDEMO FAILED for ${bad.map((d) => d.shape).join(', ')}: the loop was not broken by exactly one shut.\n`);
  process.exit(1);
}
process.stdout.write(`\nsummary: ${resolve(outDir, 'demo-summary.json')}; no namespace is left behind.\n`);
// The newcomer's last question: where are the pictures, and how do I look at them.
const charts = results.map((d) => resolve(outDir, `demo-${d.shape}.svg`));
process.stdout.write(
  `charts (SVG, frames/s at the production host, stormbreaker vs a 1 s storm-control): ${charts.join(', ')}\n` +
    `  open them in any web browser (file://${charts[0] ?? resolve(outDir, 'demo-kvm.svg')}), or on a remote machine copy them first:\n` +
    `  scp root@THIS-HOST:${outDir.endsWith('/') ? outDir : `${resolve(outDir)}/`}demo-*.svg . && xdg-open demo-kvm.svg\n`,
);
