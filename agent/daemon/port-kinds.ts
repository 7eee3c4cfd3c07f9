import type { ActionRequest, ActionResult, EsxiActionRecord, Policy, PortInfo } from '../types.js';
import { executeLinkAction } from '../actions/link.js';
import { isAdminUp } from '../host/interfaces.js';
import { isValidIfName } from '../host/names.js';

// One table of what can be done to a port, per kind of port (the model: lldpd's per-port ops):
// a Linux interface of this host, or a port of one ESXi host (esxi-kind.ts, loaded only with
// ESXi hosts in the policy). The daemon finds a port's kind by asking each kind whether the name
// is its own, and never looks at name syntax itself.

export interface PortKind {
  readonly id: string;
  /** Is this name a port of this kind? (A name check only: no I/O.) */
  checkName(port: string): boolean;
  /** `stages`: where a kind that stops forwarding before its admin-down says so (local bridge ports). */
  down(req: ActionRequest, previous?: EsxiActionRecord, stages?: DownStages): Promise<ActionResult>;
  up(req: ActionRequest, previous?: EsxiActionRecord): Promise<ActionResult>;
  /** Is the cut of a tripped or held port still in place? null: cannot tell now. */
  verify(port: string, previous?: EsxiActionRecord): boolean | null;
  /** The journal's words for a cut found undone and redone (or not). */
  reassertReason(what: 'tripped' | 'held', r: ActionResult): string;
}

/** The executor's part in a staged link-down (see executeLinkAction's onStopped / adminDownGate). */
export interface DownStages {
  onStopped(r: ActionResult): void;
  adminDownGate(): Promise<void>;
}

export interface PortKinds {
  /** The kind that owns this port name, or null (a name no kind knows). */
  of(port: string): PortKind | null;
  readonly all: readonly PortKind[];
}

export function portKinds(kinds: readonly PortKind[]): PortKinds {
  return { all: kinds, of: (port) => kinds.find((k) => k.checkName(port)) ?? null };
}

/**
 * Interfaces of this host: sysfs flags first for link-down, `ip link` otherwise. `bridgeIfindex`
 * names a watched bridge port's ifindex as the local source knows it (kept current by the link
 * monitor): a trip's stop then skips two sysfs reads before the state change (see link.ts).
 */
export function localKind(policy: () => Policy, bridgeIfindex: (port: string) => number | undefined = () => undefined): PortKind {
  const opts = () => ({ timeoutMs: policy().actions.timeoutMs, retries: policy().actions.retries });
  return {
    id: 'local',
    checkName: isValidIfName,
    down: (req, _previous, stages) =>
      executeLinkAction(req, stages ? { ...opts(), onStopped: stages.onStopped, adminDownGate: stages.adminDownGate, ifindexHint: bridgeIfindex(req.port) } : opts()),
    up: (req) => executeLinkAction(req, opts()),
    verify: (port) => {
      const up = isAdminUp(port);
      return up === null ? null : !up;
    },
    reassertReason: (what, r) =>
      r.ok ? `port was ${what} and found up; put down again ${what === 'held' ? 'until the hold ends' : 'until an operator restores it'}` : `could not put ${what} port down again: ${r.error}`,
  };
}

/** The ifindex of a bridge port among the local source's ports (undefined: not one of them, or in no bridge). */
export function bridgeIfindexOf(infos: readonly PortInfo[], port: string): number | undefined {
  // A macvlan domain's port has no bridge state to set (its `bridge` is the NIC's name).
  for (const p of infos) if (p.name === port) return p.bridge !== null && p.macvlan !== true ? p.ifindex : undefined;
  return undefined;
}
