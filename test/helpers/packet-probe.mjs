// Drives the real `packet` counter source inside a network namespace for the integration
// test: `ip netns exec NS node packet-probe.mjs /path/to/packet.js`. The test process
// cannot enter a namespace itself, and AF_PACKET sockets count in the namespace they are
// created in, so the source has to run here. packet.js is agent/sources/packet.ts
// transpiled by the test (Node 20 runs no TypeScript).
//
// Protocol: one JSON command per stdin line, one JSON reply per stdout line.
//   {"op":"watch","ports":["p0","p1"]}  -> {"ok":true,"warnings":[...]}
//   {"op":"read","ports":["p0"]}        -> {"ok":true,"counters":{"p0":{rxBroadcast,rxMulticast,ok}},"warnings":[...]}
//   {"op":"sockets"}                    -> {"ok":true,"sockets":N}: AF_PACKET sockets this process holds
//   {"op":"stop"}                       -> {"ok":true,"sockets":N,"ms":T}: close() awaited, then counted
//   {"op":"close"}                      -> {"ok":true} and exit
// Counts that are NaN come back as null (JSON has no NaN).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const modPath = process.argv[2];
if (!modPath) {
  process.stderr.write('usage: packet-probe.mjs PATH/TO/packet.js\n');
  process.exit(2);
}
const { createPacketSource } = await import(pathToFileURL(modPath).href);

const warnings = [];
const source = createPacketSource({ warn: (obj, msg) => warnings.push({ msg, ...obj }) });
// Preallocated per port and reused across reads, as the daemon does.
const counters = new Map();

function ifindexOf(name) {
  try {
    return Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'));
  } catch {
    return 0;
  }
}

/** AF_PACKET sockets among this process's descriptors: their inodes, looked up in /proc/net/packet. */
function packetSockets() {
  const packet = new Set(readFileSync('/proc/net/packet', 'utf8').trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/).pop()));
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    let target;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory's own fd, closed by now
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && packet.has(m[1])) n++;
  }
  return n;
}

function reply(obj) {
  process.stdout.write(`${JSON.stringify({ ...obj, warnings: warnings.splice(0) })}\n`);
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.op === 'watch') {
      source.watch(cmd.ports.map((name) => ({ name, ifindex: ifindexOf(name), bridge: null })));
      reply({ ok: true });
    } else if (cmd.op === 'read') {
      const out = new Map();
      for (const name of cmd.ports) {
        let c = counters.get(name);
        if (!c) {
          c = { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: NaN, rxMulticast: NaN, ok: false };
          counters.set(name, c);
        }
        c.ok = true; // the daemon marks every port ok before the sources read
        out.set(name, c);
      }
      source.read(out);
      const result = {};
      for (const [name, c] of out) {
        result[name] = {
          rxBroadcast: Number.isNaN(c.rxBroadcast) ? null : c.rxBroadcast,
          rxMulticast: Number.isNaN(c.rxMulticast) ? null : c.rxMulticast,
          ok: c.ok,
        };
      }
      reply({ ok: true, counters: result });
    } else if (cmd.op === 'sockets') {
      reply({ ok: true, sockets: packetSockets() });
    } else if (cmd.op === 'stop') {
      const t0 = performance.now();
      await source.close();
      reply({ ok: true, ms: performance.now() - t0, sockets: packetSockets() });
    } else if (cmd.op === 'close') {
      await source.close();
      reply({ ok: true });
      break;
    } else {
      reply({ ok: false, error: `unknown op ${cmd.op}` });
    }
  } catch (err) {
    reply({ ok: false, error: String(err?.stack ?? err) });
  }
}
await source.close();
process.exit(0);
