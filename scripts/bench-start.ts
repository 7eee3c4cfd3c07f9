// How long the real agent takes to start, and where that time goes: in a kvm lab, the agent is
// started --runs times (as the lab tests start it: `ip netns exec HOST node dist/agent/cli.js run`)
// and each of its log lines is stamped when it reaches this process; each run is stopped with
// SIGTERM before the next.
//   node dist/scripts/bench-start.js [--runs 10] [--policy policies/lab-bench.yaml] [--prefix sbb-st-]
// Prints the median ms from spawn to the first log line (Node start and module loading, and the
// policy), to 'first-storm paths warmed' (with the warm-up's own ms) and to 'stormbreaker
// running' (what startAgent waits for) with the agent's CPU time (user + system) to it, and
// the SIGTERM stop; then every log line up to the running one at its median time.
// --cpu-prof DIR: each agent writes a V8 CPU profile there.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startAgent } from './lab/agent.js';
import { buildLab, teardownLab } from './lab/topology.js';
import { assertPrefix } from './lab/names.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    policy: { type: 'string', default: resolve(root, 'policies/lab-bench.yaml') },
    prefix: { type: 'string', default: 'sbb-st-' },
    'cpu-prof': { type: 'string' },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
  process.stderr.write(`bench-start: --runs ${JSON.stringify(values.runs)} must be 1..100\n`);
  process.exit(2);
}
const prefix = assertPrefix(values.prefix!);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const range = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;

/** utime + stime of a process, ms (`ip netns exec` execs node in place: the pid is the agent's). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const lab = await buildLab('kvm', prefix);
const lines = new Map<string, number[]>();
const rows = { first: [] as number[], warmed: [] as number[], warmMs: [] as number[], running: [] as number[], cpuMs: [] as number[], stop: [] as number[] };
try {
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const a = await startAgent(lab.ns.host, { policy: values.policy!, ...(values['cpu-prof'] ? { wrap: ['sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir='${values['cpu-prof']}' "$@"`] } : {}) });
    const running = performance.now() - t0;
    // CPU time the agent used to get there (user + system): what a loaded machine cannot hide.
    rows.cpuMs.push(cpuMsOf(a.child.pid!));
    const warmed = a.logs.find((l) => l.msg === 'first-storm paths warmed');
    rows.running.push(running);
    rows.warmMs.push(Number(warmed?.ms ?? NaN));
    const firstAt = Date.parse(String(a.logs[0]?.time));
    const warmedAt = Date.parse(String(warmed?.time));
    const runningAt = Date.parse(String(a.logs.find((l) => l.msg === 'stormbreaker running')?.time));
    // Log times are the agent's wall clock (ms): place them on this run by the running line.
    rows.first.push(running - (runningAt - firstAt));
    rows.warmed.push(running - (runningAt - warmedAt));
    // Every line up to the running one, at its time from spawn (the first of each message).
    for (const l of a.logs.slice(0, a.logs.findIndex((x) => x.msg === 'stormbreaker running') + 1)) {
      const key = String(l.msg);
      if (!lines.has(key)) lines.set(key, []);
      lines.get(key)!.push(running - (runningAt - Date.parse(String(l.time))));
    }
    const s0 = performance.now();
    await a.stop('SIGTERM');
    rows.stop.push(performance.now() - s0);
  }
} finally {
  await teardownLab(prefix);
}
console.log(`agent start, ${runs} runs, median (min-max) ms from spawn: first log line ${range(rows.first)}; warm-up done ${range(rows.warmed)} (warm-up itself ${range(rows.warmMs)}); running ${range(rows.running)} (agent CPU time to running ${range(rows.cpuMs)}); SIGTERM stop ${range(rows.stop)}`);
for (const [msg, at] of lines) console.log(`  ${range(at).padEnd(16)} ${msg} (${at.length} runs)`);
console.log(JSON.stringify({ runs, ...Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { median: median(v), min: Math.min(...v), max: Math.max(...v) }])) }));
