// Drives the native tripwire inside a network namespace for test/integration/tripwire.test.ts:
// `ip netns exec NS node tripwire-probe.mjs ADDON [PRIORITY]`. The tripwire's socket sees the
// namespace it is opened in, so it has to run here. PRIORITY: its threads' SCHED_FIFO priority
// (0, the default: normal; the agent's default is 10).
//
// Protocol: one JSON command per stdin line, one JSON reply per stdout line.
//   {"op":"arm","minFrames":K,"windowNs":W} -> {"ok":true}
//   {"op":"fired"}                           -> {"ok":true,"fired":N}: onFrame calls so far
//   {"op":"moves"}                           -> {"ok":true,"moves":[mono, ifindex, mac, ...]} since the last
//   {"op":"unicast","ifindexes":[...]}       -> {"ok":true,"watched":N}: the unknown-unicast watch on those ports
//   {"op":"collect","ms":T}                  -> {"ok":true,"moves":[...]}: every move over the next T ms, read
//                                               each ms as the agent's ticks do (the native ring keeps 256)
//   {"op":"hold"}                            -> {"ok":true,"frozen":bool}: the evidence's head held (a trip)
//   {"op":"frames"}                          -> {"ok":true,"onset":{ifindex:n},"rest":{ifindex:n}}: the evidence taken
//   {"op":"close"}                           -> {"ok":true} and exit
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const addonPath = process.argv[2];
if (!addonPath) {
  process.stderr.write('usage: tripwire-probe.mjs PATH/TO/packet_stats.node\n');
  process.exit(2);
}
const addon = createRequire(import.meta.url)(addonPath);
let fired = 0;
const handle = addon.startTripwire(() => fired++, Number(process.argv[3] ?? 0));
const reply = (o) => process.stdout.write(`${JSON.stringify({ ok: true, ...o })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === 'arm') {
    addon.armTripwire(handle, cmd.minFrames, cmd.windowNs);
    reply({});
  } else if (cmd.op === 'fired') {
    reply({ fired });
  } else if (cmd.op === 'moves') {
    reply({ moves: addon.readTripwireMoves(handle) ?? 'none' });
  } else if (cmd.op === 'unicast') {
    reply({ watched: addon.tripwireUnicast(handle, cmd.ifindexes) });
  } else if (cmd.op === 'collect') {
    const moves = [];
    const end = performance.now() + cmd.ms;
    const timer = setInterval(() => {
      moves.push(...(addon.readTripwireMoves(handle) ?? []));
      if (performance.now() >= end) {
        clearInterval(timer);
        reply({ moves });
      }
    }, 1);
  } else if (cmd.op === 'hold') {
    reply({ frozen: addon.tripwireHold(handle) });
  } else if (cmd.op === 'frames') {
    const onset = {};
    const rest = {};
    for (const f of addon.tripwireFrames(handle)) {
      const into = f.onset === true ? onset : rest;
      into[f.ifindex] = (into[f.ifindex] ?? 0) + 1;
    }
    reply({ onset, rest });
  } else if (cmd.op === 'close') {
    addon.stopTripwire(handle);
    reply({});
    process.exit(0);
  } else {
    process.stdout.write(`${JSON.stringify({ ok: false, error: `unknown op ${cmd.op}` })}\n`);
  }
});
