// Stage 2 of loading: fill in defaults and check values against each other (clearPps < floodPps,
// activeMs <= idleMs, one rule per name, an esxi host's staleMs >= 2 x sampleMs). Works on a
// PolicyInput, whose values carry their own file:line:col, so a policy directory (merge.ts) is
// resolved once, with every error still blaming the file that wrote the value.
import { ESXI_ACTION_KINDS, type EsxiHostPolicy, type Policy, type Recovery, type Role, type Thresholds } from '../types.js';
import { ESXI_HOST_DEFAULTS, NOTIFY_DEFAULTS, POLICY_DEFAULTS, REACHABILITY_DEFAULTS } from './defaults.js';
import { PolicyError, type PolicyErrorCode } from './errors.js';
import { globToRegExp } from './match.js';
import type { EsxiHostInput, EsxiInput, Located, PolicyInput, Pos, RecoveryInput, RuleInput, ThresholdKey } from './schema.js';

type ThresholdSection = Partial<Record<ThresholdKey, Located<number>>>;
type ErrFn = (code: PolicyErrorCode, at: Pos & { file: string; field: string }, message: string) => void;

export interface Resolved {
  /** Built even when there are errors (defaults in place of bad values); use only if errors is empty. */
  policy: Policy;
  errors: PolicyError[];
}

export function resolvePolicy(input: PolicyInput, file: string, hash: string): Resolved {
  const errors: PolicyError[] = [];
  const err = (code: PolicyErrorCode, at: Pos & { file: string; field: string }, message: string): void => {
    errors.push(new PolicyError({ code, file: at.file, line: at.line, col: at.col, field: at.field, message }));
  };
  const bad = (field: string): boolean => isBad(input.bad, field);
  // Rule fields (`ports[0].role`) are numbered per file, so a rule is judged by its own file's set.
  const ruleBad = (rule: RuleInput, field: string): boolean => isBad(input.badByFile?.get(rule.file) ?? input.bad, field);
  // Load order of a value's file; 0 for a single file, where every value shares the file.
  const order = (l: Located<unknown>): number => input.files?.indexOf(l.file) ?? 0;
  const cx: Cx = { input, err, bad, ruleBad, order };

  if (!input.version && !bad('version')) {
    err('E_POLICY_MISSING', { ...input.root, file: input.file, field: 'version' }, 'required: add `version: 1` at the top');
  }

  const D = POLICY_DEFAULTS;
  const sampling = resolveSampling(cx);

  const defaults = mergeThresholds(D.defaults, input.defaults);
  checkClearBelowFlood(input.defaults, D.defaults, {}, 'the built-in default', 'defaults', bad, err, order);

  const ports = resolveRules(cx, defaults);

  const roles = (l: Located<Role[]> | undefined, d: readonly Role[]): Role[] => [...(l?.value ?? d)];
  const policy: Policy = {
    version: 1,
    file,
    hash,
    sampling,
    defaults,
    ports,
    breaker: {
      maxShuts: input.breaker.maxShuts?.value ?? D.breaker.maxShuts,
      windowMs: input.breaker.windowMs?.value ?? D.breaker.windowMs,
      settleMs: input.breaker.settleMs?.value ?? D.breaker.settleMs,
      shutOrder: roles(input.breaker.shutOrder, D.breaker.shutOrder),
      floodShutRoles: roles(input.breaker.floodShutRoles, D.breaker.floodShutRoles),
    },
    recovery: { ...D.recovery, ...recoveryWritten(input.recovery) },
    actions: {
      timeoutMs: input.actions.timeoutMs?.value ?? D.actions.timeoutMs,
      retries: input.actions.retries?.value ?? D.actions.retries,
    },
    fdb: { enabled: input.fdb.enabled?.value ?? D.fdb.enabled },
    dryRun: input.dryRun?.value ?? D.dryRun,
  };
  const reach = input.reachability;
  if (reach.target) {
    policy.reachability = {
      target: reach.target.value,
      timeoutMs: reach.timeoutMs?.value ?? REACHABILITY_DEFAULTS.timeoutMs,
      tries: reach.tries?.value ?? REACHABILITY_DEFAULTS.tries,
    };
  }
  if (input.metrics.listen) policy.metrics = { ...input.metrics.listen.value };
  if (input.esxi) {
    const esxi = input.esxi;
    // esxi comes whole from one file (merge.ts), so its fields are judged by that file's bad set.
    const esxiBad = (f: string): boolean => isBad(input.badByFile?.get(esxi.file) ?? input.bad, f);
    policy.esxi = { hosts: esxi.hosts.map((h) => resolveEsxiHost(h, esxi, esxiBad, err)) };
    if (!bad('defaults')) {
      for (const h of esxi.hosts) {
        const fieldBad = (f: string): boolean => esxiBad(f) || bad(`defaults.${f.slice(f.lastIndexOf('.') + 1)}`);
        checkClearBelowFlood(h.thresholds, defaults, input.defaults, 'from defaults', `${h.field}.thresholds`, fieldBad, err, order);
      }
    }
  }
  const n = input.notify;
  if (n.webhook || n.hookArgv) {
    policy.notify = {
      ...(n.webhook ? { webhook: n.webhook.value } : {}),
      ...(n.hookArgv ? { hookArgv: [...n.hookArgv.value] } : {}),
      timeoutMs: n.timeoutMs?.value ?? NOTIFY_DEFAULTS.timeoutMs,
      tries: n.tries?.value ?? NOTIFY_DEFAULTS.tries,
    };
  }
  return { policy, errors };
}

