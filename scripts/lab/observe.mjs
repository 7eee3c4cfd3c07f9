#!/usr/bin/env node
// Watch rx_packets of interfaces inside a lab namespace at ~0.25 ms resolution.
//
//   ip netns exec NS node observe.mjs --ifaces eth0[,eth1...] --duration-ms N [--period-us 250]
//
// stdout: first `{"ready":true,"tNs":...}` once polling runs, then on exit (SIGTERM, SIGINT or
// duration end) one line {IFACE: {t: [ns...], c: [count...]}}. A point is kept only when the
// count changed (with the poll just before it, so a change is known to lie between two kept
// points), plus one per 10 ms, so a quiet minute costs little and a storm keeps every step.
// t is process.hrtime.bigint(), i.e. CLOCK_MONOTONIC, the same clock as send.py.
//
// Plain .mjs (not compiled) so that it starts fast and runs anywhere node does.
import { openSync, readSync, closeSync } from 'node:fs';
import { parseArgs } from 'node:util';

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
const MAX_DURATION_MS = 60_000;
const KEEPALIVE_NS = 10_000_000n;
// Poll synchronously for this long, then yield so that SIGTERM gets handled.
const CHUNK_NS = 5_000_000n;

function die(msg) {
  process.stderr.write(`observe.mjs: ${msg}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    ifaces: { type: 'string' },
    'duration-ms': { type: 'string', default: '5000' },
    'period-us': { type: 'string', default: '250' },
  },
});
const ifaces = (values.ifaces ?? '').split(',').filter((s) => s.length > 0);
if (ifaces.length === 0) die('give --ifaces eth0[,eth1...]');
for (const i of ifaces) if (!IFNAME.test(i)) die(`bad interface name ${JSON.stringify(i)}`);
const durationMs = Number(values['duration-ms']);
if (!(durationMs > 0 && durationMs <= MAX_DURATION_MS)) die(`--duration-ms must be in (0, ${MAX_DURATION_MS}]`);
const periodUs = Number(values['period-us']);
if (!(periodUs >= 0 && periodUs <= 100_000)) die('--period-us must be in [0, 100000]');

// Kept-open fds read at offset 0 return fresh values (~2 us per read, LAB-FACTS.md).
const fds = ifaces.map((i) => {
  try {
    return openSync(`/sys/class/net/${i}/statistics/rx_packets`, 'r');
  } catch (e) {
    die(`cannot open counters of ${i}: ${e.message}`);
  }
});
const buf = Buffer.alloc(32);
// Atomics.wait sleeps in a futex without pegging a core; a setImmediate spin would burn one,
// and the storm under observation already pegs the other on a 2-core machine.
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = periodUs / 1000;

function readCount(fd) {
  const n = readSync(fd, buf, 0, buf.length, 0);
  let v = 0;
  for (let k = 0; k < n; k++) {
    const d = buf[k] - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  return v;
}

const series = ifaces.map(() => ({ t: [], c: [] }));
const last = ifaces.map(() => -1);
const lastT = ifaces.map(() => 0n);
// The latest poll, kept or not: a change's lower bound.
const prevT = ifaces.map(() => 0n);
let finished = false;

// Each count is stamped AFTER its read: a sample stamped before it could carry the time of a
// moment before a storm and a count from after it, whenever this process is preempted between
// the two (a busy core and a storm on the other: a lab test once saw 7,719 frames at prod
// "before" the injection, whose frame cannot precede its own send time).
function poll(force) {
  for (let k = 0; k < fds.length; k++) {
    const c = readCount(fds[k]);
    const t = process.hrtime.bigint();
    if (force || c !== last[k] || t - lastT[k] >= KEEPALIVE_NS) {
      if (c !== last[k] && last[k] >= 0 && prevT[k] > lastT[k]) {
        series[k].t.push(Number(prevT[k]));
        series[k].c.push(last[k]);
      }
      series[k].t.push(Number(t));
      series[k].c.push(c);
      last[k] = c;
      lastT[k] = t;
    }
    prevT[k] = t;
  }
}

function finish() {
  if (finished) return;
  finished = true;
  try {
    poll(true);
  } catch {
    // The interface vanished (lab torn down): report what was seen.
  }
  for (const fd of fds) closeSync(fd);
  const out = {};
  ifaces.forEach((i, k) => (out[i] = series[k]));
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

function chunk() {
  if (finished) return;
  const chunkEnd = process.hrtime.bigint() + CHUNK_NS;
  try {
    for (;;) {
      poll(false);
      const t = process.hrtime.bigint();
      if (t >= end) return finish();
      if (t >= chunkEnd) break;
      if (sleepMs > 0) Atomics.wait(sleeper, 0, 0, sleepMs);
    }
  } catch (e) {
    process.stderr.write(`observe.mjs: read failed: ${e.message}\n`);
    return finish();
  }
  setImmediate(chunk);
}

process.on('SIGTERM', finish);
process.on('SIGINT', finish);
poll(true);
// Ready once the first counts are in: every interface has a sample at or before tNs.
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(durationMs * 1e6));
process.stdout.write(`${JSON.stringify({ ready: true, tNs: Number(start) })}\n`);
setImmediate(chunk);
