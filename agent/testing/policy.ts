// Policy and PortPolicy objects for tests, built directly (no YAML, no loader) from the product's
// own defaults, so that "default thresholds" in a test means what an operator gets.
import { POLICY_DEFAULTS } from '../policy/defaults.js';
import type { Policy, PortPolicy, Role, Thresholds } from '../types.js';

export interface PolicyOverrides {
  file?: string;
  hash?: string;
  dryRun?: boolean;
  sampling?: Partial<Policy['sampling']>;
  defaults?: Partial<Thresholds>;
  breaker?: Partial<Policy['breaker']>;
  actions?: Partial<Policy['actions']>;
  fdb?: Partial<Policy['fdb']>;
}

export function testPolicy(o: PolicyOverrides = {}): Policy {
  const D = POLICY_DEFAULTS;
  return {
    version: 1,
    file: o.file ?? 'test://policy.yaml',
    hash: o.hash ?? '0123456789ab',
    sampling: { ...D.sampling, ...o.sampling },
    defaults: { ...D.defaults, ...o.defaults },
    ports: [],
    breaker: {
      ...D.breaker,
      shutOrder: [...D.breaker.shutOrder],
      floodShutRoles: [...D.breaker.floodShutRoles],
      ...o.breaker,
    },
    actions: { ...D.actions, ...o.actions },
    fdb: { ...D.fdb, ...o.fdb },
    dryRun: o.dryRun ?? D.dryRun,
  };
}

export interface PortSpec {
  role?: Role;
  protected?: boolean;
  /** Default: like the loader, shutOrder index * 1000 + rule, Infinity if the role is not listed. */
  shutRank?: number;
  thresholds?: Partial<Thresholds>;
  dryRun?: boolean;
  rule?: number;
}

/**
 * Watched ports from a compact spec: `{ up1: 'uplink', vm1: { role: 'vm', protected: true } }`.
 * Roles default from the name (up* uplink, vm* vm, mgmt* mgmt, else other); mgmt is protected by
 * default as in the loader. Rules are numbered in spec order.
 */
export function testPorts(spec: Record<string, PortSpec | Role>, policy: Policy = testPolicy()): Map<string, PortPolicy> {
  const out = new Map<string, PortPolicy>();
  let i = 0;
  for (const [name, s0] of Object.entries(spec)) {
    const s: PortSpec = typeof s0 === 'string' ? { role: s0 } : s0;
    const role = s.role ?? roleFromName(name);
    const rule = s.rule ?? i;
    const order = policy.breaker.shutOrder.indexOf(role);
    out.set(name, {
      name,
      role,
      protected: s.protected ?? role === 'mgmt',
      shutRank: s.shutRank ?? (order < 0 ? Infinity : order * 1000 + rule),
      thresholds: { ...policy.defaults, ...s.thresholds },
      rule,
      dryRun: policy.dryRun || s.dryRun === true,
    });
    i++;
  }
  return out;
}

function roleFromName(name: string): Role {
  if (name.startsWith('up')) return 'uplink';
  if (name.startsWith('vm')) return 'vm';
  if (name.startsWith('mgmt')) return 'mgmt';
  return 'other';
}
