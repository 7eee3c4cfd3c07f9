import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './package.js';

// The one native addon (native/packet_stats.c), loaded in one place and once: counters and the
// tripwire (sources/packet.ts), sd_notify (notify/sdnotify.ts) and peer credentials
// (control/peer.ts) each check that the functions they use are there.

export const ADDON_PATH = 'build/Release/packet_stats.node';

let cached: Record<string, unknown> | { error: string } | undefined;

/** The addon's exports, or why it cannot be loaded (usually: never built, `npm run build:native`). */
export function loadAddon(): Record<string, unknown> | { error: string } {
  if (cached !== undefined) return cached;
  const root = packageRoot();
  if (root === null) return (cached = { error: `no package.json above ${import.meta.url}` });
  const path = join(root, ADDON_PATH);
  try {
    cached = createRequire(import.meta.url)(path) as Record<string, unknown>;
  } catch (err) {
    cached = { error: `${path}: ${(err as Error).message}` };
  }
  return cached;
}

/** The addon's path, for messages. */
export function addonPath(): string {
  return join(packageRoot() ?? '.', ADDON_PATH);
}
