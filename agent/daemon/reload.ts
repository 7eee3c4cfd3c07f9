import type { Logger } from '../log.js';
import type { JournalEvent, Policy } from '../types.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatPolicyError } from '../policy/errors.js';
import { ControlError } from '../control/server.js';
import type { Requester } from '../control/peer.js';

// The policy in force, and reloads of it (SIGHUP, `stormbreaker reload`): a policy that fails
// to load is rejected whole and the last good one stays; --dry-run from the command line wins
// over every policy, reloaded ones too.

/** What a reload did: swapped in a new policy, or rejected it whole (the last good one stays). */
export type ReloadOutcome =
  | { ok: true; oldHash: string; policyHash: string; changed: boolean }
  | { ok: false; policyHash: string; errors: string[] };

export interface PolicyInForce {
  current(): Policy;
  /** For status: when it was loaded, how many reloads, the last rejected one. */
  info(): { loadedAt: string; reloads: number; lastError: { at: string; trigger: string; errors: string[] } | null };
  /** One at a time: a SIGHUP and a `reload` arriving together load the file twice, in order. */
  reload(trigger: string, by?: Requester): Promise<ReloadOutcome>;
}

export interface ReloadDeps {
  path: string;
  dryRun: boolean;
  log: Logger;
  record(e: JournalEvent): void;
  /** A new policy is in force: sources, ports and checks follow it now. */
  applied(p: Policy): void;
  stopped(): boolean;
}

export function policyInForce(first: Policy, d: ReloadDeps): PolicyInForce {
  const withFlags = (p: Policy): Policy => (d.dryRun ? { ...p, dryRun: true } : p);
  let policy = withFlags(first);
  let loadedAt = new Date().toISOString();
  let lastError: { at: string; trigger: string; errors: string[] } | null = null;
  let reloads = 0;
  let chain: Promise<unknown> = Promise.resolve();

  async function doReload(trigger: string, by: Requester | undefined): Promise<ReloadOutcome> {
    if (d.stopped()) throw new ControlError('E_STOPPING', 'agent is stopping');
    const next = await loadPolicyFile(d.path);
    if (d.stopped()) throw new ControlError('E_STOPPING', 'agent is stopping');
    const oldHash = policy.hash;
    const ts = new Date().toISOString();
    const who = by ? { by } : {};
    if ('errors' in next) {
      // Rejected whole: a policy that is half right is not applied half.
      const errors = next.errors.map(formatPolicyError);
      lastError = { at: ts, trigger, errors };
      d.record({ ts, event: 'reload-failed', port: '', reason: `policy reload (${trigger}) rejected with ${errors.length} error(s); ${oldHash} stays in force`, policyHash: oldHash, policyFile: policy.file, errors, trigger, ...who });
      return { ok: false, policyHash: oldHash, errors };
    }
    // ESXi hosts keep the connection, ports and settings they started with: reconnecting every host
    // on a reload would blind the agent for seconds. Say so instead of pretending.
    const esxiChanged = JSON.stringify(next.policy.esxi ?? null) !== JSON.stringify(policy.esxi ?? null);
    if (esxiChanged) d.log.warn({ component: 'esxi' }, 'policy reload changed the esxi section: it takes effect at the next restart; hosts keep their current settings');
    policy = withFlags(next.policy);
    loadedAt = ts;
    lastError = null;
    reloads++;
    d.record({ ts, event: 'reload', port: '', reason: `policy reloaded (${trigger}): ${oldHash} -> ${policy.hash}${esxiChanged ? '; esxi section changes take effect at restart' : ''}`, policyHash: policy.hash, oldHash, newHash: policy.hash, policyFile: policy.file, dryRun: policy.dryRun, trigger, ...who });
    d.applied(policy);
    return { ok: true, oldHash, policyHash: policy.hash, changed: oldHash !== policy.hash };
  }

  return {
    current: () => policy,
    info: () => ({ loadedAt, reloads, lastError }),
    reload(trigger, by) {
      const next = chain.then(() => doReload(trigger, by));
      chain = next.catch(() => undefined);
      return next;
    },
  };
}