/** sampling, with activeMs <= idleMs. */
function resolveSampling({ input, err, bad, order }: Cx): Policy['sampling'] {
  const D = POLICY_DEFAULTS;
  const sampling = {
    idleMs: input.sampling.idleMs?.value ?? D.sampling.idleMs,
    activeMs: input.sampling.activeMs?.value ?? D.sampling.activeMs,
    activeHoldMs: input.sampling.activeHoldMs?.value ?? D.sampling.activeHoldMs,
    realtimePriority: input.sampling.realtimePriority?.value ?? D.sampling.realtimePriority,
  };
  // Sampling faster while quiet than while warm is backwards: the active rate is the one that
  // bounds reaction time.
  if (!bad('sampling.idleMs') && !bad('sampling.activeMs') && sampling.activeMs > sampling.idleMs) {
    const { activeMs, idleMs } = input.sampling;
    // Blame activeMs, unless idleMs was written in a later file of a directory: that file made the conflict.
    if (activeMs && !(idleMs && order(idleMs) > order(activeMs))) {
      err('E_POLICY_RANGE', activeMs, `must be <= sampling.idleMs (${sampling.idleMs}${idleMs ? elsewhere(idleMs, activeMs) : ', the default'})`);
    } else if (idleMs) {
      err('E_POLICY_RANGE', idleMs, `must be >= sampling.activeMs (${sampling.activeMs}${activeMs ? elsewhere(activeMs, idleMs) : ', the default'})`);
    }
  }
  return sampling;
}

/** The port rules in file order: duplicates and shadowed literals reported, thresholds checked. */
function resolveRules({ input, err, bad, ruleBad, order }: Cx, defaults: Thresholds): Policy['ports'] {
  const ports: Policy['ports'] = [];
  const firstByMatch = new Map<string, RuleInput>();
  const earlier: Array<{ rule: RuleInput; re: RegExp }> = [];
  for (const rule of input.ports ?? []) {
    const m = rule.match.value;
    const dup = firstByMatch.get(m);
    if (dup) {
      // Across the files of a directory, name the other file: both places are needed to fix it.
      const first = dup.file === rule.file ? `${dup.field} (line ${dup.line})` : `${dup.field} at ${dup.match.file}:${dup.match.line}:${dup.match.col}`;
      err('E_POLICY_DUPLICATE', rule.match, `same match as ${first}; the first rule wins, so this one never applies`);
    } else {
      firstByMatch.set(m, rule);
      // A literal name that an earlier glob already matches can never apply: almost always an
      // ordering mistake (e.g. `vm*` above `vmgmt0`), so say so rather than ignore the rule.
      if (!/[*?]/.test(m)) {
        const shadow = earlier.find((e) => e.re.test(m));
        if (shadow) {
          const s = shadow.rule;
          const g = JSON.stringify(s.match.value);
          err(
            'E_POLICY_VALUE',
            rule.match,
            s.file === rule.file
              ? `never applies: ${s.field} (${g}, line ${s.line}) matches ${m} first; move this rule above it`
              : `never applies: ${s.field} (${g} at ${s.match.file}:${s.match.line}:${s.match.col}) matches ${m} first; earlier files' rules win, so move this rule into that file above it`,
          );
        }
      }
      earlier.push({ rule, re: globToRegExp(m) });
    }
    if (!bad('defaults')) {
      const fieldBad = (f: string): boolean => ruleBad(rule, f) || bad(`defaults.${f.slice(f.lastIndexOf('.') + 1)}`);
      checkClearBelowFlood(rule.thresholds, defaults, input.defaults, 'from defaults', `${rule.field}.thresholds`, fieldBad, err, order);
    }
    const thresholds: Partial<Thresholds> = {};
    for (const [k, v] of Object.entries(rule.thresholds) as Array<[ThresholdKey, Located<number>]>) thresholds[k] = v.value;
    const out: Policy['ports'][number] = {
      match: m,
      role: rule.role.value,
      // Management ports are how the operator reaches the host; protected unless the rule says otherwise.
      protected: rule.protected?.value ?? rule.role.value === 'mgmt',
      thresholds,
      line: rule.line,
    };
    if (rule.dryRun) out.dryRun = rule.dryRun.value;
    const rec = recoveryWritten(rule.recovery);
    if (Object.keys(rec).length > 0) out.recovery = rec;
    ports.push(out);
  }
  return ports;
}

