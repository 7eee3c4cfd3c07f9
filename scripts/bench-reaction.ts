// Reaction benchmark (issue 11): real storms of every shape broken by the agent, warm (one agent,
// many storms --gap-ms apart: its sampler still at the active rate), idle (the same agent after
// the warm storms, each storm --idle-gap-ms after the last: its sampler back at the idle rate, so
// the wake path from idle sampling without the first run's cost) and cold (a fresh agent idle
// >= --cold-idle-ms, one storm each: the wake path plus first-run cost, JIT and first
// allocations), beside the
// near-limit reference (a minimal 1 ms sysfs poller that cuts through /sys/class/net/X/flags and
// decides nothing) on the same storms in the same run, and a 1-second storm-control for the
// base loops. Prints percentiles and every agent figure as a ratio to the reference. Times are over
// the storms the breaker stopped (a storm the bench had to end is counted, never timed); a shape
// whose near-limit poller stopped none of its storms reports no reference rather than a ratio.
// (On the slow large-frame loops, ~140-165 frames/s per port, it still cut every storm in
// 8-10 ms: two 1 ms samples in a row saw frames within the storm's first few.)
//   node dist/scripts/bench-reaction.js [--storms 10] [--idle 2] [--idle-gap-ms 2500] [--cold 5] [--cold-idle-ms 30000] [--near 5]
//     [--baseline 3] [--chatter-pps 0] [--gap-ms 150] [--flood-sender c|python] [--shapes kvm,esx,kvm-unicast,kvm-multicast,kvm-slow,kvm-slow-1500,kvm-jumbo,kvm-3up,vm-flood,kvm-hotplug,kvm-carrier,kvm-nolearn,kvm-hairpin,kvm-macvtap,kvm-stp,kvm-vxlan,kvm-many]
//     [--prefix sb-bench-] [--out out/bench-reaction.json] [--observer kernel|poll] [--cpu-prof DIR]
// Prod's frames are timed by observe-ts (each frame's kernel receive time: exact, however late the
// reader runs) unless --observer poll (observe.mjs, rx_packets polled every 0.25 ms: the time of
// the poll that saw the last frame, late whenever something held the poller's core).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLab, teardownLab, type Lab } from './lab/topology.js';
import { startAgent, type AgentHandle } from './lab/agent.js';
import { labDistEntry } from './lab/assets.js';
import { resetPorts, stormWithStormControl, type StormRun } from './lab/scenario.js';
import { pollerMiss, restoreAfter, shapeSpec, shapeStorm, SHAPES, type ShapeName, type ShapeRun, type ShapeSpec } from './lab/shape-storms.js';
import { fmt } from './lab/stats.js';
import { OBSERVER_LATE_MS, reactionTable, shapeSummary } from './lab/reaction-report.js';
import { instrumentText, OBSERVER_KINDS, type ObserverKind } from './lab/observer.js';
import { run, ns } from './lab/exec.js';
import { inject } from './lab/traffic.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    storms: { type: 'string', default: '10' },
    // Storms against the warm agent once its sampler went idle: each --idle-gap-ms after the
    // last storm's restore (the sampler stays at the active rate activeHoldMs, 2 s by default).
    idle: { type: 'string', default: '2' },
    'idle-gap-ms': { type: 'string', default: '2500' },
    cold: { type: 'string', default: '5' },
    'cold-idle-ms': { type: 'string', default: '30000' },
    near: { type: 'string', default: '5' },
    baseline: { type: 'string', default: '3' },
    shapes: { type: 'string', default: SHAPES.join(',') },
    prefix: { type: 'string', default: 'sb-bench-' },
    policy: { type: 'string', default: resolve(root, 'policies/lab-bench.yaml') },
    out: { type: 'string', default: resolve(root, 'out/bench-reaction.json') },
    // Background broadcast chatter (ARP-like) reaching the host on an unbridged port during the
    // warm storms, so it wakes the agent's tripwire all the time without ever entering the loop.
    'chatter-pps': { type: 'string', default: '0' },
    // Pause between warm storms. The default meets a sampler still at the active rate (it stays
    // there activeHoldMs, 2 s, after a storm); over 2000 every warm storm meets an idle sampler,
    // as a real agent's storms do (what the tripwire and the FDB wake are for).
    'gap-ms': { type: 'string', default: '150' },
    // vm-flood's sender: the C one at full speed (scripts/lab/flood.c) or the python send.py.
    'flood-sender': { type: 'string', default: 'c' },
    // What times prod's frames (see the header).
    observer: { type: 'string', default: 'kernel' },
    // Profile the agent (see profWrap): a directory for its .cpuprofile files.
    'cpu-prof': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  // The usage is this file's header comment.
  const { readFileSync } = await import('node:fs');
  const src = fileURLToPath(import.meta.url).replace(/\/dist\/scripts\/bench-reaction\.js$/, '/scripts/bench-reaction.ts');
  const head = readFileSync(src, 'utf8').split('\n').filter((l) => l.startsWith('//'));
  process.stdout.write(head.map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const n = (k: keyof typeof values): number => Number(values[k]);
if (n('idle') > 0 && n('idle-gap-ms') < 2500) process.stderr.write(`--idle-gap-ms ${n('idle-gap-ms')} is under activeHoldMs (2000) + 500: the idle storms may meet a sampler still at the active rate\n`);
if (values['flood-sender'] !== 'c' && values['flood-sender'] !== 'python') throw new Error(`--flood-sender must be c or python, got ${values['flood-sender']}`);
if (!OBSERVER_KINDS.includes(values.observer as ObserverKind)) throw new Error(`--observer must be ${OBSERVER_KINDS.join(' or ')}, got ${values.observer}`);
const observer = values.observer as ObserverKind;
const obsOpts = { observer };
const prefix = values.prefix!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OBSERVE_MS = 400;

interface ShapeResult {
  shape: ShapeName;
  warm: ShapeRun[];
  idle: ShapeRun[];
  cold: ShapeRun[];
  near: ShapeRun[];
  baseline: StormRun[];
}

function note(shape: string, who: string, i: number, of: number, r: ShapeRun): void {
  // The first port that stopped: a loop's trips are logged when their admin-downs end, in any order.
  const stops = r.trips.filter((t) => t.msg === 'trip').map((t) => t.action as { stoppedNs?: number; forwardingStoppedMs?: number } | undefined);
  const a = stops.filter((x) => x?.stoppedNs).sort((x, y) => x!.stoppedNs! - y!.stoppedNs!)[0];
  const stopMs = a?.stoppedNs ? (a.stoppedNs - r.tInjectNs) / 1e6 : NaN;
  // stoppedNs is when the bridge-state call returned (the change lands inside it); prod can also
  // go quiet before the action starts when the storm stalls (no frames reach prod from then on).
  const early = r.msFromInject < stopMs ? `; prod went quiet ${fmt(stopMs - r.msFromInject, 2)} ms before that` : '';
  const forwarding = a?.stoppedNs ? `, first port stopped forwarding at ${fmt(stopMs, 2)} ms, ${fmt(a.forwardingStoppedMs ?? NaN, 2)} ms of it in the action${early}` : '';
  const cuts = who === 'near-limit' ? `; ${pollerMiss(r)}` : '';
  // The polling observer (--observer poll) reads every 0.25 ms at normal priority; when something
  // held its core the poll that saw the last frame came late: the frame lies between the two
  // polls. With the kernel observer the two are the last frame and the one before it.
  const lag =
    r.msQuietObserved - r.msQuietAfter <= OBSERVER_LATE_MS ? '' : r.msQuietAfter < 0 ? ' (the observer did not poll between the frame and then)' : ` (prod's last frame after ${fmt(r.msQuietAfter, 2)} ms: the observer polled late)`;
  const ms = r.stoppedByBreaker ? `${fmt(r.msFromInject, 2)} ms${lag}` : `not stopped by the ${who === 'near-limit' ? 'poller' : 'agent'} in ${OBSERVE_MS} ms (quiet ${fmt(r.msQuietObserved, 2)} ms after the bench's own stop${cuts})`;
  const drops = r.ringDrops ? `; the observer's ring lost ${r.ringDrops} frames during it (times may be early)` : '';
  const lull = r.msFirstLull !== undefined ? `; a lull at ${fmt(r.msFirstLull, 2)} ms before that (the storm went on)` : '';
  const plug = r.msPlugToInject !== undefined ? `; the frame left ${fmt(r.msPlugToInject, 2)} ms after the enslave returned` : '';
  process.stderr.write(`${shape} ${who} ${i + 1}/${of}: ${ms} (verdict ${fmt(r.msToVerdict, 2)} ms${forwarding}), ${r.framesLeaked} frames, down ${r.down.join(',')}${drops}${lull}${plug}\n`);
}

/**
 * --cpu-prof DIR: the agent under node --cpu-prof (NODE_OPTIONS refuses it, so through
 * node-flags.js, as bench-cost), its profile written when it stops. Sampling costs the agent
 * time of its own: figures of a profiled run are for finding where a tick goes, not for reporting.
 */
function profWrap(name: string): string[] {
  const dir = values['cpu-prof'];
  if (!dir) return [];
  return [process.execPath, '--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${resolve(dir)}`, `--cpu-prof-name=agent-${name}.cpuprofile`, labDistEntry('node-flags.js')];
}

async function agentStorms(lab: Lab, spec: ShapeSpec, shape: ShapeName, res: ShapeResult): Promise<void> {
  let agent: AgentHandle | null = null;
  try {
    agent = await startAgent(lab.ns.host, { policy: values.policy!, wrap: profWrap(`${shape}-warm`) });
    await warmStorms(lab, spec, shape, res, agent);
    // Idle: the same process, so its code is hot; only the sampler is back at its idle rate.
    for (let i = 0; i < n('idle'); i++) {
      await sleep(n('idle-gap-ms'));
      const r = await shapeStorm(lab, spec, { kind: 'agent', agent }, OBSERVE_MS, obsOpts);
      res.idle.push(r);
      note(shape, 'idle', i, n('idle'), r);
      await restoreAfter(lab, spec, r, agent);
    }
  } finally {
    await agent?.stop();
  }
  // Cold: what a real agent meets after months of idling is its first storm.
  for (let i = 0; i < n('cold'); i++) {
    const a = await startAgent(lab.ns.host, { policy: values.policy!, wrap: profWrap(`${shape}-cold-${i + 1}`) });
    try {
      await sleep(n('cold-idle-ms'));
      const r = await shapeStorm(lab, spec, { kind: 'agent', agent: a }, OBSERVE_MS, obsOpts);
      res.cold.push(r);
      note(shape, 'cold', i, n('cold'), r);
      await restoreAfter(lab, spec, r, a);
    } finally {
      await a.stop();
    }
  }
}

async function warmStorms(lab: Lab, spec: ShapeSpec, shape: ShapeName, res: ShapeResult, agent: AgentHandle): Promise<void> {
  const chatterPps = n('chatter-pps');
  if (chatterPps > 0) {
    await run(ns(lab.ns.host, ['ip', 'link', 'add', 'chat0', 'type', 'veth', 'peer', 'name', 'chat1']));
    await run(ns(lab.ns.host, ['ip', 'link', 'set', 'chat0', 'up']));
    await run(ns(lab.ns.host, ['ip', 'link', 'set', 'chat1', 'up']));
  }
  await sleep(300);
  for (let i = 0; i < n('storms'); i++) {
    const chatter = chatterPps > 0 ? inject(lab, lab.ns.host, 'chat1', { pps: chatterPps, duration: 1.2, kind: 'broadcast' }) : null;
    if (chatter) await sleep(300 + Math.random() * 200);
    const r = await shapeStorm(lab, spec, { kind: 'agent', agent }, OBSERVE_MS, obsOpts);
    await chatter;
    res.warm.push(r);
    note(shape, 'warm', i, n('storms'), r);
    await restoreAfter(lab, spec, r, agent);
    await sleep(n('gap-ms'));
  }
}

async function benchShape(shape: ShapeName): Promise<ShapeResult> {
  const spec = shapeSpec(shape, values['flood-sender'] as 'c' | 'python');
  let lab = await buildLab(spec.base, prefix);
  const res: ShapeResult = { shape, warm: [], idle: [], cold: [], near: [], baseline: [] };
  try {
    lab = await spec.prepare(lab);
    await agentStorms(lab, spec, shape, res);
    for (let i = 0; i < n('near'); i++) {
      const r = await shapeStorm(lab, spec, { kind: 'near-limit' }, OBSERVE_MS, obsOpts);
      res.near.push(r);
      note(shape, 'near-limit', i, n('near'), r);
      await spec.reset(lab);
      await sleep(100);
    }
    if (spec.baseline) {
      for (let i = 0; i < n('baseline'); i++) {
        const r = await stormWithStormControl(lab);
        res.baseline.push(r);
        const shut = r.shut.length > 0 ? `shut ${r.shut.map((s) => `${s.port} at ${fmt((s.tNs - r.tInjectNs) / 1e6, 0)} ms`).join(', ')}` : 'shut nothing (the bench opened the loop)';
        process.stderr.write(`${shape} storm-control ${i + 1}/${n('baseline')}: storm began ${fmt(r.phaseMs ?? NaN, 0)} ms into its interval, ${r.stats.framesLeaked} frames, ${shut}\n`);
        await resetPorts(lab);
        await sleep(100);
      }
    }
  } finally {
    await teardownLab(prefix);
  }
  return res;
}

const shapes = values.shapes!.split(',') as ShapeName[];
for (const s of shapes) if (!SHAPES.includes(s)) throw new Error(`unknown shape ${s}; known: ${SHAPES.join(',')}`);
const onSignal = () => void teardownLab(prefix).finally(() => process.exit(130));
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
const results: ShapeResult[] = [];
process.stderr.write(`${instrumentText(observer)}\n`);
try {
  for (const s of shapes) results.push(await benchShape(s));
} finally {
  await teardownLab(prefix);
}
const text = reactionTable(results, OBSERVE_MS, instrumentText(observer));
process.stdout.write(text + '\n');
mkdirSync(dirname(values.out!), { recursive: true });
const slim = (x: ShapeRun) => ({ msFromInjection: x.msFromInject, stoppedByBreaker: x.stoppedByBreaker, ...(x.msStopStart !== undefined ? { msStopStart: x.msStopStart } : {}), msQuietObserved: x.msQuietObserved, ...(Number.isFinite(x.msQuietAfter) ? { msQuietAfter: x.msQuietAfter } : {}), msToVerdict: x.msToVerdict, framesLeaked: x.framesLeaked, down: x.down, trips: x.trips.map((t) => tripFacts(t, x.tInjectNs)), ...(x.msFirstLull !== undefined ? { msFirstLull: x.msFirstLull } : {}), ...(x.msPlugToInject !== undefined ? { msPlugToInject: x.msPlugToInject } : {}), ...(x.pollerWindow ? { pollerWindow: x.pollerWindow } : {}), ...(x.pollerCuts ? { pollerCuts: x.pollerCuts } : {}), ...(x.ringDrops ? { ringDrops: x.ringDrops } : {}) });
/** A trip or escalation as the journal has it, timed from the injection (same monotonic clock): when its evidence was read, how long the link-down took, and the escalation's evidence window after the first shut. */
function tripFacts(t: Record<string, unknown>, t0: number): Record<string, unknown> {
  const ev = t.evidence as { tNs?: number; clues?: string[]; window?: Array<{ port: string; tMs: number; rxPps: number; txPps: number }> } | undefined;
  const action = t.action as { durationMs?: number; stoppedNs?: number; forwardingStoppedMs?: number } | undefined;
  const out: Record<string, unknown> = { event: t.msg, port: t.port, reason: t.reason };
  if (ev?.tNs) out.msEvidence = Math.round((ev.tNs - t0) / 1e4) / 100;
  if (action?.durationMs !== undefined) out.actionMs = action.durationMs;
  if (action?.stoppedNs) out.msStopped = Math.round((action.stoppedNs - t0) / 1e4) / 100;
  if (action?.forwardingStoppedMs !== undefined) out.actionToStoppedMs = Math.round(action.forwardingStoppedMs * 100) / 100;
  // What the verdict rested on (which rule, how long a member had been hot): why a storm was slow.
  if (ev?.clues) out.clues = ev.clues;
  if (t.msg === 'escalate' && ev?.window) out.window = ev.window.filter((w) => w.tMs > -12).map((w) => `${w.port} ${w.tMs.toFixed(2)} ${Math.round(w.rxPps)}/${Math.round(w.txPps)}`);
  // A trip's samples timed from the injection (the member ports' last ones): a gap between two is
  // a sampler that did not run (session 21: 14 ms after a wake's burst ended, a slow loop not yet judged).
  if (t.msg === 'trip' && ev?.window && ev.tNs) out.windowFromInject = ev.window.filter((w) => w.tMs > -16).map((w) => `${w.port} ${(w.tMs + (ev.tNs! - t0) / 1e6).toFixed(2)} ${Math.round(w.rxPps)}/${Math.round(w.txPps)}`);
  return out;
}
writeFileSync(
  values.out!,
  JSON.stringify(
    results.map((r) => ({ shape: r.shape, observer, summary: shapeSummary(r), warm: r.warm.map(slim), idle: r.idle.map(slim), cold: r.cold.map(slim), nearLimit: r.near.map(slim), stormControl: r.baseline.map((x) => ({ framesLeaked: x.stats.framesLeaked, shut: x.shut.map((s) => s.port) })) })),
    null,
    2,
  ) + '\n',
);
