// Preflight probe benchmark: how long the active loop probe takes, and how many frames it sends,
// on a host with N watched bridge ports (host-only lab: br0 with ports p0..pN-1, their veth peers
// q0..qN-1 unbridged in the same namespace, so every probe comes back once, on its own peer).
//   node dist/scripts/bench-preflight.js [--ports 8,64] [--runs 7] [--prefix sbb-pf-]
// Prints one line per port count (medians over --runs, in-process, excluding Node start-up) and a
// JSON summary. The probe itself runs inside the lab namespace (`ip netns exec`), as on a host.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadPolicyFile } from '../agent/policy/load.js';
import { runProbe } from '../agent/preflight/probe.js';
import { buildHostOnly, teardownLab } from './lab/topology.js';

const { values } = parseArgs({
  options: {
    ports: { type: 'string', default: '8,64' },
    runs: { type: 'string', default: '7' },
    prefix: { type: 'string', default: 'sbb-pf-' },
    inner: { type: 'boolean', default: false },
    policy: { type: 'string' },
  },
});

function fail(msg: string): never {
  process.stderr.write(`bench-preflight: ${msg}\n`);
  process.exit(2);
}

const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) fail(`--runs ${JSON.stringify(values.runs)} must be 1..50`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface RunStats {
  totalMs: number;
  nftInstallMs: number;
  sendMs: number;
  collectMs: number;
  nftRemoveMs: number;
  framesSent: number;
  framesSeen: number;
  findings: number;
}

/** Inside the namespace: run the probe `runs` times, print one JSON line of per-run stats. */
async function inner(): Promise<void> {
  if (!values.policy) fail('--inner needs --policy');
  const r = await loadPolicyFile(values.policy);
  if ('errors' in r) fail(`bad policy ${values.policy}`);
  const out: RunStats[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const p = await runProbe({ policy: r.policy });
    const s = p.report.stats?.['probe'] as Record<string, number>;
    out.push({
      totalMs: performance.now() - t0,
      nftInstallMs: s['nftInstallMs'] ?? NaN,
      sendMs: s['sendMs'] ?? NaN,
      collectMs: s['collectMs'] ?? NaN,
      nftRemoveMs: s['nftRemoveMs'] ?? NaN,
      framesSent: s['framesSent'] ?? 0,
      framesSeen: s['framesSeen'] ?? 0,
      findings: p.report.findings.length,
    });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

async function outer(): Promise<void> {
  const counts = values.ports!.split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) fail(`--ports ${values.ports} must be integers 1..1000`);
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-preflight-'));
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'version: 1\nports:\n  - match: "p*"\n    role: vm\n');
  const self = fileURLToPath(import.meta.url);
  const summary: Record<string, unknown> = {};
  try {
    for (const n of counts) {
      const lab = await buildHostOnly(values.prefix!, n);
      try {
        const text = execFileSync('ip', ['netns', 'exec', lab.ns.host, process.execPath, self, '--inner', '--policy', policy, '--runs', String(runs)], {
          encoding: 'utf8',
          timeout: 120_000,
        });
        const rs = JSON.parse(text.trim().split('\n').pop()!) as RunStats[];
        const m = (k: keyof RunStats) => Math.round(median(rs.map((x) => x[k])) * 10) / 10;
        const row = {
          ports: n,
          runs,
          framesSent: m('framesSent'),
          framesSeen: m('framesSeen'),
          medianTotalMs: m('totalMs'),
          minTotalMs: Math.round(Math.min(...rs.map((x) => x.totalMs)) * 10) / 10,
          maxTotalMs: Math.round(Math.max(...rs.map((x) => x.totalMs)) * 10) / 10,
          nftInstallMs: m('nftInstallMs'),
          sendMs: m('sendMs'),
          collectMs: m('collectMs'),
          nftRemoveMs: m('nftRemoveMs'),
        };
        summary[String(n)] = row;
        process.stdout.write(
          `ports ${n}: probe median ${row.medianTotalMs} ms (min ${row.minTotalMs}, max ${row.maxTotalMs}, ${runs} runs); ` +
            `frames sent ${row.framesSent}, seen ${row.framesSeen}; nft install ${row.nftInstallMs} ms, send ${row.sendMs} ms, ` +
            `collect ${row.collectMs} ms, nft remove ${row.nftRemoveMs} ms\n`,
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

(values.inner ? inner() : outer()).catch((err: unknown) => {
  process.stderr.write(`bench-preflight: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