/** What every part of resolvePolicy reads: the input, where errors go, and which fields were bad. */
interface Cx {
  input: PolicyInput;
  err: ErrFn;
  bad(field: string): boolean;
  ruleBad(rule: RuleInput, field: string): boolean;
  order(l: Located<unknown>): number;
}

/**
 * One `esxi.hosts[]` entry with its defaults, and the checks between its own values: staleMs
 * against sampleMs, and a quarantineVlan whenever portgroup-quarantine may be used. Thresholds
 * stay partial: they are merged over the policy's `defaults` where they are used.
 */
function resolveEsxiHost(h: EsxiHostInput, esxi: EsxiInput, bad: (field: string) => boolean, err: ErrFn): EsxiHostPolicy {
  const D = ESXI_HOST_DEFAULTS;
  const n = h.num;
  const sampleMs = n.sampleMs?.value ?? D.sampleMs;
  const staleMs = n.staleMs?.value ?? D.staleMs;
  // One block arriving a little late must not mark the host stale (and stop judging its ports).
  if (!bad(`${h.field}.sampleMs`) && !bad(`${h.field}.staleMs`) && staleMs < 2 * sampleMs) {
    if (n.staleMs) err('E_POLICY_RANGE', n.staleMs, `must be >= 2 x sampleMs (${2 * sampleMs}; sampleMs is ${sampleMs}${n.sampleMs ? '' : ', the default'})`);
    else if (n.sampleMs) err('E_POLICY_RANGE', n.sampleMs, `must be <= staleMs / 2 (${staleMs / 2}; staleMs is ${staleMs}, the default): write a larger staleMs too`);
  }
  const written = h.actions?.value;
  // Kept in ESXI_ACTION_KINDS order (smallest scope first) whatever order the file lists them in.
  const actions = ESXI_ACTION_KINDS.filter((k) => (written ?? D.actions).includes(k));
  const quarantineVlan = h.quarantineVlan?.value ?? null;
  if (quarantineVlan === null && actions.includes('portgroup-quarantine') && !bad(`${h.field}.actions`) && !bad(`${h.field}.quarantineVlan`)) {
    const at = h.quarantineVlan ?? { file: esxi.file, line: h.line, col: h.col, field: `${h.field}.quarantineVlan` };
    err(
      'E_POLICY_MISSING',
      at,
      `required when actions lists portgroup-quarantine${written ? '' : ' (the default lists every action)'}: the VLAN (1-4094) a quarantined port group is moved to; or leave portgroup-quarantine out of actions`,
    );
  }
  const thresholds: Partial<Thresholds> = {};
  for (const [k, v] of Object.entries(h.thresholds) as Array<[ThresholdKey, Located<number>]>) thresholds[k] = v.value;
  return {
    name: h.name.value,
    address: h.address.value,
    port: n.port?.value ?? D.port,
    user: h.user?.value ?? D.user,
    identityFile: h.identityFile.value,
    knownHostsFile: h.knownHostsFile.value,
    sampleMs,
    staleMs,
    connectTimeoutMs: n.connectTimeoutMs?.value ?? D.connectTimeoutMs,
    commandTimeoutMs: n.commandTimeoutMs?.value ?? D.commandTimeoutMs,
    counters: h.counters?.value ?? D.counters,
    fuse: h.fuse?.value ?? D.fuse,
    fuseSampleMs: n.fuseSampleMs?.value ?? D.fuseSampleMs,
    fuseLeaseMs: n.fuseLeaseMs?.value ?? D.fuseLeaseMs,
    fuseBudget: n.fuseBudget?.value ?? D.fuseBudget,
    // A management NIC is how the operator (and this agent, over SSH) reaches the host: protected
    // unless the entry says otherwise, as for a local mgmt rule.
    vmnics: h.vmnics.value.map((v) => ({ name: v.name.value, role: v.role.value, protected: v.protected?.value ?? v.role.value === 'mgmt' })),
    portgroups: [...(h.portgroups?.value ?? D.portgroups)],
    protectedPortgroups: [...(h.protectedPortgroups?.value ?? D.protectedPortgroups)],
    watchBridgingVms: h.watchBridgingVms?.value ?? D.watchBridgingVms,
    actions,
    quarantineVlan,
    thresholds,
    line: h.line,
  };
}

