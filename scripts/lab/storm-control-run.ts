// Entry point: run the storm-control baseline inside a lab namespace.
//   ip netns exec PREFIXhost node dist/scripts/lab/storm-control-run.js \
//     --ports up1,up2,vm1,mgmt0 --pps 20000 --interval-ms 1000 --duration-ms 5000
// stdout: `{"ready":true,"startNs":N}` once running, then one JSON line StormControlResult.
// SIGTERM/SIGINT end it early (the result is still printed).
import { parseArgs } from 'node:util';
import { runStormControl, validateConfig } from './storm-control.js';

function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ports: { type: 'string', default: '' },
      pps: { type: 'string', default: '20000' },
      'interval-ms': { type: 'string', default: '1000' },
      'duration-ms': { type: 'string', default: '5000' },
    },
  });
  const cfg = validateConfig({
    ports: (values.ports ?? '').split(',').filter((p) => p.length > 0),
    levelPps: Number(values.pps),
    intervalMs: Number(values['interval-ms']),
    durationMs: Number(values['duration-ms']),
  });
  const ac = new AbortController();
  process.on('SIGTERM', () => ac.abort());
  process.on('SIGINT', () => ac.abort());
  return runStormControl(cfg, ac.signal, (startNs) => {
    process.stdout.write(`${JSON.stringify({ ready: true, startNs })}\n`);
  }).then((r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`storm-control-run: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
