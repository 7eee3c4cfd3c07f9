#!/usr/bin/env node
// Cost of reading per-port broadcast counts, three ways, so the choice between the
// AF_PACKET addon and nftables named counters rests on numbers measured here:
//   (a) packet_stats addon read()            (getsockopt PACKET_STATISTICS per fd)
//   (b) nftables named counters via one long-lived `nft -j -i` (one query per stdin line)
//   (c) readSync() of a kept-open sysfs statistics/rx_packets fd (the baseline: no broadcast)
//
// Usage (root): node scripts/bench-counters.mjs
// Builds namespace sbn-bench (bridge br0 with 8 veth ports p0..p7, peers q0..q7, IPv6 off),
// re-runs itself inside it with --inner to measure, and deletes the namespace on every
// exit path. The only traffic is a bounded broadcast stream (<= 1.5 s) from q0.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const NS = 'sbn-bench';
const PORTS = 8;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = join(ROOT, 'build/Release/packet_stats.node');
const SENDER = join(ROOT, 'test/helpers/send-frames.py');
const SELF = fileURLToPath(import.meta.url);
const TABLE = 'sbnbench';
const ports = Array.from({ length: PORTS }, (_, i) => `p${i}`);

function sh(file, args, input) {
  return execFileSync(file, args, { timeout: 20_000, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

// ---------------------------------------------------------------- outer: lab set-up/teardown
function teardown() {
  spawnSync('ip', ['netns', 'delete', NS], { timeout: 10_000, stdio: 'ignore' });
}

function setup() {
  teardown(); // a namespace left by a killed earlier run
  sh('ip', ['netns', 'add', NS]);
  const nsx = (...argv) => sh('ip', ['netns', 'exec', NS, ...argv]);
  // Quiet lab (LAB-FACTS): no IPv6 ND/MLD, no addresses, no IGMP from the bridge.
  nsx('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
  nsx('ip', 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
  nsx('ip', 'link', 'set', 'br0', 'up');
  for (let i = 0; i < PORTS; i++) {
    nsx('ip', 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', `q${i}`);
    nsx('ip', 'link', 'set', `p${i}`, 'master', 'br0');
    nsx('ip', 'link', 'set', `p${i}`, 'up');
    nsx('ip', 'link', 'set', `q${i}`, 'up');
  }
  // One named counter per port on netdev ingress: incoming broadcast only.
  const rules = ports
    .map((p) => `  counter bc_${p} { }\n  chain in_${p} { type filter hook ingress device "${p}" priority 0; ether daddr ff:ff:ff:ff:ff:ff counter name "bc_${p}"; }`)
    .join('\n');
  sh('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], `table netdev ${TABLE} {\n${rules}\n}\n`);
}

async function outer() {
  if (process.getuid?.() !== 0) {
    console.error('bench-counters: needs root (network namespaces)');
    process.exit(2);
  }
  if (!existsSync(ADDON)) {
    console.error(`bench-counters: ${ADDON} missing; run npm run build:native`);
    process.exit(2);
  }
  let child = null;
  const onSignal = (sig) => {
    // The inner run leads its own process group, so this also ends its frame sender.
    if (child?.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    teardown();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let code = 1;
  try {
    setup();
    child = spawn('ip', ['netns', 'exec', NS, process.execPath, SELF, '--inner'], { stdio: 'inherit', detached: true });
    code = await new Promise((res) => child.on('exit', (c, s) => res(c ?? (s ? 1 : 0))));
  } finally {
    teardown();
  }
  const left = sh('ip', ['netns', 'list']).split('\n').some((l) => l.split(' ')[0] === NS);
  if (left) console.error(`bench-counters: namespace ${NS} still exists`);
  process.exit(left ? 1 : code);
}

// ---------------------------------------------------------------- inner: measurements in NS
const hr = () => process.hrtime.bigint();

function stats(samples) {
  const s = Float64Array.from(samples).sort();
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p99: q(0.99), n: s.length };
}

/** Time `fn` once per sample; returns ns per call. */
function timeEach(fn, n) {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = hr();
    fn();
    out[i] = Number(hr() - t0);
  }
  return out;
}

/** Time batches of `k` calls (amortises the clock read); returns ns per call per batch. */
function timeBatches(fn, batches, k) {
  const out = new Float64Array(batches);
  for (let b = 0; b < batches; b++) {
    const t0 = hr();
    for (let i = 0; i < k; i++) fn(i);
    out[b] = Number(hr() - t0) / k;
  }
  return out;
}

function nftClient() {
  const nft = spawn('nft', ['-j', '-i'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = [];
  createInterface({ input: nft.stdout }).on('line', (l) => waiting.shift()?.(l));
  const query = `list counters table netdev ${TABLE}\n`;
  const out = new Float64Array(PORTS);
  return {
    /** One round trip: all 8 counters, parsed. */
    async read() {
      const line = new Promise((res) => waiting.push(res));
      nft.stdin.write(query);
      const doc = JSON.parse(await line);
      for (const item of doc.nftables) {
        const c = item.counter;
        if (c) out[Number(c.name.slice(4))] = c.packets;
      }
      return out;
    },
    close() {
      nft.stdin.end();
      nft.kill();
    },
  };
}

function sendFrames(iface, ...args) {
  return JSON.parse(sh('python3', [SENDER, iface, ...args]));
}

const fmtUs = (ns) => (ns / 1000).toFixed(ns < 10_000 ? 2 : 1).padStart(9);

async function inner() {
  const addon = createRequire(import.meta.url)(ADDON);
  const bfd = ports.map((p) => addon.open(p, 'broadcast'));
  const mfd = ports.map((p) => addon.open(p, 'multicast'));
  const all = [...bfd, ...mfd];
  const nft = nftClient();
  const buf = Buffer.alloc(32);
  const sfd = ports.map((p) => openSync(`/sys/class/net/${p}/statistics/rx_packets`, 'r'));
  const readSysfs = (fd) => {
    const n = readSync(fd, buf, 0, 32, 0);
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = buf[i];
      if (c < 48 || c > 57) break;
      v = v * 10 + c - 48;
    }
    return v;
  };

  // Both counters must agree before their costs mean anything.
  const sent = sendFrames('q0', '--broadcast', '100', '--multicast', '40', '--unicast', '30');
  await new Promise((r) => setTimeout(r, 100));
  const viaNft = (await nft.read())[0];
  const viaAddon = addon.read(bfd[0]);
  const viaAddonM = addon.read(mfd[0]);
  console.log(`check: sent ${JSON.stringify(sent)}; p0 broadcast: addon ${viaAddon}, nft ${viaNft}; multicast: addon ${viaAddonM}`);
  if (viaAddon !== sent.broadcast || viaNft !== sent.broadcast || viaAddonM !== sent.multicast) {
    console.error('bench-counters: counters disagree with the frames sent');
    process.exitCode = 1;
  }

  // Warm up JIT and caches.
  for (let i = 0; i < 20000; i++) addon.read(all[i % all.length]);
  for (let i = 0; i < 20000; i++) readSysfs(sfd[i % PORTS]);
  for (let i = 0; i < 50; i++) await nft.read();

  const rows = [];
  const row = (name, s, note = '') => rows.push({ name, ...s, note });

  row('addon read(), per call (batches of 1000)', stats(timeBatches((i) => addon.read(all[i & 15]), 1000, 1000)), 'idle ports');
  row('addon tick: 8 ports x broadcast', stats(timeEach(() => { for (let i = 0; i < PORTS; i++) addon.read(bfd[i]); }, 20000)));
  row('addon tick: 8 ports x bcast+mcast', stats(timeEach(() => { for (let i = 0; i < 16; i++) addon.read(all[i]); }, 20000)));

  // The same read while frames arrive: reads 20 µs apart, so most of them find new frames
  // (the liveness check is skipped then) while the sender and softirq compete for the CPU.
  // Bounded stream: killed after 1.5 s at the latest.
  const stream = spawn('python3', [SENDER, 'q0', '--broadcast', '300000', '--burst', '0'], { stdio: 'ignore' });
  const kill = setTimeout(() => stream.kill('SIGKILL'), 1500);
  await new Promise((r) => setTimeout(r, 200));
  const busy = new Float64Array(20000);
  let fresh = 0;
  let last = addon.read(bfd[0]);
  const first = last;
  for (let i = 0; i < busy.length; i++) {
    const due = hr() + 20_000n;
    while (hr() < due);
    const t0 = hr();
    const v = addon.read(bfd[0]);
    busy[i] = Number(hr() - t0);
    if (v !== last) fresh++;
    last = v;
  }
  stream.kill('SIGKILL');
  clearTimeout(kill);
  row('addon read(), port receiving a stream', stats(busy), `${last - first} frames; ${Math.round((100 * fresh) / busy.length)}% of reads saw new ones`);

  const nftSamples = new Float64Array(1000);
  for (let i = 0; i < nftSamples.length; i++) {
    const t0 = hr();
    await nft.read();
    nftSamples[i] = Number(hr() - t0);
  }
  row('nft -j -i: one query, 8 counters parsed', stats(nftSamples), 'async round trip');
  nft.close();

  row('sysfs readSync rx_packets, per call (batches of 1000)', stats(timeBatches((i) => readSysfs(sfd[i & 7]), 1000, 1000)), 'no broadcast split');
  row('sysfs tick: 8 ports x rx_packets', stats(timeEach(() => { for (let i = 0; i < PORTS; i++) readSysfs(sfd[i]); }, 20000)));

  for (const fd of all) addon.close(fd);
  for (const fd of sfd) closeSync(fd);

  console.log(`\n${'method'.padEnd(56)} ${'median µs'.padStart(9)} ${'p99 µs'.padStart(9)}  samples  note`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(56)} ${fmtUs(r.median)} ${fmtUs(r.p99)}  ${String(r.n).padStart(7)}  ${r.note}`);
  }
}

if (process.argv[2] === '--inner') {
  await inner();
} else {
  await outer();
}
