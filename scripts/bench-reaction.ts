// Reaction benchmark: >= 20 real loop storms per shape broken by the agent, and the same storm
// under a 1-second storm-control baseline, in one run. Prints percentiles and ratios.
//   node dist/scripts/bench-reaction.js [--storms 20] [--baseline 5] [--shapes kvm,esx] [--out out/bench-reaction.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLab, teardownLab, type Shape } from './lab/topology.js';
import { startAgent, type AgentHandle } from './lab/agent.js';
import { resetPorts, stormWithAgent, stormWithStormControl, type StormRun } from './lab/scenario.js';
import { summary, fmt, percentile } from './lab/stats.js';
import { run, ns } from './lab/exec.js';
import { inject } from './lab/traffic.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    storms: { type: 'string', default: '20' },
    baseline: { type: 'string', default: '5' },
    shapes: { type: 'string', default: 'kvm,esx' },
    prefix: { type: 'string', default: 'sb-bench-' },
    policy: { type: 'string', default: resolve(root, 'policies/lab-bench.yaml') },
    out: { type: 'string', default: resolve(root, 'out/bench-reaction.json') },
    // Background broadcast chatter (ARP-like) reaching the host on an unbridged port, so it
    // wakes the agent's tripwire all the time without ever entering the loop.
    'chatter-pps': { type: 'string', default: '0' },
  },
});
const chatterPps = Number(values['chatter-pps']);
const storms = Number(values.storms);
const baselineRuns = Number(values.baseline);
const prefix = values.prefix!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ShapeResult {
  shape: Shape;
  agent: StormRun[];
  baseline: StormRun[];
}

const fromInject = (r: StormRun) => (r.stats.quietAtNs === null ? NaN : (r.stats.quietAtNs - r.tInjectNs) / 1e6);
const leaked = (r: StormRun) => r.stats.framesLeaked ?? NaN;
/** Injection to the agent's verdict (the evidence's monotonic time): the detection share of the reaction. */
const detectMs = (r: StormRun) => {
  const t = r.trips.find((x) => x.msg === 'trip') as { evidence?: { tNs?: number } } | undefined;
  return t?.evidence?.tNs ? (t.evidence.tNs - r.tInjectNs) / 1e6 : NaN;
};

async function benchShape(shape: Shape): Promise<ShapeResult> {
  const lab = await buildLab(shape, prefix);
  const res: ShapeResult = { shape, agent: [], baseline: [] };
  let agent: AgentHandle | null = null;
  try {
    agent = await startAgent(lab.ns.host, { policy: values.policy! });
    if (chatterPps > 0) {
      await run(ns(lab.ns.host, ['ip', 'link', 'add', 'chat0', 'type', 'veth', 'peer', 'name', 'chat1']));
      await run(ns(lab.ns.host, ['ip', 'link', 'set', 'chat0', 'up']));
      await run(ns(lab.ns.host, ['ip', 'link', 'set', 'chat1', 'up']));
    }
    await sleep(300);
    for (let i = 0; i < storms; i++) {
      const chatter = chatterPps > 0 ? inject(lab, lab.ns.host, 'chat1', { pps: chatterPps, duration: 1.2, kind: 'broadcast' }) : null;
      if (chatter) await sleep(300 + Math.random() * 200);
      const r = await stormWithAgent(lab, agent, 300);
      await chatter;
      res.agent.push(r);
      process.stderr.write(`${shape} agent ${i + 1}/${storms}: ${fmt(fromInject(r), 2)} ms (verdict at ${fmt(detectMs(r), 2)} ms), ${leaked(r)} frames, down ${r.downPorts.join(',')}\n`);
      if (r.trips.length === 0) {
        const why = agent.logs.filter((l) => (l.level as number) >= 40).map((l) => `${String(l.msg)} ${String(l.reason ?? l.err ?? '')}`);
        process.stderr.write(`  no trip: the loop was opened by hand; agent said: ${why.slice(-3).join(' | ') || 'nothing'}\n`);
      }
      // Restore through the operator path, as a human would.
      agent.logs.length = 0; // keep memory flat and waitFor honest across runs
      for (const t of r.trips.filter((x) => x.msg === 'trip')) {
        const port = String(t.port);
        await agent.ask('restore', { port, reason: 'bench: next storm' });
        await agent.waitFor((l) => l.msg === 'restore' && l.port === port, 5000);
      }
      await resetPorts(lab);
      await sleep(150);
    }
  } finally {
    await agent?.stop();
  }
  try {
    await resetPorts(lab);
    for (let i = 0; i < baselineRuns; i++) {
      const r = await stormWithStormControl(lab);
      res.baseline.push(r);
      process.stderr.write(`${shape} storm-control ${i + 1}/${baselineRuns}: ${fmt(fromInject(r), 0)} ms, ${leaked(r)} frames, shut ${r.shut.map((s) => s.port).join(',')}\n`);
      await resetPorts(lab);
      await sleep(100);
    }
  } finally {
    await teardownLab(prefix);
  }
  return res;
}

