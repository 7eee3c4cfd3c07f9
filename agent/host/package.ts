import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Where the package is installed: found from this file, so the same code works from agent/host/
// (vitest, TypeScript sources) and from dist/agent/host/ (compiled).

/** Nearest directory at or above `start` that holds a package.json. */
export function findPackageRoot(start: string): string | null {
  for (let dir = start; ; ) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

let root: string | null | undefined;

/** The package root of this installation (null: no package.json above this file). */
export function packageRoot(): string | null {
  if (root === undefined) root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  return root;
}

let version: string | undefined;

/** The version in package.json ('unknown' when it cannot be read). */
export function packageVersion(): string {
  if (version !== undefined) return version;
  try {
    const r = packageRoot();
    const v = r === null ? undefined : (JSON.parse(readFileSync(join(r, 'package.json'), 'utf8')) as { version?: unknown }).version;
    version = typeof v === 'string' ? v : 'unknown';
  } catch {
    version = 'unknown';
  }
  return version;
}
