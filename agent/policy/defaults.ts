// The product's tuned defaults: everything in a policy except `version` is optional and falls back
// to these. Kept apart from the loader so the CLI, docs and tests can show the same numbers.
import { ESXI_ACTION_KINDS, type EsxiHostPolicy, type Policy, type Recovery, type Role, type Thresholds } from '../types.js';

export interface PolicyDefaults {
  sampling: Policy['sampling'];
  defaults: Thresholds;
  breaker: Policy['breaker'];
  recovery: Recovery;
  actions: Policy['actions'];
  fdb: Policy['fdb'];
  dryRun: boolean;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

const SHUT_ORDER: Role[] = ['vm', 'other', 'uplink'];
const FLOOD_SHUT_ROLES: Role[] = ['vm', 'other'];

/**
 * Frozen; copy before handing out (the loader does). `mgmt` is deliberately absent from
 * shutOrder and floodShutRoles: a management port is the operator's way back in, so it is never
 * chosen unless a policy names it explicitly (and mgmt rules default to protected: true besides).
 */
export const POLICY_DEFAULTS: Readonly<PolicyDefaults> = deepFreeze({
  // 10 ms idle keeps the agent at ~2% of a core; 1 ms while warm breaks a loop in a few ms
  // (LAB-FACTS: a 1 ms timer really ticks at ~1.1 ms).
  sampling: { idleMs: 100, activeMs: 1, activeHoldMs: 2000, realtimePriority: 10 },
  // A lab loop reaches 80-130k pps per port within 1 ms; a single host can send ~175k pps of
  // broadcast, which is why thresholds alone never decide a loop (see detect/).
  defaults: {
    floodPps: 20000,
    clearPps: 5000,
    rxPps: 60000,
    broadcastShare: 0.5,
    holdSamples: 2,
    floodHoldMs: 300,
    baselineFactor: 4,
  },
  breaker: {
    maxShuts: 2,
    windowMs: 10000,
    settleMs: 30,
    shutOrder: SHUT_ORDER,
    floodShutRoles: FLOOD_SHUT_ROLES,
  },
  // Manual: a tripped port comes back only by a human's hand unless the operator writes
  // `mode: auto` (and an uplink or mgmt rule only if that rule itself says auto). The numbers are
  // what `auto` uses: a first probe after 30 s, 2 s of watching, then 60 s, 120 s, then a human.
  recovery: { mode: 'manual', cooldownMs: 30000, probeMs: 2000, backoff: 2, maxTries: 3 },
  actions: { timeoutMs: 2000, retries: 2 },
  fdb: { enabled: true },
  dryRun: false,
});

/**
 * Defaults of the optional top-level `reachability` (off unless a target is written, so not part
 * of POLICY_DEFAULTS). 300 ms per echo x 2: a gateway on the same segment answers in well under
 * a millisecond, and a cut management path stays cut at most ~0.6 s before it is undone.
 */
export const REACHABILITY_DEFAULTS: Readonly<{ timeoutMs: number; tries: number }> = Object.freeze({ timeoutMs: 300, tries: 2 });

/**
 * Defaults of the optional top-level `notify` (off unless a webhook or hookArgv is written). The
 * same numbers as agent/notify/webhook.ts uses: 2 s per try, 3 tries.
 */
export const NOTIFY_DEFAULTS: Readonly<{ timeoutMs: number; tries: number }> = Object.freeze({ timeoutMs: 2000, tries: 3 });
/** Most hookArgv items: a program and a few arguments; bounds what a policy can make the agent spawn. */
export const MAX_HOOK_ARGV = 64;

/** The keys of an `esxi.hosts[]` entry that have a default (the rest are required, or null when absent). */
export type EsxiHostDefaults = Pick<
  EsxiHostPolicy,
  'port' | 'user' | 'sampleMs' | 'staleMs' | 'connectTimeoutMs' | 'commandTimeoutMs' | 'counters' | 'fuse' | 'fuseSampleMs' | 'fuseLeaseMs' | 'fuseBudget' | 'portgroups' | 'protectedPortgroups' | 'watchBridgingVms' | 'actions'
>;

/**
 * Defaults of an `esxi.hosts[]` entry (the section is off unless hosts are written, so not part of
 * POLICY_DEFAULTS). Frozen; the loader copies the lists. 100 ms samples: one counter block over
 * SSH costs a few ms of the host's CPU, and ESXi storms last seconds, not milliseconds. staleMs
 * 1000 = ten missed blocks. "Management Network" is ESXi's own name for the vmkernel port group
 * the host is managed through (and this agent reaches it by): never quarantined. Every action
 * kind is allowed by default, so portgroup-quarantine needs a quarantineVlan unless left out.
 */
export const ESXI_HOST_DEFAULTS: Readonly<EsxiHostDefaults> = deepFreeze({
  port: 22,
  user: 'root',
  sampleMs: 100,
  staleMs: 1000,
  connectTimeoutMs: 5000,
  commandTimeoutMs: 5000,
  counters: 'vsish',
  // The fuse: 15 ms samples (issue 12 asks 10-20 ms); a 10 s lease outlives a storm that cuts
  // the agent's link long enough to cut it, and ends soon after; two cuts per arming, as
  // breaker.maxShuts' default.
  fuse: 'armed',
  fuseSampleMs: 15,
  fuseLeaseMs: 10000,
  fuseBudget: 2,
  portgroups: [],
  protectedPortgroups: ['Management Network'],
  watchBridgingVms: true,
  actions: [...ESXI_ACTION_KINDS],
} satisfies EsxiHostDefaults);
/** Most hosts in `esxi.hosts`: one SSH connection and sampler each, all from this one agent. */
export const MAX_ESXI_HOSTS = 64;
/** Most vmnics per host (a large ESXi host has a few dozen). */
export const MAX_ESXI_VMNICS = 64;
/** Most names in each of portgroups / protectedPortgroups per host. */
export const MAX_ESXI_PORTGROUPS = 256;

/** Only `version` is required; it must equal this. */
export const POLICY_VERSION = 1;
/** Files above this are rejected before parsing (a policy is a few KiB; this bounds parse time). */
export const MAX_POLICY_BYTES = 1024 * 1024;
/**
 * Most policy files read from one directory. A policy directory is a handful of files (base,
 * site, host); this bounds work and memory (each file may be up to MAX_POLICY_BYTES).
 */
export const MAX_POLICY_FILES = 100;
/** Alias dereferences allowed per file: plenty for sharing a thresholds block, far too few for an alias bomb. */
export const MAX_ALIAS_COUNT = 100;
/** Flow collections (`[`/`{`) nested deeper than this are rejected before the YAML parser sees them. */
export const MAX_FLOW_DEPTH = 32;
/**
 * YAML items (content lines plus flow `[`, `{`, `,`) in one policy file. MAX_PORT_RULES rules of
 * a dozen lines each fit many times over; the parser's cost is bounded by it (see load.ts).
 */
export const MAX_POLICY_NODES = 20_000;
/**
 * Longest time value accepted, ms. Node's timers clamp any delay above 2^31-1 ms to 1 ms (with
 * only a warning), so a larger value would turn "wait a month" into "retry at once".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Most port rules per policy. shutRank is roleIndex * 1000 + ruleIndex (see match.ts), so rule
 * 1000 would rank like the next role's first rule.
 */
export const MAX_PORT_RULES = 1000;