/** The values a `recovery` mapping wrote, without positions. */
function recoveryWritten(r: RecoveryInput): Partial<Recovery> {
  const out: Partial<Recovery> = {};
  if (r.mode) out.mode = r.mode.value;
  if (r.cooldownMs) out.cooldownMs = r.cooldownMs.value;
  if (r.probeMs) out.probeMs = r.probeMs.value;
  if (r.backoff) out.backoff = r.backoff.value;
  if (r.maxTries) out.maxTries = r.maxTries.value;
  return out;
}

function mergeThresholds(base: Thresholds, written: ThresholdSection): Thresholds {
  const out = { ...base };
  for (const [k, v] of Object.entries(written) as Array<[ThresholdKey, Located<number>]>) out[k] = v.value;
  return out;
}

/**
 * clearPps must stay below floodPps after merging, or a hot port could never cool (or would be
 * hot and cool at once). Blame the value this section wrote: clearPps if written, else floodPps;
 * when a directory's files wrote both, the one from the later file (it made the conflict).
 * `baseAt` says where the base values were written, if anywhere, for the message.
 */
function checkClearBelowFlood(
  written: ThresholdSection,
  base: Thresholds,
  baseAt: ThresholdSection,
  baseName: string,
  section: string,
  bad: (field: string) => boolean,
  err: ErrFn,
  order: (l: Located<unknown>) => number,
): void {
  if (bad(`${section}.clearPps`) || bad(`${section}.floodPps`)) return;
  const { clearPps, floodPps } = written;
  if (!clearPps && !floodPps) return;
  const clear = clearPps?.value ?? base.clearPps;
  const flood = floodPps?.value ?? base.floodPps;
  if (clear < flood) return;
  if (clearPps && !(floodPps && order(floodPps) > order(clearPps))) {
    const from = floodPps ? elsewhere(floodPps, clearPps) : `, ${baseName}${elsewhere(baseAt.floodPps, clearPps)}`;
    err('E_POLICY_RANGE', clearPps, `must be < floodPps (${flood}${from})`);
  } else if (floodPps) {
    const from = clearPps ? elsewhere(clearPps, floodPps) : `, ${baseName}${elsewhere(baseAt.clearPps, floodPps)}`;
    err('E_POLICY_RANGE', floodPps, `must be > clearPps (${clear}${from})`);
  }
}

/** `, set at file:line:col` when `other` was written in another file than `here`, else nothing. */
function elsewhere(other: Located<unknown> | undefined, here: Located<unknown>): string {
  return other && other.file !== here.file ? `, set at ${other.file}:${other.line}:${other.col}` : '';
}

/**
 * True when field or any enclosing field (`ports[2]` for `ports[2].role`, '' for the document)
 * was invalid.
 */
export function isBad(bad: ReadonlySet<string>, field: string): boolean {
  if (bad.has('')) return true;
  let f = field;
  for (;;) {
    if (bad.has(f)) return true;
    const i = Math.max(f.lastIndexOf('.'), f.lastIndexOf('['));
    if (i <= 0) return false;
    f = f.slice(0, i);
  }
}
