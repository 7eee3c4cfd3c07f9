// What the policy loader returned, unwrapped for assertions. Shared by the policy*.test.ts files.
import { formatPolicyError, type PolicyError, type PolicyErrorCode } from '../../agent/policy/errors.js';
import type { PolicyResult } from '../../agent/policy/load.js';
import type { Policy } from '../../agent/types.js';

/** The policy; throws with every error printed when there were errors. */
export function ok(r: PolicyResult): Policy {
  if ('errors' in r) throw new Error(`expected a policy, got:\n${r.errors.map(formatPolicyError).join('\n')}`);
  return r.policy;
}

/** The errors; throws when a policy came back. */
export function errs(r: PolicyResult): PolicyError[] {
  if (!('errors' in r)) throw new Error('expected errors, got a policy');
  return r.errors;
}

/** [line, col, field, code] per error, in the order reported (file order). */
export type Expect = [number, number, string, PolicyErrorCode];
export const brief = (es: PolicyError[]): Expect[] => es.map((e) => [e.line, e.col, e.field, e.code]);
