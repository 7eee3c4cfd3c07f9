import type { Logger } from '../log.js';
import type { Requester } from '../control/peer.js';
import type { WebhookOptions } from '../notify/webhook.js';
import type { ReloadOutcome } from './reload.js';
import { resolveGroup } from '../control/group.js';

// What the command line hands the daemon, and what it gets back.

export type { ReloadOutcome };

export interface DaemonOptions {
  policyPath: string;
  stateDir: string;
  socketPath: string;
  dryRun: boolean;
  log: Logger;
  /** Group that owns the control socket (0660) and its directory (0750), by name. */
  socketGroup?: string;
  /** Prometheus text format on a loopback address (off when absent). */
  metrics?: { host: string; port: number };
  /** Where trips, restores, escalations and failed actions are sent (never blocks protection). */
  webhook?: WebhookOptions;
}

export interface Daemon {
  /** Re-read the policy from the same path (SIGHUP, `stormbreaker reload`). Never throws for a bad policy. */
  reload(trigger: string, by?: Requester): Promise<ReloadOutcome>;
  stop(): Promise<void>;
}

export class StartupError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** --socket-group as a gid; an unknown group stops the start. */
export function socketGroupId(group: string | undefined): number | undefined {
  if (group === undefined) return undefined;
  try {
    return resolveGroup(group);
  } catch (err) {
    throw new StartupError(`--socket-group: ${(err as Error).message}`, 1);
  }
}
