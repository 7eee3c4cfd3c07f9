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
  /**
   * The fuse's cut of `port` as a result, or null: it would not cut it, or did not start to within
   * `ms`, or did not finish within `cuttingMs` of starting.
   */
  cutOf(port: string, ms: number, cuttingMs: number): Promise<ActionResult | null>;
  /** The fuse started cutting `port` (its call runs): a wait for it lasts until the call ends. */
  cutting(port: string, nowMs: number): void;
  /** A fuse cut arrived: true when a wait took it (the caller must not report it a second time). */
  took(result: ActionResult): boolean;
}

export function fuseWaits(): FuseWaits {
  let made: FusePlan | null = null;
  let plan: FusePlan | null = null;
  const waiting = new Map<string, { resolve: (r: ActionResult | null) => void; extend(): void }>();
  /** Ports whose cut call the fuse has started, and when (ms). */
  const started = new Map<string, number>();
  return {
    made(p) {
      made = p;
      plan = null; // until the fuse says it holds it
      return p;
    },
    held(ok) {
      plan = ok ? made : null;
      if (ok) return;
      for (const [port, w] of waiting) (waiting.delete(port), w.resolve(null));
      started.clear(); // a cut call of a fuse that holds nothing of ours now will not be reported
    },
    cutOf(port, ms, cuttingMs) {
      const would = plan !== null && !plan.dryRun && plan.budget > 0 && plan.cutList.some((c) => c.port === port);
      if (!would || waiting.has(port)) return Promise.resolve(null);
      const since = started.get(port);
      return new Promise((resolve) => {
        const end = (): void => void (waiting.delete(port) && resolve(null));
        let t = setTimeout(end, since === undefined ? ms : Math.max(0, since + cuttingMs - Date.now()));
        waiting.set(port, {
          resolve: (r) => (clearTimeout(t), resolve(r)),
          extend: () => (clearTimeout(t), (t = setTimeout(end, cuttingMs))),
        });
      });
    },
    cutting(port, nowMs) {
      started.set(port, nowMs);
      waiting.get(port)?.extend();
    },
    took(result) {
      started.delete(result.port);
      const w = waiting.get(result.port);
      if (!w) return false;
      waiting.delete(result.port);
      w.resolve(result);
      return true;
    },
  };
}
