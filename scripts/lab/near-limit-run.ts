// Entry point: run the near-limit poller inside a lab namespace.
//   ip netns exec PREFIXhost node dist/scripts/lab/near-limit-run.js --ports up1 --duration-ms 3000
//     [--cut-argv '["vim-cmd","vmsvc/device.connection","1","4000","0"]']
// stdout: `{"ready":true,"startNs":N}` once running, then one JSON line NearLimitResult.
import { parseArgs } from 'node:util';
import { runNearLimit, validateNearLimit } from './near-limit.js';

function main(): Promise<void> {
  const { values } = parseArgs({
    options: { ports: { type: 'string', default: '' }, 'duration-ms': { type: 'string', default: '3000' }, 'cut-argv': { type: 'string' } },
  });
  const cutArgv = values['cut-argv'] === undefined ? undefined : (JSON.parse(values['cut-argv']) as string[]);
  const cfg = validateNearLimit({
    ports: (values.ports ?? '').split(',').filter((p) => p.length > 0),
    durationMs: Number(values['duration-ms']),
    ...(cutArgv ? { cutArgv } : {}),
  });
  const ac = new AbortController();
  process.on('SIGTERM', () => ac.abort());
  process.on('SIGINT', () => ac.abort());
  return runNearLimit(cfg, ac.signal, (startNs) => process.stdout.write(`${JSON.stringify({ ready: true, startNs })}\n`)).then((r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`near-limit-run: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
