// The on-host fuse (issue 12) against the stand-in ESXi host: frame -> cut -> quiet, samples/s,
// and what the agent's end costs, per lab variant (A: management out of band, B: in band,
// C: in band with the uplinks shaped so the loop fills them). The agent's part is played by
// agent/esxi/fuse/client.ts, the same module the agent uses: it sends the program and the plan
// over ssh and reads the stream; the fuse on the host decides and cuts by itself.
//   node dist/scripts/bench-esxi-fuse.js [--variants A,B,C] [--storms 10] [--sample-ms 10]
//       [--uplink-rate 4mbit] [--cost-seconds 10] [--prefix sbg-] [--out out/bench-esxi-fuse.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildEsxiLab, closeLoop, openLoop, standinArgv, teardownEsxiLab, type EsxiLab } from './lab/esxi/lab.js';
import { readInventory } from './lab/esxi/inventory.js';
import { labFuseArgv, labFusePlan } from './lab/esxi/fuse.js';
import { inject } from './lab/traffic.js';
import { startObserver } from './lab/observer.js';
import { stormStats } from './lab/analyze.js';
import { run } from './lab/exec.js';
import { fmt, summary } from './lab/stats.js';
import { clockTicksPerSecond, readProcStat } from './lab/proc.js';
import { loadProgram } from '../agent/esxi/fuse/program.js';
import { startFuse, type FuseClient } from '../agent/esxi/fuse/client.js';
import type { FuseCut } from '../agent/esxi/fuse/lines.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    variants: { type: 'string', default: 'A,B,C' },
    storms: { type: 'string', default: '10' },
    'sample-ms': { type: 'string', default: '10' },
    'uplink-rate': { type: 'string', default: '4mbit' },
    'cost-seconds': { type: 'string', default: '10' },
    // Every storm is bounded: the loop is opened by hand this long after the injection.
    'guard-ms': { type: 'string', default: '2500' },
    // The first storm of each variant comes after the armed fuse idled this long (cold).
    'cold-idle-s': { type: 'string', default: '30' },
    prefix: { type: 'string', default: 'sbg-' },
    out: { type: 'string', default: resolve(root, 'out/bench-esxi-fuse.json') },
  },
});
const fail = (msg: string): never => {
  process.stderr.write(`bench-esxi-fuse: ${msg}\n`);
  process.exit(2);
};
const num = (name: string, v: string | undefined, ok: (x: number) => boolean): number => {
  const x = Number(v);
  return ok(x) ? x : fail(`--${name} ${JSON.stringify(v)} is out of range`);
};
const storms = num('storms', values.storms, (x) => Number.isInteger(x) && x >= 1 && x <= 100);
const sampleMs = num('sample-ms', values['sample-ms'], (x) => x >= 5 && x <= 100);
const costSeconds = num('cost-seconds', values['cost-seconds'], (x) => x >= 0 && x <= 120);
const coldIdleMs = num('cold-idle-s', values['cold-idle-s'], (x) => x >= 0 && x <= 120) * 1000;
const guardMs = num('guard-ms', values['guard-ms'], (x) => x >= 500 && x <= 3000);
const variants = values.variants!.split(',').map((v) => (['A', 'B', 'C'].includes(v) ? (v as 'A' | 'B' | 'C') : fail(`--variants: ${v} is not A, B or C`)));
const prefix = values.prefix!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hrNs = (): number => Number(process.hrtime.bigint());
const program = loadProgram();

interface Storm {
  variant: string;
  n: number;
  /** Injected frame -> the fuse's cut decision (host monotonic clock = this machine's). */
  msToCut: number;
  /** The cut's own time (one vim-cmd spawn on the host). */
  cutMs: number;
  msToQuiet: number;
  framesLeaked: number;
  cutPort: string;
  /** The cut event reached this side (over the very network that storms). */
  heardMs: number;
  samplesPerSecInStorm: number;
  guardFired: boolean;
}

interface Armed {
  client: FuseClient;
  cuts: FuseCut[];
  heardNs: number[];
}

