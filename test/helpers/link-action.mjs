// Runs the agent's link action inside a lab's host namespace for the integration test:
// `ip netns exec HOST node link-action.mjs DIST_DIR (down|up|stop-only) PORT` prints one JSON line.
// The test process cannot enter a namespace itself, and the addon's rtnetlink socket and sysfs
// are the namespace's own. stop-only: the bridge state alone (the addon's setter), no admin-down.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, op, port] = process.argv.slice(2);
if (!dist || !['down', 'up', 'stop-only'].includes(op ?? '') || !port) {
  process.stderr.write('usage: link-action.mjs DIST_DIR down|up|stop-only PORT\n');
  process.exit(2);
}
const mod = (p) => import(pathToFileURL(join(dist, p)).href);
if (op === 'stop-only') {
  const { nativeBridgeState } = await mod('agent/host/bridge-port.js');
  const ifindex = Number(readFileSync(`/sys/class/net/${port}/ifindex`, 'utf8'));
  const t0 = performance.now();
  const err = nativeBridgeState()(ifindex, 0);
  process.stdout.write(`${JSON.stringify({ err, ms: performance.now() - t0 })}\n`);
} else {
  const { executeLinkAction } = await mod('agent/actions/link.js');
  const r = await executeLinkAction({ kind: op === 'down' ? 'link-down' : 'link-up', port, reason: 'test' }, { timeoutMs: 5000, retries: 1 });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
