import type { Logger } from '../log.js';
import type { Policy } from '../types.js';
import type { EventNotifier, WebhookOptions } from '../notify/webhook.js';

// Notifications come from the command line (--webhook, --hook-argv) or else from the policy's
// `notify`: the CLI wins, as an operator's explicit override, and then the policy's section is
// ignored whole. Read once at start: a reload does not restart the notifier (keeping a delivery
// queue alive across reloads is simpler and loses nothing in flight).

export interface Notifiers {
  hooks: EventNotifier | null;
  /** What was configured, for the start-up log line. */
  targets: WebhookOptions[];
}

export async function startNotifiers(fromCli: WebhookOptions | undefined, policy: Policy, log: Logger): Promise<Notifiers> {
  const onError = (e: Error & { code?: string }): void => log.warn({ component: 'webhook', code: e.code, err: e.message }, 'notification failed');
  const targets = fromCli ? [fromCli] : notifyFromPolicy(policy.notify);
  if (targets.length === 0) return { hooks: null, targets };
  // Loaded only when a target is configured, and before the agent says it runs: the webhook code
  // and node:https cost an agent without notifications ~30-60 ms of its start (see keep-code.ts).
  const { createWebhookNotifier } = await import('../notify/webhook.js');
  return { hooks: combineNotifiers(targets.map((w) => createWebhookNotifier({ ...w, onError }))), targets };
}

/** The policy's `notify` as notifier options: one per target written (a URL, a hook, or both). */
function notifyFromPolicy(n: Policy['notify']): WebhookOptions[] {
  if (!n) return [];
  const common = { timeoutMs: n.timeoutMs, tries: n.tries };
  const out: WebhookOptions[] = [];
  if (n.webhook) out.push({ ...common, target: { kind: 'http', url: n.webhook } });
  if (n.hookArgv) out.push({ ...common, target: { kind: 'exec', argv: n.hookArgv } });
  return out;
}

/** One notifier over several (each keeps its own queue, so a slow webhook never delays the hook). */
function combineNotifiers(ns: EventNotifier[]): EventNotifier | null {
  if (ns.length <= 1) return ns[0] ?? null;
  const sum = (k: keyof EventNotifier['stats']): number => ns.reduce((a, n) => a + n.stats[k], 0);
  return {
    notify: (e) => {
      for (const n of ns) n.notify(e);
    },
    get stats() {
      return { sent: sum('sent'), failed: sum('failed'), dropped: sum('dropped'), tries: sum('tries'), pending: sum('pending') };
    },
    idle: async () => {
      await Promise.all(ns.map((n) => n.idle()));
    },
    close: () => {
      for (const n of ns) n.close();
    },
  };
}