async function arm(lab: EsxiLab): Promise<Armed> {
  const plan = await labFusePlan(lab, { sampleMs });
  const cuts: FuseCut[] = [];
  const heardNs: number[] = [];
  let armed = false;
  const client = startFuse({ argv: labFuseArgv(lab, program), program, plan }, {
    onSample: () => undefined,
    onCut: (c) => {
      cuts.push(c);
      heardNs.push(hrNs());
      client.ack([c.id]);
    },
    onState: (s, why) => {
      if (s === 'armed') armed = true;
      else process.stderr.write(`  fuse ${s}: ${why}\n`);
    },
  });
  const end = Date.now() + 15_000;
  while (!armed && Date.now() < end) await sleep(20);
  if (!armed) throw new Error('fuse did not arm within 15 s');
  return { client, cuts, heardNs };
}

/** Reconnect every vNIC the fuse cut, through the stand-in's own vim-cmd (run in the esx namespace). */
async function reconnectAll(lab: EsxiLab): Promise<void> {
  const inv = await readInventory(lab);
  for (const vm of inv.vms) {
    for (const nic of vm.nics) {
      if (!nic.connected) await run(standinArgv(lab, 'vim-cmd', ['vmsvc/device.connection', String(vm.vmid), String(nic.key), '1']));
    }
  }
}