function report(results: ShapeResult[]): string {
  const lines: string[] = [];
  lines.push('shape  who            runs  ms to quiet from injection (p50 / p95 / p99 / max)   frames leaked at prod (p50 / p99 / max)   ports shut per storm');
  for (const r of results) {
    for (const [who, runs] of [['stormbreaker', r.agent], ['storm-control', r.baseline]] as const) {
      const t = summary(runs.map(fromInject));
      const f = summary(runs.map(leaked));
      const shut = runs.map((x) => (who === 'stormbreaker' ? x.downPorts.length : x.shut.length));
      lines.push(`${r.shape.padEnd(6)} ${who.padEnd(14)} ${String(runs.length).padStart(4)}  ${fmt(t.p50, 2).padStart(8)} / ${fmt(t.p95, 2).padStart(8)} / ${fmt(t.p99, 2).padStart(8)} / ${fmt(t.max, 2).padStart(8)}            ${fmt(f.p50, 0).padStart(8)} / ${fmt(f.p99, 0).padStart(8)} / ${fmt(f.max, 0).padStart(8)}       ${[...new Set(shut)].sort().join(',')}`);
    }
    const ratio = percentile(r.agent.map(leaked), 50) / percentile(r.baseline.map(leaked), 50);
    const speed = percentile(r.baseline.map(fromInject), 50) / percentile(r.agent.map(fromInject), 50);
    lines.push(`${r.shape.padEnd(6)} ratio: stormbreaker leaks ${(ratio * 100).toFixed(2)}% of the baseline's frames (medians); quiet ${speed.toFixed(0)}x sooner`);
  }
  return lines.join('\n');
}

const shapes = values.shapes!.split(',') as Shape[];
const onSignal = () => {
  void teardownLab(prefix).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
const results: ShapeResult[] = [];
if (chatterPps > 0) process.stderr.write(`with ${chatterPps} pps of broadcast chatter on an unbridged host port\n`);
try {
  for (const s of shapes) results.push(await benchShape(s));
} finally {
  await teardownLab(prefix);
}
const text = report(results);
process.stdout.write(text + '\n');
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(
  values.out!,
  JSON.stringify(
    results.map((r) => ({
      shape: r.shape,
      agent: r.agent.map((x) => ({ msFromInjection: fromInject(x), msToVerdict: detectMs(x), msFromFirstFrame: x.stats.msToQuiet, framesLeaked: leaked(x), down: x.downPorts, trips: x.trips.map((t) => ({ event: t.msg, port: t.port, reason: t.reason })) })),
      baseline: r.baseline.map((x) => ({ msFromInjection: fromInject(x), framesLeaked: leaked(x), shut: x.shut.map((s) => s.port) })),
    })),
    null,
    2,
  ) + '\n',
);
