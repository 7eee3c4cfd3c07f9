// Storm captures next to the journal: STATE_DIR/captures/*.pcapng, bounded in count and total
// size (oldest deleted first), so evidence can never fill the disk of a host in a storm every
// minute. Names sort by time: trip-2026-12-04T22-30-01.123Z-up1.pcapng. Asynchronous (libuv's
// pool does the disk work): the agent's thread keeps sampling while a capture is written.
import { mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidIfName } from '../host/names.js';

export interface CaptureLimits {
  /** Most files kept (default 50). */
  maxFiles: number;
  /** Most bytes kept over all files (default 16 MiB). */
  maxBytes: number;
}

/** ~42 KiB a capture (256 frames of at most 128 bytes): 50 of them are ~2 MiB, well under 16 MiB. */
export const DEFAULT_CAPTURE_LIMITS: CaptureLimits = { maxFiles: 50, maxBytes: 16 * 1024 * 1024 };

const NAME = /^trip-[0-9TZ.-]+-[A-Za-z0-9_.:@-]{1,15}\.pcapng$/;

export function captureName(tsMs: number, port: string): string {
  if (!isValidIfName(port)) throw new Error(`capture: not an interface name: ${JSON.stringify(port)}`);
  return `trip-${new Date(tsMs).toISOString().replace(/:/g, '-')}-${port}.pcapng`;
}

/** Writes one capture (mode 0640, never over an existing file) and prunes the oldest beyond the limits; returns its path. */
export async function saveCapture(stateDir: string, name: string, bytes: Uint8Array, limits: CaptureLimits = DEFAULT_CAPTURE_LIMITS): Promise<string> {
  if (!NAME.test(name)) throw new Error(`capture: bad file name ${JSON.stringify(name)}`);
  const dir = join(stateDir, 'captures');
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const path = join(dir, name);
  // 'wx': O_CREAT|O_EXCL, so a link planted under that name is refused rather than followed.
  await writeFile(path, bytes, { mode: 0o640, flag: 'wx' });
  await pruneCaptures(dir, limits, name);
  return path;
}

/** Deletes the oldest captures (by name = time) until count and total size fit; never `keep`. */
export async function pruneCaptures(dir: string, limits: CaptureLimits, keep?: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((f) => NAME.test(f)).sort();
  const files = await Promise.all(names.map(async (f) => ({ f, size: (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size })));
  let total = files.reduce((a, x) => a + x.size, 0);
  let count = files.length;
  const removed: string[] = [];
  for (const x of files) {
    if (count <= limits.maxFiles && total <= limits.maxBytes) break;
    if (x.f === keep) continue;
    await unlink(join(dir, x.f)).catch(() => undefined); // gone already: counts as removed
    removed.push(x.f);
    total -= x.size;
    count--;
  }
  return removed;
}
