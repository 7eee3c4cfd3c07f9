#!/usr/bin/env node
// Cost per frame, on the tripwire thread, of keeping the storm's evidence (native/tripwire_ring.h:
// a head ring frozen at a storm's onset plus a tail of the latest frames) against the single ring
// of the last 256 frames it replaced. Compiles native/bench_ring.c with the system's cc (-O2, as
// binding.gyp) into a temporary directory and runs it: synthetic frames, no sockets, no lab.
//
// Usage: node scripts/bench-ring.mjs [--frames N] [--runs R] [--cap BYTES]
// Prints one JSON line per variant (median, min, max ns per frame over R runs) and the ratios.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`bench-ring: ${name} wants a positive integer, got ${JSON.stringify(args[i + 1])}`);
    process.exit(2);
  }
  return v;
}
const frames = opt('--frames', 2_000_000);
const runs = opt('--runs', 7);
const cap = opt('--cap', 60);

const dir = mkdtempSync(join(tmpdir(), 'sb-bench-ring-'));
try {
  const bin = join(dir, 'bench_ring');
  execFileSync('cc', ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-I', join(ROOT, 'native'), '-o', bin, join(ROOT, 'native/bench_ring.c'), '-lpthread'], { timeout: 60_000, stdio: ['ignore', 'inherit', 'inherit'] });
  const out = execFileSync(bin, [String(frames), String(runs), String(cap)], { timeout: 300_000, encoding: 'utf8' });
  const rows = out.trim().split('\n').map((l) => JSON.parse(l));
  for (const r of rows) console.log(JSON.stringify(r));
  const base = rows[0].nsPerFrameMedian;
  const baseMin = rows[0].nsPerFrameMin;
  for (const r of rows.slice(1)) {
    console.log(`${r.variant}: median ${r.nsPerFrameMedian.toFixed(1)} ns/frame, ${(r.nsPerFrameMedian / base).toFixed(2)}x the old ring's ${base.toFixed(1)}; min ${r.nsPerFrameMin.toFixed(1)} vs ${baseMin.toFixed(1)} (${(r.nsPerFrameMin / baseMin).toFixed(2)}x)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
