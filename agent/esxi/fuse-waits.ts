// The agent's own link-down of a vNIC that the host's armed fuse would cut itself: the agent
// waits for the fuse's report instead of sending the same cut over SSH. Otherwise both cut the same
// vNIC, and on a saturated path the agent's SSH call can land seconds later, after an operator
// already restored the port, cutting it again. If the fuse does not report that port's cut within
// the wait (it judged differently, its budget was spent, its report is stuck behind the storm),
// the agent cuts over SSH as without a fuse.
import type { ActionResult } from '../types.js';
import type { FusePlan } from './fuse/plan.js';

export interface FuseWaits {
  /** A plan was made for the fuse (not held until it says so): returned as is. */
  made(plan: FusePlan): FusePlan;
  /** The fuse armed the plan last made (true), or holds none of ours now (false: not armed, ended). */
  held(ok: boolean): void;
  /** The fuse's cut of `port` as a result, or null (it would not cut it, or not within `ms`). */
  cutOf(port: string, ms: number): Promise<ActionResult | null>;
  /** A fuse cut arrived: true when a wait took it (the caller must not report it a second time). */
  took(result: ActionResult): boolean;
}

export function fuseWaits(): FuseWaits {
  let made: FusePlan | null = null;
  let plan: FusePlan | null = null;
  const waiting = new Map<string, (r: ActionResult | null) => void>();
  return {
    made(p) {
      made = p;
      plan = null; // until the fuse says it holds it
      return p;
    },
    held(ok) {
      plan = ok ? made : null;
      if (!ok) for (const [port, resolve] of waiting) (waiting.delete(port), resolve(null));
    },
    cutOf(port, ms) {
      const would = plan !== null && !plan.dryRun && plan.budget > 0 && plan.cutList.some((c) => c.port === port);
      if (!would || waiting.has(port)) return Promise.resolve(null);
      return new Promise((resolve) => {
        const t = setTimeout(() => waiting.delete(port) && resolve(null), ms);
        waiting.set(port, (r) => (clearTimeout(t), resolve(r)));
      });
    },
    took(result) {
      const resolve = waiting.get(result.port);
      if (!resolve) return false;
      waiting.delete(result.port);
      resolve(result);
      return true;
    },
  };
}
