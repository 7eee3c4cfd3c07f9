// Cost benchmark: what the running agent costs (CPU share of one core, resident memory, achieved
// sample rate) on a host with N bridge ports, at the default sampling, at the fastest supported
// sampling, at the default under light broadcast chatter (which wakes the tripwire), and at the
// default after one shut and restore (an agent at rest is one that has acted before, not only a
// fresh one: a wake from inside a tick once left it ticking twice per period from then on).
// Issue targets: <= 3% of one core and <= 100 MB RSS at 8 ports; <= 10% at 256 ports.
//   node dist/scripts/bench-cost.js [--ports 8,64,256] [--seconds 10] [--warmup 2] [--repeat 1]
//       [--scenarios default,fastest,chatter,chatter-fastest,after-trip,observed] [--chatter-pps 50] [--fdb on|off]
//       [--cpu-prof DIR] [--prefix sbc-] [--out out/bench-cost.json]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildHostOnly, teardownLab, type HostOnlyLab } from './lab/topology.js';
import { startAgent, type AgentHandle } from './lab/agent.js';
import { inject } from './lab/traffic.js';
import { fmt, percentile } from './lab/stats.js';
import { labDistEntry } from './lab/assets.js';
import { clockTicksPerSecond, cpuShare, cpuSnapshot, readCmdline, readHostCpu, readProcMem } from './lab/proc.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    ports: { type: 'string', default: '8,64,256' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '1' },
    scenarios: { type: 'string', default: 'default,fastest,chatter' },
    'chatter-pps': { type: 'string', default: '50' },
    fdb: { type: 'string', default: 'on' },
    'cpu-prof': { type: 'string' },
    prefix: { type: 'string', default: 'sbc-' },
    out: { type: 'string', default: resolve(root, 'out/bench-cost.json') },
  },
});

// --- options, validated up front with a message that names the bad one ---------------------------
function fail(msg: string): never {
  process.stderr.write(`bench-cost: ${msg}\n`);
  process.exit(2);
}
const num = (name: string, v: string | undefined, ok: (x: number) => boolean): number => {
  const x = Number(v);
  if (!ok(x)) fail(`--${name} ${JSON.stringify(v)} is out of range`);
  return x;
};
const portCounts = values.ports!.split(',').map((s) => num('ports', s, (x) => Number.isInteger(x) && x >= 1 && x <= 1000));
const seconds = num('seconds', values.seconds, (x) => x > 0 && x <= 600);
const warmupMs = num('warmup', values.warmup, (x) => x >= 0 && x <= 60) * 1000;
const repeat = num('repeat', values.repeat, (x) => Number.isInteger(x) && x >= 1 && x <= 20);
const chatterPps = num('chatter-pps', values['chatter-pps'], (x) => x > 0 && x <= 10_000);
if (values.fdb !== 'on' && values.fdb !== 'off') fail('--fdb must be on or off');
const prefix = values.prefix!;

