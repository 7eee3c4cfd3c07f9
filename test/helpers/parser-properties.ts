// Two properties every ESXi output parser must hold (agent/esxi/*): it never throws, whatever it
// is given, and on a real output mangled by a few edits it fails with a line inside the text.
// Shared by the parser test files so that each runs them over its own fixtures and parsers.
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Result } from '../../agent/esxi/result.js';

type Parser = (text: unknown) => Result<unknown>;

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
