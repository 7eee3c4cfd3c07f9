// Which policy rule governs a port. Pure: plain data in, plain data out.
import { isValidIfName } from '../host/names.js';
import type { EsxiHostPolicy, Policy, PortPolicy, Recovery, Role, Thresholds } from '../types.js';
import { POLICY_DEFAULTS } from './defaults.js';
import { portPolicyOf, thresholdsOf } from './port-policy.js';

/**
 * Anchored RegExp for an interface-name glob: `*` any run (also empty), `?` one character,
 * everything else literal. Interface names have no `/`, so `*` needs no path semantics.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[\\^$.|+()[\]{}*?-]/g, '\\$&');
  }
  return new RegExp(re + '$', 's');
}

type Rule = Policy['ports'][number];

/**
 * A port's recovery: the rule's own keys over the top-level `recovery` over the built-in
 * defaults. The mode is the exception: uplink and mgmt ports stay manual unless their rule itself
 * writes `mode: auto`, so a site-wide `recovery: { mode: auto }` meant for guests never brings
 * an uplink back by itself (a tripped uplink comes back only by a human's hand).
 */
export function portRecovery(policy: Policy, rule: Rule): Recovery {
  const top = policy.recovery ?? POLICY_DEFAULTS.recovery;
  const own = rule.recovery ?? {};
  const inherited = rule.role === 'uplink' || rule.role === 'mgmt' ? 'manual' : top.mode;
  return { ...top, ...own, mode: own.mode ?? inherited };
}

function toPortPolicy(policy: Policy, name: string, rule: Rule, index: number): PortPolicy {
  const order = policy.breaker.shutOrder.indexOf(rule.role);
  return portPolicyOf({
    name,
    role: rule.role,
    protected: rule.protected,
    // Role first, then rule order; a role missing from shutOrder (mgmt by default) is never chosen.
    // The loader caps rules at 1000 so rule order never spills into the next role's ranks.
    shutRank: order < 0 ? Infinity : order * 1000 + index,
    thresholds: { ...policy.defaults, ...rule.thresholds },
    rule: index,
    dryRun: policy.dryRun || rule.dryRun === true,
    recovery: portRecovery(policy, rule),
  });
}

function firstMatch(policy: Policy, matchers: readonly RegExp[], name: string): PortPolicy | null {
  // An agent must never act on a port the operator did not name: a port no rule matches is not
  // watched at all (no catch-all default), so a new uplink or a storage NIC that appears on the
  // host later cannot be shut by a policy written before it existed. Names that cannot be Linux
  // interface names are refused outright, since the name later reaches argv and sysfs paths.
  if (!isValidIfName(name)) return null;
  for (let i = 0; i < matchers.length; i++) {
    const rule = policy.ports[i];
    if (rule && matchers[i]?.test(name)) return toPortPolicy(policy, name, rule, i);
  }
  return null;
}

/** The policy for port `name` from the first rule that matches it, or null: not watched. */
export function resolvePort(policy: Policy, name: string): PortPolicy | null {
  return firstMatch(policy, policy.ports.map((r) => globToRegExp(r.match)), name);
}

/** resolvePort for many names (globs compiled once); unmatched names are absent from the map. */
export function resolvePorts(policy: Policy, names: readonly string[]): Map<string, PortPolicy> {
  const matchers = policy.ports.map((r) => globToRegExp(r.match));
  const out = new Map<string, PortPolicy>();
  for (const name of names) {
    const p = firstMatch(policy, matchers, name);
    if (p) out.set(name, p);
  }
  return out;
}

/** One watched port as the policy sees it: the data behind `stormbreaker policy show`. */
export interface EffectivePort {
  port: string;
  role: Role;
  protected: boolean;
  /**
   * The rule that matched: its index in policy.ports, its glob, and its 1-based line in the file
   * that wrote it (for a policy directory, line is within that file; Policy does not record which).
   */
  rule: { index: number; line: number; match: string };
  /** The rule's thresholds merged over policy.defaults: what the detector will use. */
  thresholds: Thresholds;
  /** Which of those the rule itself wrote (the rest come from defaults). */
  fromRule: Array<keyof Thresholds>;
  /**
   * Lower is shut first among loop members; Infinity: never chosen (role not in shutOrder).
   * Note JSON.stringify turns Infinity into null.
   */
  shutRank: number;
  dryRun: boolean;
}

/** An ESXi host as the policy resolves it, its thresholds merged over policy.defaults. */
export interface EffectiveEsxiHost extends Omit<EsxiHostPolicy, 'thresholds'> {
  thresholds: Thresholds;
  /** Which of those the host entry itself wrote (the rest come from defaults). */
  fromHost: Array<keyof Thresholds>;
}

export interface EffectivePolicy {
  /** Watched ports, in the order the names were given (each name once). */
  ports: EffectivePort[];
  /** Valid interface names no rule matches: not watched, never shut. */
  unmatched: string[];
  /** Names that cannot be Linux interface names: never matched, by any rule (not in unmatched). */
  invalid: string[];
  /** The policy's `esxi` hosts, in file order; absent when the policy has no `esxi` section. */
  esxi?: EffectiveEsxiHost[];
}

/** The thresholds every port of an ESXi host is judged by: the host's own over policy.defaults. */
export function esxiHostThresholds(policy: Policy, host: EsxiHostPolicy): Thresholds {
  return thresholdsOf({ ...policy.defaults, ...host.thresholds });
}

/**
 * What the policy does with each of `names` (e.g. the host's interfaces): the rule that governs
 * it and the values that follow from it, exactly as resolvePorts would give the daemon. Pure.
 * A name given twice is reported once. With an `esxi` section, also its hosts as resolved (they
 * are not matched against `names`: their ports are named by the host, `esx1/vmnic0`).
 */
export function effectivePolicy(policy: Policy, names: readonly string[]): EffectivePolicy {
  const matchers = policy.ports.map((r) => globToRegExp(r.match));
  const out: EffectivePolicy = { ports: [], unmatched: [], invalid: [] };
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) continue;
    seen.add(name);
    if (!isValidIfName(name)) {
      out.invalid.push(name);
      continue;
    }
    const p = firstMatch(policy, matchers, name);
    const rule = p ? policy.ports[p.rule] : undefined;
    if (!p || !rule) {
      out.unmatched.push(name);
      continue;
    }
    out.ports.push({
      port: name,
      role: p.role,
      protected: p.protected,
      rule: { index: p.rule, line: rule.line, match: rule.match },
      thresholds: p.thresholds,
      fromRule: (Object.keys(p.thresholds) as Array<keyof Thresholds>).filter((k) => rule.thresholds[k] !== undefined),
      shutRank: p.shutRank,
      dryRun: p.dryRun,
    });
  }
  if (policy.esxi) {
    out.esxi = policy.esxi.hosts.map((h) => ({
      ...h,
      vmnics: h.vmnics.map((v) => ({ ...v })),
      portgroups: [...h.portgroups],
      protectedPortgroups: [...h.protectedPortgroups],
      actions: [...h.actions],
      thresholds: esxiHostThresholds(policy, h),
      fromHost: (Object.keys(policy.defaults) as Array<keyof Thresholds>).filter((k) => h.thresholds[k] !== undefined),
    }));
  }
  return out;
}