/** A sampling setting plus optional background traffic. */
interface Scenario {
  id: string;
  sampling: { idleMs: number; activeMs: number } | null;
  chatter: boolean;
  /** Shut p1 and restore it through the control socket before the window (and the active hold) opens. */
  tripFirst?: boolean;
  /** The policy names p0 only: every other port is observed, not named (read, never acted on). */
  nameOneOnly?: boolean;
}
const SCENARIOS: Record<string, Scenario> = {
  // The product's defaults (agent/policy/defaults.ts): idle 10 ms, active 1 ms while warm.
  default: { id: 'default', sampling: null, chatter: false },
  // Node timers clamp below 1 ms, so 1 ms everywhere is the fastest setting that means anything.
  fastest: { id: 'fastest', sampling: { idleMs: 1, activeMs: 1 }, chatter: false },
  // Default sampling under legitimate broadcast chatter: every frame may wake the tripwire.
  chatter: { id: 'chatter', sampling: null, chatter: true },
  'chatter-fastest': { id: 'chatter-fastest', sampling: { idleMs: 1, activeMs: 1 }, chatter: true },
  'after-trip': { id: 'after-trip', sampling: null, chatter: false, tripFirst: true },
  observed: { id: 'observed', sampling: null, chatter: false, nameOneOnly: true },
};
const scenarios = values.scenarios!.split(',').map((s) => SCENARIOS[s] ?? fail(`unknown scenario ${JSON.stringify(s)} (have ${Object.keys(SCENARIOS).join(', ')})`));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pure: the policy file for a scenario. Every bridge port p0..pN-1 is watched as a VM port (observed: p0 only, the rest read as observed). */
function policyYaml(s: Scenario, fdbEnabled: boolean): string {
  const lines = ['version: 1'];
  if (s.sampling) lines.push('sampling:', `  idleMs: ${s.sampling.idleMs}`, `  activeMs: ${s.sampling.activeMs}`);
  if (!fdbEnabled) lines.push('fdb:', '  enabled: false');
  lines.push('ports:', `  - match: "${s.nameOneOnly ? 'p0' : 'p*'}"`, '    role: vm');
  return lines.join('\n') + '\n';
}

interface Health {
  ticks: number;
  maxLagMs: number;
  sources: string[];
}
interface Status {
  health: Health;
  ports: unknown[];
}

interface Result {
  ports: number;
  scenario: string;
  run: number;
  pid: number;
  watched: number;
  sources: string[];
  seconds: number;
  cpuPct: number;
  childrenCpuPct: number;
  /** cpuPct by thread name: the main thread (event loop, sampling) vs libuv pool, V8 helpers. */
  cpuByThread: Record<string, number>;
  rssMb: number;
  peakRssMb: number;
  ticksPerSec: number;
  /** health.maxLagMs is a maximum since the agent started: as seen at the window's start and end. */
  maxLagMsAtStart: number;
  maxLagMs: number;
  hostBusyPct: number;
  chatterSent: number;
  /** Log lines at warn or above during the run, and trips (there should be none). */
  warnings: string[];
  trips: number;
}

/**
 * Background broadcast chatter from the host namespace: q0 is p0's veth peer, so every frame
 * enters the bridge through p0 and floods to the other ports. send.py runs at most 10 s, so a
 * longer window is covered in slices.
 */
function startChatter(lab: HostOnlyLab, totalMs: number): { done: Promise<number> } {
  const end = Date.now() + totalMs;
  const done = (async () => {
    let sent = 0;
    for (let left = end - Date.now(); left > 100; left = end - Date.now()) {
      const r = await inject(lab, 'vms', 'q0', { kind: 'broadcast', pps: chatterPps, duration: Math.min(10, left / 1000), payloadTag: 'sbc-chatter' });
      sent += r.sent;
    }
    return sent;
  })();
  return { done };
}

function agentPid(agent: AgentHandle): number {
  const pid = agent.child.pid;
  if (pid === undefined) throw new Error('agent has no pid');
  // `ip netns exec` execs node in place (no fork), so the spawned pid is the agent itself.
  const argv = readCmdline(pid);
  if (!argv.some((a) => a.endsWith('/cli.js')) || !argv.includes('run')) {
    throw new Error(`pid ${pid} is not the agent: ${argv.join(' ')}`);
  }
  return pid;
}

/** An operator shut and restore of one port, each awaited in the log; then past the active hold (2 s). */
async function tripAndRestore(agent: AgentHandle, port: string): Promise<void> {
  const seen = agent.logs.length;
  await agent.ask('trip', { port, reason: 'bench-cost after-trip' });
  await agent.waitFor((l) => l.msg === 'trip' && l.port === port && agent.logs.indexOf(l) >= seen, 5000);
  await agent.ask('restore', { port, reason: 'bench-cost after-trip' });
  await agent.waitFor((l) => l.msg === 'restore' && l.port === port && agent.logs.indexOf(l) >= seen, 5000);
  await sleep(2500);
}

