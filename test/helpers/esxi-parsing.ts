// What every ESXi output parser test needs (agent/esxi/*): the captured fixtures and their golden
// JSON, the golden check itself, and two properties every parser must hold: it never throws,
// whatever it is given, and on a real output mangled by a few edits it fails with a line inside
// the text. Each parser test file runs them over its own fixtures and parsers.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Result } from '../../agent/esxi/result.js';

export type Parser = (text: unknown) => Result<unknown>;

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'esxcli');
export const fixture = (name: string): string => readFileSync(join(DIR, `${name}.txt`), 'utf8');
export const golden = (name: string): unknown => JSON.parse(readFileSync(join(DIR, `${name}.golden.json`), 'utf8'));
export const asJson = (r: unknown): unknown => JSON.parse(JSON.stringify(r));

export function value<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error} (line ${r.line})`);
  return r.value;
}

/** Every fixture parses to its hand-checked JSON, also with CRLF line ends (ssh with a pty). */
export function describeGolden(title: string, fixtures: ReadonlyArray<readonly [string, Parser]>): void {
  describe(title, () => {
    for (const [name, parse] of fixtures) {
      it(name, () => {
        expect(asJson(parse(fixture(name)))).toEqual(golden(name));
      });
    }

    it('the same outputs with CRLF line ends (ssh with a pty) parse identically', () => {
      for (const [name, parse] of fixtures) {
        expect(asJson(parse(fixture(name).replace(/\n/g, '\r\n'))), name).toEqual(golden(name));
      }
    });
  });
}

export function assertNeverThrows(parsers: readonly Parser[], numRuns: number): void {
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), fc.string({ unit: 'grapheme', maxLength: 400 }), fc.anything()), (input) => {
      for (const p of parsers) expect(typeof p(input).ok).toBe('boolean');
    }),
    { numRuns },
  );
}

export function assertMutationsFailInside(texts: readonly string[], parsers: readonly Parser[], numRuns: number): void {
  const edit = fc.record({ at: fc.nat(), del: fc.nat({ max: 8 }), ins: fc.string({ unit: 'binary-ascii', maxLength: 8 }) });
  fc.assert(
    fc.property(fc.nat({ max: texts.length - 1 }), fc.array(edit, { maxLength: 4 }), (ti, edits) => {
      let t = texts[ti]!;
      for (const e of edits) {
        const at = e.at % (t.length + 1);
        t = t.slice(0, at) + e.ins + t.slice(at + e.del);
      }
      const lines = t.split('\n').length;
      for (const p of parsers) {
        const r = p(t);
        if (!r.ok && r.line !== undefined) {
          expect(r.line).toBeGreaterThanOrEqual(1);
          expect(r.line).toBeLessThanOrEqual(lines);
        }
      }
    }),
    { numRuns },
  );
}
