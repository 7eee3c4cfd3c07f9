// Non-TS helpers (send.py, observe.mjs) stay in scripts/lab/ and are not copied by tsc, so
// find them from either the source tree (vitest runs .ts in place) or dist/scripts/lab/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function labAsset(name: string): string {
  for (const rel of [`./${name}`, `../../../scripts/lab/${name}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`lab asset ${name} not found next to ${fileURLToPath(import.meta.url)} or in scripts/lab/`);
}

/**
 * Path of a lab tool compiled from scripts/lab/NAME.c by scripts/setup.sh into dist/scripts/lab/
 * (from dist itself or from the source tree).
 */
export function labBinary(name: string): string {
  for (const rel of [`./${name}`, `../../dist/scripts/lab/${name}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`dist/scripts/lab/${name} not found: run scripts/setup.sh (it compiles scripts/lab/${name}.c)`);
}

/** Path of a compiled lab entry point in dist/ (from dist itself or from the source tree). */
export function labDistEntry(name: string): string {
  for (const rel of [`./${name}`, `../../dist/scripts/lab/${name}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (p.includes('/dist/') && existsSync(p)) return p;
  }
  throw new Error(`compiled ${name} not found: build first (npx tsc -p tsconfig.json)`);
}
