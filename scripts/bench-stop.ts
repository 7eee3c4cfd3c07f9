// Stop benchmark: how long the real agent takes from SIGTERM to exit with N watched ports
// (host-only lab: br0 with ports p0..pN-1, peers in their own namespace). Every watched port
// holds two AF_PACKET sockets, and the kernel's packet_release() waits for an RCU grace period
// (synchronize_net) on each: closed one after another, N ports cost 2N grace periods.
//   node dist/scripts/bench-stop.js [--ports 512] [--runs 5] [--prefix sbb-stop-]
// Prints one line per port count (median, min, max over --runs agent starts) with the kernel's
// rcu_expedited setting, which decides how long a grace period is (expedited: microseconds;
// normal: milliseconds), and a JSON summary. Run it under the lab lock.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent } from './lab/agent.js';
import { buildHostOnly, teardownLab } from './lab/topology.js';

const { values } = parseArgs({
  options: {
    ports: { type: 'string', default: '512' },
    runs: { type: 'string', default: '5' },
    prefix: { type: 'string', default: 'sbb-stop-' },
  },
});

function fail(msg: string): never {
  process.stderr.write(`bench-stop: ${msg}\n`);
  process.exit(2);
}

const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) fail(`--runs ${JSON.stringify(values.runs)} must be 1..50`);
const counts = values.ports!.split(',').map(Number);
if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) fail(`--ports ${values.ports} must be integers 1..1000`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;

function rcuExpedited(): string {
  try {
    return readFileSync('/sys/kernel/rcu_expedited', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** One agent start on the lab, then SIGTERM: ms from the signal to the process's exit. */
async function oneStop(host: string, policy: string, n: number): Promise<{ stopMs: number; code: number | null }> {
  const a = await startAgent(host, { policy, readyTimeoutMs: 60_000 + n * 50 });
  try {
    // Every port's counters must be open before the stop is timed.
    await a.waitFor((l) => l.msg === 'stormbreaker running' && l['ports'] === n, 1000);
    const exited = new Promise<number | null>((resolve) => a.child.once('close', (code) => resolve(code)));
    const guard = setTimeout(() => a.child.kill('SIGKILL'), 120_000);
    const t0 = performance.now();
    a.child.kill('SIGTERM');
    const code = await exited;
    const stopMs = performance.now() - t0;
    clearTimeout(guard);
    return { stopMs, code };
  } finally {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    rmSync(a.stateDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-stop-'));
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'version: 1\nports:\n  - match: "p*"\n    role: vm\n');
  const summary: Record<string, unknown> = { rcuExpedited: rcuExpedited() };
  try {
    for (const n of counts) {
      const lab = await buildHostOnly(values.prefix!, n, { peersNs: true });
      try {
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const r = await oneStop(lab.ns.host, policy, n);
          if (r.code !== 0) throw new Error(`agent exited ${r.code} on SIGTERM (run ${i + 1})`);
          times.push(r.stopMs);
        }
        const row = { ports: n, runs, medianMs: r1(median(times)), minMs: r1(Math.min(...times)), maxMs: r1(Math.max(...times)), allMs: times.map(r1) };
        summary[String(n)] = row;
        process.stdout.write(
          `ports ${n} (rcu_expedited ${summary['rcuExpedited'] as string}): SIGTERM to exit median ${row.medianMs} ms ` +
            `(min ${row.minMs}, max ${row.maxMs}, ${runs} runs)\n`,
        );
      } finally {
        await teardownLab(values.prefix!);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-stop: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