async function storm(lab: EsxiLab, variant: string, n: number): Promise<Storm> {
  const a = await arm(lab);
  if (n === 1) await sleep(coldIdleMs);
  const obs = await startObserver(lab.ns.prod, ['eth0'], guardMs + 2500, { periodUs: 1000 });
  let guardFired = false;
  let t0 = NaN;
  let s0 = 0;
  let series;
  try {
    await closeLoop(lab);
    const guard = setTimeout(() => {
      guardFired = true;
      void openLoop(lab).catch(() => undefined);
    }, guardMs);
    s0 = a.client.samples();
    const sent = await inject({ prefix: lab.prefix, ns: { prod: lab.ns.prod } }, 'prod', 'eth0', { count: 1, kind: 'broadcast' });
    t0 = sent.tFirstNs;
    const end = Date.now() + guardMs;
    while (!a.cuts.some((c) => c.outcome === 'cut' || c.outcome === 'failed') && Date.now() < end) await sleep(10);
    await sleep(300);
    clearTimeout(guard);
  } finally {
    await openLoop(lab);
    series = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  const samplesPerSec = (a.client.samples() - s0) / ((hrNs() - t0) / 1e9);
  await a.client.stop();
  const cut = a.cuts.find((c) => c.outcome === 'cut');
  await reconnectAll(lab);
  await sleep(300);
  const st = stormStats(series, t0);
  return {
    variant,
    n,
    msToCut: cut ? (cut.tUs * 1000 - t0) / 1e6 : NaN,
    cutMs: cut?.ms ?? NaN,
    msToQuiet: st.quietAtNs === null || !cut ? NaN : (st.quietAtNs - t0) / 1e6,
    framesLeaked: st.framesLeaked ?? NaN,
    cutPort: cut?.port ?? '',
    heardMs: cut ? (a.heardNs[a.cuts.indexOf(cut)]! - t0) / 1e6 : NaN,
    samplesPerSecInStorm: samplesPerSec,
    guardFired: guardFired && !cut,
  };
}

interface Cost {
  variant: string;
  seconds: number;
  /** This process (node: the client's parsing and timers) and its ssh child, % of one core. */
  nodePct: number;
  sshPct: number;
  samplesPerSec: number;
}

/** The agent's end at rest: this node process (which does nothing else meanwhile) and the ssh child. */
async function cost(lab: EsxiLab, variant: string, hz: number): Promise<Cost> {
  const a = await arm(lab);
  await sleep(1000);
  const pid = (a.client as FuseClient).pid();
  if (pid === undefined) throw new Error('no ssh pid');
  const tick = (p: number): number => {
    const s = readProcStat(p);
    return s.utime + s.stime;
  };
  const c0 = process.cpuUsage();
  const s0 = tick(pid);
  const n0 = a.client.samples();
  const t0 = hrNs();
  await sleep(costSeconds * 1000);
  const secs = (hrNs() - t0) / 1e9;
  const c1 = process.cpuUsage(c0);
  const out: Cost = {
    variant,
    seconds: secs,
    nodePct: ((c1.user + c1.system) / 1e6 / secs) * 100,
    sshPct: ((tick(pid) - s0) / hz / secs) * 100,
    samplesPerSec: (a.client.samples() - n0) / secs,
  };
  await a.client.stop();
  return out;
}

const LABEL: Record<string, string> = { A: 'A: mgmt out of band', B: 'B: mgmt in band', C: `C: in band, uplinks ${values['uplink-rate']}` };

function report(all: Storm[], costs: Cost[]): string[] {
  const s3 = (xs: number[], d = 0): string => {
    const s = summary(xs.filter(Number.isFinite));
    return `${fmt(s.p50, d)} / ${fmt(s.p99, d)} / ${fmt(s.max, d)}`.padEnd(22);
  };
  const lines = [
    `bench-esxi-fuse: the on-host fuse on the STAND-IN ESXi host (python fuse via ssh + stdin, vmware.vsi stand-in), sampleMs ${sampleMs}, hold 2, 2 hot ports.`,
    'ms from the injected frame (p50 / p99 / max); quiet = last frame at prod before 20 ms of silence.',
    'variant                       storms  cut decided            cut (vim-cmd) ms       quiet at prod          frames leaked          cut heard by agent     samples/s in storm  unbroken',
  ];
  for (const v of variants) {
    const rs = all.filter((r) => r.variant === v);
    lines.push(
      `${LABEL[v]!.padEnd(29)} ${String(rs.length).padStart(6)}  ${s3(rs.map((r) => r.msToCut))} ${s3(rs.map((r) => r.cutMs))} ${s3(rs.map((r) => r.msToQuiet))} ${s3(rs.map((r) => r.framesLeaked))} ${s3(rs.map((r) => r.heardMs))} ${fmt(summary(rs.map((r) => r.samplesPerSecInStorm)).p50, 1).padStart(18)}  ${String(rs.filter((r) => r.guardFired).length).padStart(8)}`,
    );
  }
  lines.push('', `cold: storm 1 of each variant, after the armed fuse idled ${coldIdleMs / 1000} s (cut decided / quiet at prod, ms)`);
  for (const v of variants) {
    const r = all.find((x) => x.variant === v && x.n === 1);
    if (r) lines.push(`${LABEL[v]!.padEnd(29)} ${fmt(r.msToCut, 0)} / ${fmt(r.msToQuiet, 0)}`);
  }
  lines.push('', `agent-side cost at rest (${costSeconds} s, % of one core): node (this process: client parsing + timers), ssh child; samples/s received`);
  for (const c of costs) lines.push(`${LABEL[c.variant]!.padEnd(29)} node ${fmt(c.nodePct, 2)}%  ssh ${fmt(c.sshPct, 2)}%  ${fmt(c.samplesPerSec, 1)} samples/s`);
  return lines;
}

let lab: EsxiLab | null = null;
const onSignal = () => {
  void (async () => {
    if (lab) await openLoop(lab).catch(() => undefined);
    await teardownEsxiLab(prefix).catch(() => undefined);
  })().finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const hz = await clockTicksPerSecond();
const results: Storm[] = [];
const costs: Cost[] = [];
try {
  for (const v of variants) {
    lab = await buildEsxiLab(prefix, { mgmt: v === 'A' ? 'oob' : 'inband', ...(v === 'C' ? { uplinkRate: values['uplink-rate']! } : {}) });
    if (costSeconds > 0) {
      const c = await cost(lab, v, hz);
      costs.push(c);
      process.stderr.write(`${LABEL[v]} cost: node ${fmt(c.nodePct, 2)}%, ssh ${fmt(c.sshPct, 2)}%, ${fmt(c.samplesPerSec, 1)} samples/s\n`);
    }
    for (let i = 1; i <= storms; i++) {
      const r = await storm(lab, v, i);
      results.push(r);
      process.stderr.write(`${LABEL[v]} storm ${i}: cut decided ${fmt(r.msToCut, 0)} ms, vim-cmd ${fmt(r.cutMs, 0)} ms, quiet ${fmt(r.msToQuiet, 0)} ms, ${fmt(r.framesLeaked, 0)} frames, ${r.cutPort || 'NOTHING CUT'}, heard ${fmt(r.heardMs, 0)} ms, ${fmt(r.samplesPerSecInStorm, 1)} samples/s\n`);
    }
    await teardownEsxiLab(prefix);
    lab = null;
  }
} finally {
  if (lab) await openLoop(lab).catch(() => undefined);
  await teardownEsxiLab(prefix);
}
process.stdout.write(report(results, costs).join('\n') + '\n');
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(values.out!, JSON.stringify({ node: process.version, kernel: release(), sampleMs, uplinkRate: values['uplink-rate'], guardMs, fuse: { version: program.version, sha256: program.sha256 }, date: new Date().toISOString(), storms: results, costs }, null, 2) + '\n');
