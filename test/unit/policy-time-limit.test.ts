import { describe, expect, it } from 'vitest';
import { loadPolicyFile, type PolicyResult } from '../../agent/policy/load.js';
import { formatPolicyError } from '../../agent/policy/errors.js';

// A policy on a hung filesystem (policy/load.ts loadPolicyFile): its stat or read never returns
// and cannot be cancelled. Stood in for by a read that never settles (a real hung NFS or FUSE
// mount was not built here).

const REPO_POLICY = new URL('../../policies/lab.yaml', import.meta.url).pathname;
const errs = (r: PolicyResult): string[] => ('errors' in r ? r.errors.map(formatPolicyError) : []);

describe('reading a policy with a time limit', () => {
  it('a read that hangs is an error after the limit; the same path is refused at once until that read returns', async () => {
    let finish: (r: PolicyResult) => void = () => undefined;
    const hang = (): Promise<PolicyResult> => new Promise((r) => (finish = r));
    const t0 = performance.now();
    const r = await loadPolicyFile('/nfs/policy.yaml', 100, hang);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(errs(r)).toEqual(['/nfs/policy.yaml: (file): not read within 100 ms (a hung filesystem?)']);
    // Not a second pool thread lost to the same mount: refused without calling the reader.
    let called = 0;
    const again = await loadPolicyFile('/nfs/policy.yaml', 100, async () => (called++, hang()));
    expect(called).toBe(0);
    expect(errs(again)[0]).toMatch(/an earlier read has not returned for \d+ s \(a hung filesystem\?\): not read again until it does/);
    // The filesystem comes back: the late read settles, the next read is a read again.
    finish({ errors: [] });
    await new Promise((r) => setTimeout(r, 0));
    const ok = await loadPolicyFile(REPO_POLICY); // a real read: the default limit (100 ms failed under load)
    expect('policy' in ok).toBe(true);
  });

  it('an ordinary policy loads well within the default limit', async () => {
    const r = await loadPolicyFile(REPO_POLICY);
    expect('policy' in r && r.policy.file).toBe(REPO_POLICY);
  });
});
