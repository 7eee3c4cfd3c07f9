// What the start-up warm-up (agent/daemon/warmup.ts) saves a first storm: in fresh processes,
// the first breaker step that trips a loop, and the first rtnetlink call of the bridge-state
// setter, each timed cold (nothing ran before it) and after the warm-up. No lab, no storm:
// the setter's call names an ifindex no link has (ENODEV), so nothing on the machine changes.
//   node dist/scripts/bench-warmup.js [--runs 10] [--policy policies/lab-bench.yaml]
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadPolicy } from '../agent/policy/load.js';
import { resolvePort } from '../agent/policy/match.js';
import { warmPorts, warmUpDetector } from '../agent/detect/warmup.js';
import { warmUpBreaker } from '../agent/breaker/warmup.js';
import { breakerStep, initialBreakerState } from '../agent/breaker/state.js';
import { nativeBridgeState, probeBridgeState } from '../agent/host/bridge-port.js';
import type { Verdict } from '../agent/types.js';
import { summary, fmt } from './lab/stats.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    policy: { type: 'string', default: resolve(root, 'policies/lab-bench.yaml') },
    child: { type: 'string' },
  },
});
const us = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e3;

async function child(mode: string): Promise<void> {
  const loaded = await loadPolicy(values.policy!);
  if (!('policy' in loaded)) throw new Error(`${values.policy}: ${JSON.stringify(loaded.errors)}`);
  const policy = loaded.policy;
  const pp = resolvePort(policy, 'up1');
  if (!pp) throw new Error('the policy resolves no port up1');
  // A real loop verdict from the detector (warmed in both modes: only the breaker's state differs).
  let loop: { vs: readonly Verdict[]; tNs: number } | null = null;
  warmUpDetector(policy, pp, 3000, (vs, tNs) => void (loop ??= vs.some((v) => v.kind === 'loop') ? { vs, tNs } : null));
  if (!loop) throw new Error('the detector warm-up gave no loop verdict');
  const setter = nativeBridgeState();
  if (mode === 'warm') {
    warmUpBreaker(policy, pp);
    probeBridgeState(setter);
  }
  const { vs, tNs } = loop as { vs: readonly Verdict[]; tNs: number };
  const t0 = process.hrtime.bigint();
  const step = breakerStep(initialBreakerState(), { tNs, wallMs: Date.now(), verdicts: vs, results: [], operator: [] }, warmPorts(pp), policy);
  const stepUs = us(t0);
  if (!step.commands.some((c) => c.kind === 'link-down')) throw new Error('the breaker step tripped nothing');
  const t1 = process.hrtime.bigint();
  const errno = probeBridgeState(setter);
  const setterUs = setter ? us(t1) : NaN;
  process.stdout.write(JSON.stringify({ stepUs, setterUs, errno }) + '\n');
}

function parent(): void {
  const runs = Number(values.runs);
  const got: Record<'cold' | 'warm', Array<{ stepUs: number; setterUs: number }>> = { cold: [], warm: [] };
  for (let i = 0; i < runs; i++) {
    for (const mode of ['cold', 'warm'] as const) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, '--policy', values.policy!], { encoding: 'utf8', timeout: 30_000 });
      got[mode].push(JSON.parse(out.trim().split('\n').pop()!));
    }
  }
  const line = (what: string, k: 'stepUs' | 'setterUs'): string => {
    const c = summary(got.cold.map((r) => r[k]));
    const w = summary(got.warm.map((r) => r[k]));
    return `${what.padEnd(36)} ${fmt(c.p50, 0).padStart(8)} / ${fmt(c.max, 0).padStart(8)}   ${fmt(w.p50, 0).padStart(8)} / ${fmt(w.max, 0).padStart(8)}   ${fmt(c.p50 / w.p50, 1)}x`;
  };
  process.stdout.write(`${runs} fresh processes each; microseconds, p50 / max\n${'first call'.padEnd(36)} ${'cold'.padStart(19)}   ${'after the warm-up'.padStart(19)}   cold / warm (p50)\n`);
  process.stdout.write(line('breaker step that trips a loop', 'stepUs') + '\n');
  process.stdout.write(line('bridge-state setter (rtnetlink)', 'setterUs') + '\n');
}

if (values.child) await child(values.child);
else parent();