async function measure(lab: HostOnlyLab, n: number, s: Scenario, run: number, hz: number, work: string): Promise<Result> {
  const policy = join(work, `${s.id}-${n}-${run}.yaml`);
  writeFileSync(policy, policyYaml(s, values.fdb === 'on'));
  const stateDir = mkdtempSync(join(work, 'state-'));
  // NODE_OPTIONS refuses --cpu-prof, so the agent runs under node-flags.js instead; the profile
  // is written when the agent exits cleanly (SIGTERM).
  const wrap = values['cpu-prof']
    ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`, `--cpu-prof-name=agent-${n}-${s.id}-${run}.cpuprofile`, labDistEntry('node-flags.js')]
    : [];
  const agent = await startAgent(lab.ns.host, { policy, stateDir, wrap });
  current = agent;
  let chatter: { done: Promise<number> } | null = null;
  try {
    const pid = agentPid(agent);
    await sleep(warmupMs);
    if (s.tripFirst) await tripAndRestore(agent, 'p1');
    if (s.chatter) {
      chatter = startChatter(lab, 300 + seconds * 1000 + 200);
      await sleep(300); // python is up and sending before the window opens
    }
    const h0 = readHostCpu();
    const c0 = cpuSnapshot(pid);
    const st0 = (await agent.ask('status')) as Status;
    await sleep(seconds * 1000);
    const c1 = cpuSnapshot(pid);
    const st1 = (await agent.ask('status')) as Status;
    const h1 = readHostCpu();
    const mem = readProcMem(pid);
    const cpu = cpuShare(c0, c1, hz);
    const sent = chatter ? await chatter.done : 0;
    return {
      ports: n,
      scenario: s.id,
      run,
      pid,
      watched: st1.ports.length,
      sources: st1.health.sources,
      seconds: cpu.seconds,
      cpuPct: cpu.selfPct,
      childrenCpuPct: cpu.childrenPct,
      cpuByThread: cpu.byThread,
      rssMb: mem.rssKb / 1024,
      peakRssMb: mem.hwmKb / 1024,
      ticksPerSec: (st1.health.ticks - st0.health.ticks) / cpu.seconds,
      maxLagMsAtStart: st0.health.maxLagMs,
      maxLagMs: st1.health.maxLagMs,
      hostBusyPct: ((h1.busy - h0.busy) / (h1.total - h0.total)) * 100,
      chatterSent: sent,
      warnings: agent.logs.filter((l) => Number(l.level) >= 40).map((l) => `${String(l.msg)}${l.err ? `: ${String(l.err)}` : ''}`),
      trips: agent.logs.filter((l) => l.msg === 'trip' || l.msg === 'would-trip').length,
    };
  } finally {
    await chatter?.done.catch(() => 0);
    // A profiled agent writes its profile on exit, which can take longer than stop()'s 3 s grace.
    if (values['cpu-prof']) await stopSlowly(agent, 30_000);
    await agent.stop();
    current = null;
  }
}

async function stopSlowly(agent: AgentHandle, graceMs: number): Promise<void> {
  const c = agent.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('close', () => r()));
  c.kill('SIGTERM');
  await Promise.race([exited, sleep(graceMs)]);
}

function report(results: Result[]): string {
  const lines = ['ports  setting          run  CPU % one core (agent / +children)  RSS MB (final / peak)  ticks/s  max lag ms (at start / end)  host busy %  watched'];
  for (const r of results) {
    lines.push(
      `${String(r.ports).padStart(5)}  ${r.scenario.padEnd(15)} ${String(r.run).padStart(4)}  ${fmt(r.cpuPct, 2).padStart(12)} / ${fmt(r.cpuPct + r.childrenCpuPct, 2).padStart(6)}              ${fmt(r.rssMb, 1).padStart(6)} / ${fmt(r.peakRssMb, 1).padStart(6)}      ${fmt(r.ticksPerSec, 0).padStart(6)}  ${fmt(r.maxLagMsAtStart, 1).padStart(12)} / ${fmt(r.maxLagMs, 1).padStart(6)}     ${fmt(r.hostBusyPct, 0).padStart(11)}  ${String(r.watched).padStart(7)}`,
    );
  }
  // Repeats: medians per (ports, setting), since a 2-core machine shared with other work is noisy.
  const groups = new Map<string, Result[]>();
  for (const r of results) groups.set(`${r.ports} ${r.scenario}`, [...(groups.get(`${r.ports} ${r.scenario}`) ?? []), r]);
  if ([...groups.values()].some((g) => g.length > 1)) {
    lines.push('', 'medians  ports  setting          runs  CPU % (min..max)        RSS MB final / peak  ticks/s  max lag ms');
    for (const g of groups.values()) {
      const m = (f: (r: Result) => number) => percentile(g.map(f), 50);
      const cpu = g.map((r) => r.cpuPct + r.childrenCpuPct);
      lines.push(
        `         ${String(g[0]!.ports).padStart(5)}  ${g[0]!.scenario.padEnd(15)} ${String(g.length).padStart(5)}  ${fmt(percentile(cpu, 50), 2).padStart(6)} (${fmt(Math.min(...cpu), 2)}..${fmt(Math.max(...cpu), 2)})`.padEnd(65) +
          `${fmt(m((r) => r.rssMb), 1).padStart(6)} / ${fmt(m((r) => r.peakRssMb), 1).padStart(6)}  ${fmt(m((r) => r.ticksPerSec), 0).padStart(7)}  ${fmt(m((r) => r.maxLagMs), 1).padStart(10)}`,
      );
    }
  }
  return lines.join('\n');
}

// The agent being measured, so that a signal can stop it before this process exits: an agent
// whose stdout reader is gone was seen to hang on exit (pino's final flush retries EPIPE forever).
let current: AgentHandle | null = null;
let work = '';
const onSignal = () => {
  void (async () => {
    await current?.stop().catch(() => null);
    await teardownLab(prefix).catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  })().finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const hz = await clockTicksPerSecond();
work = mkdtempSync(join(tmpdir(), `${prefix}cost-`));
const results: Result[] = [];
try {
  for (const n of portCounts) {
    const lab = await buildHostOnly(prefix, n, { peersNs: true });
    try {
      for (let run = 1; run <= repeat; run++) {
        for (const s of scenarios) {
          const r = await measure(lab, n, s, run, hz, work);
          results.push(r);
          const threads = Object.entries(r.cpuByThread).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ');
          process.stderr.write(`${n} ports ${s.id} #${run}: ${fmt(r.cpuPct, 2)}% [${threads}] (+${fmt(r.childrenCpuPct, 2)}% children), ${fmt(r.rssMb, 1)}/${fmt(r.peakRssMb, 1)} MB, ${fmt(r.ticksPerSec, 0)} ticks/s, lag ${fmt(r.maxLagMs, 1)} ms, host ${fmt(r.hostBusyPct, 0)}% busy${r.chatterSent ? `, chatter ${r.chatterSent} frames` : ''}${r.warnings.length ? `, warnings: ${r.warnings.slice(0, 3).join(' | ')}` : ''}\n`);
        }
      }
    } finally {
      await teardownLab(prefix);
    }
  }
} finally {
  await teardownLab(prefix);
  rmSync(work, { recursive: true, force: true });
}
process.stdout.write(report(results) + '\n');
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(
  values.out!,
  JSON.stringify({ node: process.version, kernel: release(), clkTck: hz, seconds, warmupMs, fdb: values.fdb, chatterPps, date: new Date().toISOString(), results }, null, 2) + '\n',
);
