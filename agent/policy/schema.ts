// Stage 1 of loading: walk one file's YAML syntax tree and check every value on its own (type,
// range, allowed keys), remembering where each was written. Nothing here knows defaults or
// compares two fields: that is resolve.ts; merge.ts combines several files' inputs first (a policy
// directory), and the cross-checks still blame each value's own file:line:col.
//
// The `esxi` section (issue 4) is read here like the rest; what it may contain is documented in
// policies/schema.json and at EsxiHostPolicy (types.ts).
//
// The tree is walked directly instead of calling doc.toJS(): toJS loses positions, and walking
// lets us count alias dereferences ourselves (MAX_ALIAS_COUNT) so an alias bomb costs nothing.
import { isIP } from 'node:net';
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter } from 'yaml';
import { ESXI_ACTION_KINDS, ESXI_FUSE_MODES, ROLES, type EsxiActionKind, type EsxiCounterPath, type EsxiFuseMode, type RecoveryMode, type Role, type Thresholds } from '../types.js';
import { checkPortgroupName } from '../host/names.js';
import { isLoopbackHost } from '../host/address.js';
import {
  MAX_ALIAS_COUNT,
  MAX_ESXI_HOSTS,
  MAX_ESXI_PORTGROUPS,
  MAX_ESXI_VMNICS,
  MAX_HOOK_ARGV,
  MAX_PORT_RULES,
  MAX_TIMER_MS,
} from './defaults.js';
import { PolicyError, type PolicyErrorCode } from './errors.js';

export interface Pos {
  line: number;
  col: number;
}

/** A value together with where it was written. */
export interface Located<T> extends Pos {
  value: T;
  file: string;
  field: string;
}

type Section<K extends string> = Partial<Record<K, Located<number>>>;
export type ThresholdKey = keyof Thresholds;
export type SamplingKey = 'idleMs' | 'activeMs' | 'activeHoldMs' | 'realtimePriority';
export type RecoveryNumKey = 'cooldownMs' | 'probeMs' | 'backoff' | 'maxTries';
/** What one `recovery` mapping wrote (top level or in a rule). */
export type RecoveryInput = Section<RecoveryNumKey> & { mode?: Located<RecoveryMode> };

export interface RuleInput extends Pos {
  file: string;
  /** `ports[i]`, for messages. */
  field: string;
  match: Located<string>;
  role: Located<Role>;
  protected?: Located<boolean>;
  thresholds: Section<ThresholdKey>;
  dryRun?: Located<boolean>;
  recovery: RecoveryInput;
}

export type EsxiNumKey = 'port' | 'sampleMs' | 'staleMs' | 'connectTimeoutMs' | 'commandTimeoutMs' | 'fuseSampleMs' | 'fuseLeaseMs' | 'fuseBudget';

export interface EsxiVmnicInput {
  name: Located<string>;
  role: Located<Role>;
  protected?: Located<boolean>;
}

/** One `esxi.hosts[i]` entry; present only when its required keys were all valid. */
export interface EsxiHostInput extends Pos {
  /** `esxi.hosts[i]`, for messages. */
  field: string;
  name: Located<string>;
  address: Located<string>;
  identityFile: Located<string>;
  knownHostsFile: Located<string>;
  vmnics: Located<EsxiVmnicInput[]>;
  num: Section<EsxiNumKey>;
  user?: Located<string>;
  counters?: Located<EsxiCounterPath>;
  fuse?: Located<EsxiFuseMode>;
  portgroups?: Located<string[]>;
  protectedPortgroups?: Located<string[]>;
  watchBridgingVms?: Located<boolean>;
  actions?: Located<EsxiActionKind[]>;
  /** value null: written as null (YAML `null`, `~` or nothing), the same as absent. */
  quarantineVlan?: Located<number | null>;
  thresholds: Section<ThresholdKey>;
}

/** What one file wrote under `esxi`. A directory takes it whole from the last file that writes it. */
export interface EsxiInput {
  /** The file that wrote it: its fields (`esxi.hosts[0]...`) are judged by that file's bad set. */
  file: string;
  /** Hosts whose required keys were valid, in file order, names unique. */
  hosts: EsxiHostInput[];
}

/** What one file wrote, value by value, with positions. Only valid values are present. */
export interface PolicyInput {
  file: string;
  /** Where the top-level mapping starts (missing required keys are reported here). */
  root: Pos;
  version?: Located<number>;
  sampling: Section<SamplingKey>;
  defaults: Section<ThresholdKey>;
  breaker: {
    maxShuts?: Located<number>;
    windowMs?: Located<number>;
    settleMs?: Located<number>;
    shutOrder?: Located<Role[]>;
    floodShutRoles?: Located<Role[]>;
  };
  recovery: RecoveryInput;
  actions: { timeoutMs?: Located<number>; retries?: Located<number> };
  fdb: { enabled?: Located<boolean> };
  reachability: { target?: Located<string>; timeoutMs?: Located<number>; tries?: Located<number> };
  metrics: { listen?: Located<{ host: string; port: number }> };
  notify: { webhook?: Located<string>; hookArgv?: Located<string[]>; timeoutMs?: Located<number>; tries?: Located<number> };
  /** Undefined when the file has no `esxi` key; present (possibly with no hosts) when it has one. */
  esxi?: EsxiInput;
  dryRun?: Located<boolean>;
  /** Undefined when the file has no `ports` key; rules with errors are left out. */
  ports?: RuleInput[];
  /** Fields that were written but invalid: cross-checks involving them are skipped (no cascades). */
  bad: Set<string>;
  /**
   * Set only on a merged (directory) input, see merge.ts. `files` is the load order, so a
   * cross-check between values from two files can blame the later one (it made the conflict);
   * `badByFile` holds each file's own bad set, since rule fields (`ports[0]...`) are per file.
   */
  files?: readonly string[];
  badByFile?: ReadonlyMap<string, ReadonlySet<string>>;
}

/** A PolicyInput that wrote nothing yet: every section present and empty. */
export function emptyPolicyInput(file: string, root: Pos, bad: Set<string>): PolicyInput {
  return { file, root, sampling: {}, defaults: {}, breaker: {}, recovery: {}, actions: {}, fdb: {}, reachability: {}, metrics: {}, notify: {}, bad };
}

const ROOT_KEYS = ['version', 'sampling', 'defaults', 'breaker', 'recovery', 'actions', 'fdb', 'reachability', 'metrics', 'notify', 'esxi', 'dryRun', 'ports'] as const;
const SAMPLING_KEYS = ['idleMs', 'activeMs', 'activeHoldMs', 'realtimePriority'] as const;
const THRESHOLD_KEYS = ['floodPps', 'clearPps', 'rxPps', 'broadcastShare', 'holdSamples', 'floodHoldMs', 'baselineFactor'] as const;
const BREAKER_KEYS = ['maxShuts', 'windowMs', 'settleMs', 'shutOrder', 'floodShutRoles'] as const;
const ACTIONS_KEYS = ['timeoutMs', 'retries'] as const;
const FDB_KEYS = ['enabled'] as const;
const REACHABILITY_KEYS = ['target', 'timeoutMs', 'tries'] as const;
const METRICS_KEYS = ['listen'] as const;
const NOTIFY_KEYS = ['webhook', 'hookArgv', 'timeoutMs', 'tries'] as const;
const ESXI_KEYS = ['hosts'] as const;
const ESXI_HOST_KEYS = [
  'name',
  'address',
  'port',
  'user',
  'identityFile',
  'knownHostsFile',
  'sampleMs',
  'staleMs',
  'connectTimeoutMs',
  'commandTimeoutMs',
  'counters',
  'fuse',
  'fuseSampleMs',
  'fuseLeaseMs',
  'fuseBudget',
  'vmnics',
  'portgroups',
  'protectedPortgroups',
  'watchBridgingVms',
  'actions',
  'quarantineVlan',
  'thresholds',
] as const;
const ESXI_VMNIC_KEYS = ['name', 'role', 'protected'] as const;
const ESXI_COUNTER_PATHS: readonly EsxiCounterPath[] = ['vsish', 'esxcli'];
/** A host's short name: the prefix of its port names (`esx1/vmnic0`), so no `/` and nothing to quote. */
export const ESXI_HOST_NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** A Unix login name (the usual useradd rule); reaches ssh argv as `-l USER`. */
export const ESXI_USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/;
export const ESXI_VMNIC_RE = /^vmnic[0-9]{1,3}$/;
/**
 * identityFile / knownHostsFile: an absolute path of plain characters. ssh expands `%` tokens
 * and `${VAR}` in both (ssh_config(5) TOKENS / ENVIRONMENT VARIABLES), and splits an `-o`
 * value on whitespace and quotes (UserKnownHostsFile takes a list), so any of those would make
 * ssh read a different file than the one written; they are refused rather than escaped.
 */
export const ESXI_PATH_RE = /^\/[A-Za-z0-9._+,:=@~\/-]{1,4095}$/;
/**
 * A dotted-quad IPv4 address, each octet 0-255 without leading zeros (policies/schema.json has
 * the same pattern). Names are not accepted: resolving one would need DNS, which may be exactly
 * what a storm or the action just cut.
 */
export const IPV4_RE = /^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const RULE_KEYS = ['match', 'role', 'protected', 'thresholds', 'dryRun', 'recovery'] as const;
const RECOVERY_KEYS = ['mode', 'cooldownMs', 'probeMs', 'backoff', 'maxTries'] as const;
const RECOVERY_MODES: readonly RecoveryMode[] = ['manual', 'auto'];

/**
 * Every key the walker accepts, by section. Exported so policies/schema.json can be checked
 * against the loader (test/unit/policy-dir.test.ts): the two must list exactly the same keys.
 */
export const POLICY_KEYS = {
  root: ROOT_KEYS,
  sampling: SAMPLING_KEYS,
  defaults: THRESHOLD_KEYS,
  breaker: BREAKER_KEYS,
  recovery: RECOVERY_KEYS,
  actions: ACTIONS_KEYS,
  fdb: FDB_KEYS,
  reachability: REACHABILITY_KEYS,
  metrics: METRICS_KEYS,
  notify: NOTIFY_KEYS,
  esxi: ESXI_KEYS,
  esxiHost: ESXI_HOST_KEYS,
  esxiVmnic: ESXI_VMNIC_KEYS,
  esxiThresholds: THRESHOLD_KEYS,
  rule: RULE_KEYS,
  thresholds: THRESHOLD_KEYS,
  ruleRecovery: RECOVERY_KEYS,
} as const;

/** Interface name or glob: the Linux name alphabet plus the two glob characters. */
const MATCH_RE = /^[A-Za-z0-9_.:@*?-]{1,15}$/;

interface NumSpec {
  int?: boolean;
  /** Lower bound; exclusive when gt is true. */
  min?: number;
  gt?: boolean;
  max?: number;
}
const TIME: NumSpec = { min: 0, gt: true, max: MAX_TIMER_MS };
// 10^9 frames/s is above any port (400GbE at 64-byte frames is ~595M): a larger rate is a typo.
const PPS: NumSpec = { min: 0, gt: true, max: 1e9 };
// SCHED_FIFO priorities are 1-99; 0 means normal scheduling.
const PRIORITY: NumSpec = { int: true, min: 0, max: 99 };
const THRESHOLD_SPECS: Record<ThresholdKey, NumSpec> = {
  floodPps: PPS,
  clearPps: PPS,
  rxPps: PPS,
  broadcastShare: { min: 0, max: 1 },
  holdSamples: { int: true, min: 1 },
  floodHoldMs: { min: 0, max: MAX_TIMER_MS },
  // Below 1 the baseline check would call a port's normal traffic a flood.
  baselineFactor: { min: 1 },
};
const ESXI_NUM_SPECS: Record<EsxiNumKey, NumSpec> = {
  port: { int: true, min: 1, max: 65535 },
  // Faster than 10 ms is more SSH round trips than a host's CPU should give us; slower than 10 s
  // is too late to matter for a storm.
  sampleMs: { min: 10, max: 10000 },
  // Resolve also wants staleMs >= 2 x sampleMs; 20 is that for the fastest sampleMs.
  staleMs: { min: 20, max: 60000 },
  connectTimeoutMs: { min: 100, max: 60000 },
  commandTimeoutMs: { min: 100, max: 60000 },
  // The fuse runs on the host's CPU: faster than 5 ms is more than a host should give; slower
  // than 100 ms is what the shell loop already does.
  fuseSampleMs: { min: 5, max: 100 },
  fuseLeaseMs: { min: 1000, max: 600000 },
  fuseBudget: { int: true, min: 0, max: 16 },
};
// VLAN 0 is the untagged native VLAN and 4095 trunks every VLAN: neither isolates (names.ts isQuarantineVlan).
const QUARANTINE_VLAN: NumSpec = { int: true, min: 1, max: 4094 };

const RECOVERY_SPECS: Record<RecoveryNumKey, NumSpec> = {
  cooldownMs: TIME,
  probeMs: TIME,
  // Below 1 each failed probe would come sooner than the last: the opposite of backing off.
  backoff: { min: 1, max: 100 },
  maxTries: { int: true, min: 1, max: 100 },
};

/** A child of the tree after alias resolution, with where it sits. */
interface Entry {
  node: unknown;
  pos: Pos;
  field: string;
}

/** A list as readList read it: the valid items, and whether every item was. */
interface ListRead<T> {
  at: Entry;
  items: Array<Located<T>>;
  ok: boolean;
}

export class SchemaWalker {
  readonly errors: PolicyError[] = [];
  private aliases = 0;
  private aliasBombReported = false;
  private readonly bad = new Set<string>();

  constructor(
    private readonly file: string,
    private readonly doc: Document.Parsed,
    private readonly lc: LineCounter,
  ) {}

  /** Walk the document's top-level node into a PolicyInput; errors accumulate in this.errors. */
  readPolicy(): PolicyInput {
    const contents = this.doc.contents;
    const root = this.posOf(contents, { line: 1, col: 1 });
    const input = emptyPolicyInput(this.file, root, this.bad);
    const topMap = this.readMap({ node: contents, pos: root, field: '' }, ROOT_KEYS, '(document)');
    if (!topMap) return input;
    const top = topMap.entries;

    const version = top.get('version');
    if (version) {
      const r = this.deref(version);
      if (r && isScalar(r.node) && typeof r.node.value === 'number') {
        if (r.node.value === 1) input.version = this.located(r, 1);
        else this.markBad(this.fail('E_POLICY_VERSION', r, `unsupported version ${r.node.value} (this agent understands version 1)`));
      } else if (r) {
        this.markBad(this.fail('E_POLICY_TYPE', r, `must be the number 1, ${this.describe(r.node)}`));
      } else {
        this.markBad(version);
      }
    }
    const sampling = this.readSection(top.get('sampling'), SAMPLING_KEYS);
    if (sampling) for (const k of SAMPLING_KEYS) this.setNum(input.sampling, k, sampling.get(k), k === 'realtimePriority' ? PRIORITY : TIME);
    input.defaults = this.readThresholds(top.get('defaults'));

    const breaker = this.readSection(top.get('breaker'), BREAKER_KEYS);
    if (breaker) {
      this.setNum(input.breaker, 'maxShuts', breaker.get('maxShuts'), { int: true, min: 1 });
      this.setNum(input.breaker, 'windowMs', breaker.get('windowMs'), TIME);
      this.setNum(input.breaker, 'settleMs', breaker.get('settleMs'), TIME);
      const so = breaker.get('shutOrder');
      // An empty shutOrder would make every loop member unshuttable; dryRun is the way to say that.
      if (so) input.breaker.shutOrder = this.readRoles(so, true);
      const fr = breaker.get('floodShutRoles');
      if (fr) input.breaker.floodShutRoles = this.readRoles(fr, false);
    }
    input.recovery = this.readRecovery(top.get('recovery'));
    const actions = this.readSection(top.get('actions'), ACTIONS_KEYS);
    if (actions) {
      this.setNum(input.actions, 'timeoutMs', actions.get('timeoutMs'), TIME);
      // Every retry is another timeoutMs with the storm still running.
      this.setNum(input.actions, 'retries', actions.get('retries'), { int: true, min: 0, max: 100 });
    }
    const fdb = this.readSection(top.get('fdb'), FDB_KEYS);
    if (fdb) {
      const en = fdb.get('enabled');
      if (en) input.fdb.enabled = this.readBool(en);
    }
    const reach = this.readSection(top.get('reachability'), REACHABILITY_KEYS);
    if (reach) {
      const te = reach.get('target');
      // Required in every mapping that is written (as policies/schema.json says, file by file):
      // settings without a target would silently check nothing.
      if (!te) this.fail('E_POLICY_MISSING', { pos: this.posOf(top.get('reachability')!.node, top.get('reachability')!.pos), field: 'reachability.target' }, 'required when reachability is written: the IPv4 address of the management gateway');
      const t = te ? this.readString(te) : undefined;
      if (t && IPV4_RE.test(t.value)) input.reachability.target = t;
      else if (t) this.markBad(this.fail('E_POLICY_VALUE', { pos: t, field: t.field }, `${JSON.stringify(t.value)} is not an IPv4 address (dotted quad, e.g. 192.0.2.1)`));
      // Each try waits timeoutMs while the cut stays in place: keep the worst case short.
      this.setNum(input.reachability, 'timeoutMs', reach.get('timeoutMs'), { min: 0, gt: true, max: 10000 });
      this.setNum(input.reachability, 'tries', reach.get('tries'), { int: true, min: 1, max: 10 });
    }
    const metrics = this.readSection(top.get('metrics'), METRICS_KEYS);
    if (metrics) {
      const le = metrics.get('listen');
      // Required whenever metrics is written, like reachability.target: `metrics: {}` must not
      // look like it turned something on.
      if (!le) this.fail('E_POLICY_MISSING', this.sectionAt(top.get('metrics')!, 'metrics.listen'), 'required when metrics is written: a loopback HOST:PORT, e.g. 127.0.0.1:9781');
      const l = le ? this.readString(le) : undefined;
      if (l) {
        const p = parseListen(l.value);
        if (typeof p === 'string') this.markBad(this.fail(p.startsWith('port') ? 'E_POLICY_RANGE' : 'E_POLICY_VALUE', { pos: l, field: l.field }, p));
        else input.metrics.listen = { ...l, value: p };
      }
    }
    const notify = this.readSection(top.get('notify'), NOTIFY_KEYS);
    if (notify) {
      const we = notify.get('webhook');
      const he = notify.get('hookArgv');
      // Timeouts and tries alone would notify nobody; say so rather than accept a no-op.
      if (!we && !he) this.fail('E_POLICY_MISSING', this.sectionAt(top.get('notify')!, 'notify'), 'write webhook (an http(s) URL), hookArgv (a list: program and arguments), or both');
      const w = we ? this.readString(we) : undefined;
      if (w) {
        const why = webhookProblem(w.value);
        if (why) this.markBad(this.fail('E_POLICY_VALUE', { pos: w, field: w.field }, why));
        else input.notify.webhook = w;
      }
      if (he) input.notify.hookArgv = this.readArgv(he);
      this.setNum(input.notify, 'timeoutMs', notify.get('timeoutMs'), { min: 1, max: 60000 });
      this.setNum(input.notify, 'tries', notify.get('tries'), { int: true, min: 1, max: 10 });
    }
    const esxi = top.get('esxi');
    if (esxi) input.esxi = this.readEsxi(esxi);
    const dry = top.get('dryRun');
    if (dry) input.dryRun = this.readBool(dry);
    const ports = top.get('ports');
    if (ports) input.ports = this.readRules(ports);
    return input;
  }

  // ---- structure -------------------------------------------------------------------------

  private readRules(e: Entry): RuleInput[] {
    const r = this.deref(e);
    if (!r) return [];
    if (!isSeq(r.node)) {
      this.fail('E_POLICY_TYPE', r, `must be a list of rules (write [] for none), ${this.describe(r.node)}`);
      return [];
    }
    const rules: RuleInput[] = [];
    const items = r.node.items;
    for (let i = 0; i < items.length; i++) {
      const field = `ports[${i}]`;
      const item: Entry = { node: items[i], pos: this.posOf(items[i], r.pos), field };
      if (i === MAX_PORT_RULES) {
        this.fail('E_POLICY_RANGE', item, `at most ${MAX_PORT_RULES} rules are allowed`);
        break;
      }
      const rule = this.readRule(item);
      if (rule) rules.push(rule);
      if (this.aliasBombReported) break;
    }
    return rules;
  }

  private readRule(e: Entry): RuleInput | null {
    const rm = this.readMap(e, RULE_KEYS, e.field);
    if (!rm) return null;
    const { entries: m, at } = rm;
    let match: Located<string> | undefined;
    const me = m.get('match');
    if (!me) {
      this.fail('E_POLICY_MISSING', { ...at, field: `${e.field}.match` }, 'required: an interface name or glob, e.g. "vnet*"');
    } else {
      const s = this.readString(me);
      if (s !== undefined) {
        if (MATCH_RE.test(s.value)) match = s;
        else
          this.fail(
            'E_POLICY_VALUE',
            { pos: s, field: s.field },
            `${JSON.stringify(s.value)} is not an interface name or glob (1-15 of A-Z a-z 0-9 _ . : @ - * ?)`,
          );
      }
    }
    let role: Located<Role> | undefined;
    const re = m.get('role');
    if (!re) {
      this.fail('E_POLICY_MISSING', { ...at, field: `${e.field}.role` }, `required: one of ${ROLES.join(', ')}`);
    } else {
      role = this.readRole(re);
    }
    const rule: RuleInput = {
      file: this.file,
      field: e.field,
      line: at.pos.line,
      col: at.pos.col,
      // Only returned (below) when both match and role were valid.
      match: match as Located<string>,
      role: role as Located<Role>,
      thresholds: this.readThresholds(m.get('thresholds')),
      recovery: this.readRecovery(m.get('recovery')),
    };
    const prot = m.get('protected');
    if (prot) {
      const b = this.readBool(prot);
      if (b) rule.protected = b;
    }
    const dry = m.get('dryRun');
    if (dry) {
      const b = this.readBool(dry);
      if (b) rule.dryRun = b;
    }
    return match && role ? rule : null;
  }

  // ---- esxi ------------------------------------------------------------------------------

  private readEsxi(e: Entry): EsxiInput {
    const out: EsxiInput = { file: this.file, hosts: [] };
    const m = this.readSection(e, ESXI_KEYS);
    if (!m) return out;
    const he = m.get('hosts');
    // Like metrics.listen: `esxi: {}` must not look like it turned something on.
    if (!he) {
      this.fail('E_POLICY_MISSING', this.sectionAt(e, 'esxi.hosts'), 'required when esxi is written: a list of ESXi hosts (name, address, identityFile, knownHostsFile, vmnics)');
      return out;
    }
    // Names are compared as they are read, so a repeat is reported even in an otherwise broken entry.
    const names = new Map<string, Located<string>>();
    const hosts = this.readList(he, 'hosts', 1, MAX_ESXI_HOSTS, 'must list at least one host (remove esxi to watch none)', (ie) => this.readEsxiHost(ie, names));
    out.hosts = hosts?.items.map((h) => h.value) ?? [];
    return out;
  }

  /** One host entry; undefined when it is not a mapping or a required key is missing or invalid. */
  private readEsxiHost(e: Entry, names: Map<string, Located<string>>): Located<EsxiHostInput> | undefined {
    const rm = this.readMap(e, ESXI_HOST_KEYS, e.field);
    if (!rm) return undefined;
    const { entries: m, at } = rm;
    const required = (k: (typeof ESXI_HOST_KEYS)[number], what: string): Entry | undefined => {
      const x = m.get(k);
      if (!x) this.fail('E_POLICY_MISSING', { pos: at.pos, field: `${e.field}.${k}` }, `required: ${what}`);
      return x;
    };
    let name = this.readChecked(required('name', 'a short host name, e.g. esx1'), (v) =>
      ESXI_HOST_NAME_RE.test(v) ? undefined : `${show(v)} is not a host name (1-32 of a-z 0-9 -, not starting with -)`,
    );
    const dup = name && names.get(name.value);
    if (name && dup) {
      // `same name as` (not `listed twice`): uniqueItems compares whole entries, so a JSON Schema cannot see this one.
      const other = dup.field.slice(0, -'.name'.length);
      name = this.markBad(this.fail('E_POLICY_DUPLICATE', { pos: name, field: name.field }, `same name as ${other} (line ${dup.line}): host names prefix their port names (${name.value}/vmnic0)`));
    } else if (name) names.set(name.value, name);
    const address = this.readChecked(required('address', "the IPv4 address of the host's management interface"), (v) =>
      IPV4_RE.test(v) ? undefined : `${show(v)} is not an IPv4 address (dotted quad, e.g. 192.0.2.10; no names: DNS may be what the storm cut)`,
    );
    const pathWhy = (v: string): string | undefined =>
      ESXI_PATH_RE.test(v)
        ? undefined
        : `${show(v)} is not an absolute path of plain characters (A-Z a-z 0-9 . _ + , : = @ ~ / -): ssh would expand % and $ and split on spaces and quotes`;
    const identityFile = this.readChecked(required('identityFile', 'absolute path of the SSH private key'), pathWhy);
    const knownHostsFile = this.readChecked(required('knownHostsFile', "absolute path of a known_hosts file holding the host's key"), pathWhy);
    const ve = required('vmnics', 'a list of the physical NICs to watch, e.g. [{name: vmnic0, role: uplink}]');
    const vmnics = ve ? this.readVmnics(ve) : undefined;

    const num: Section<EsxiNumKey> = {};
    for (const k of ['port', 'sampleMs', 'staleMs', 'connectTimeoutMs', 'commandTimeoutMs', 'fuseSampleMs', 'fuseLeaseMs', 'fuseBudget'] as const) this.setNum(num, k, m.get(k), ESXI_NUM_SPECS[k]);
    const user = this.readChecked(m.get('user'), (v) => (ESXI_USER_RE.test(v) ? undefined : `${show(v)} is not a user name (a-z or _ first, then up to 31 of a-z 0-9 _ . -)`));
    const counters = this.readChecked(m.get('counters'), (v) =>
      (ESXI_COUNTER_PATHS as readonly string[]).includes(v) ? undefined : `unknown counter path ${show(v)} (one of ${ESXI_COUNTER_PATHS.join(', ')})`,
    ) as Located<EsxiCounterPath> | undefined;
    const fuse = this.readChecked(m.get('fuse'), (v) =>
      (ESXI_FUSE_MODES as readonly string[]).includes(v) ? undefined : `unknown fuse mode ${show(v)} (one of ${ESXI_FUSE_MODES.join(', ')})`,
    ) as Located<EsxiFuseMode> | undefined;
    const pe = m.get('portgroups');
    const portgroups = pe ? this.readPortgroups(pe) : undefined;
    const ppe = m.get('protectedPortgroups');
    const protectedPortgroups = ppe ? this.readPortgroups(ppe) : undefined;
    const wbe = m.get('watchBridgingVms');
    const watchBridgingVms = wbe ? this.readBool(wbe) : undefined;
    const ae = m.get('actions');
    const actions = ae ? this.readActions(ae) : undefined;
    let quarantineVlan: Located<number | null> | undefined;
    const qe = m.get('quarantineVlan');
    const q = qe ? this.deref(qe) : null;
    if (qe && !q) this.markBad(qe);
    // null is "no VLAN", the same as absent (resolve.ts then says whether one is required).
    else if (q && isScalar(q.node) && q.node.value === null) quarantineVlan = this.located(q, null);
    else if (q) quarantineVlan = this.readNumber(q, QUARANTINE_VLAN);
    const thresholds = this.readThresholds(m.get('thresholds'));
    if (!name || !address || !identityFile || !knownHostsFile || !vmnics) return undefined;
    return this.located(at, {
      field: e.field,
      line: at.pos.line,
      col: at.pos.col,
      name,
      address,
      identityFile,
      knownHostsFile,
      vmnics,
      num,
      thresholds,
      ...(user ? { user } : {}),
      ...(counters ? { counters } : {}),
      ...(fuse ? { fuse } : {}),
      ...(portgroups ? { portgroups } : {}),
      ...(protectedPortgroups ? { protectedPortgroups } : {}),
      ...(watchBridgingVms ? { watchBridgingVms } : {}),
      ...(actions ? { actions } : {}),
      ...(quarantineVlan ? { quarantineVlan } : {}),
    });
  }

  /** A string that `why` finds no fault with (else an E_POLICY_VALUE at the string). */
  private readChecked(e: Entry | undefined, why: (v: string) => string | undefined): Located<string> | undefined {
    const s = e ? this.readString(e) : undefined;
    if (!s) return undefined;
    const w = why(s.value);
    return w ? this.markBad(this.fail('E_POLICY_VALUE', { pos: s, field: s.field }, w)) : s;
  }

  private readVmnics(e: Entry): Located<EsxiVmnicInput[]> | undefined {
    // Names are compared as they are read (as host names are), so a repeat is reported even in a broken entry.
    const names = new Map<string, Located<string>>();
    const list = this.readList(e, 'vmnics', 1, MAX_ESXI_VMNICS, 'must list at least one vmnic (the physical NICs to watch)', (ie) => {
      const rm = this.readMap(ie, ESXI_VMNIC_KEYS, ie.field);
      if (!rm) return undefined;
      const { entries: m, at } = rm;
      const ne = m.get('name');
      if (!ne) this.fail('E_POLICY_MISSING', { pos: at.pos, field: `${ie.field}.name` }, 'required: the NIC name as ESXi lists it, e.g. vmnic0');
      let name = this.readChecked(ne, (v) => (ESXI_VMNIC_RE.test(v) ? undefined : `${show(v)} is not a physical NIC name (vmnic0 ... vmnic999)`));
      const dup = name && names.get(name.value);
      if (name && dup) {
        // `same name as` (not `listed twice`): uniqueItems compares whole entries, so a JSON Schema cannot see this one.
        const other = dup.field.slice(0, -'.name'.length);
        name = this.markBad(this.fail('E_POLICY_DUPLICATE', { pos: name, field: name.field }, `same name as ${other} (line ${dup.line}): one NIC, one entry`));
      } else if (name) names.set(name.value, name);
      const re = m.get('role');
      if (!re) this.fail('E_POLICY_MISSING', { pos: at.pos, field: `${ie.field}.role` }, `required: one of ${ROLES.join(', ')}`);
      const role = re ? this.readRole(re) : undefined;
      const pe = m.get('protected');
      const prot = pe ? this.readBool(pe) : undefined;
      if (!name || !role || (pe && !prot)) return undefined;
      return this.located<EsxiVmnicInput>(at, prot ? { name, role, protected: prot } : { name, role });
    });
    if (!list?.ok) return this.markBad(e);
    return this.located(list.at, list.items.map((v) => v.value));
  }

  /** portgroups / protectedPortgroups: port group names as agent/esxi/names.ts accepts them, each once. */
  private readPortgroups(e: Entry): Located<string[]> | undefined {
    const list = this.readList(e, 'port group names', 0, MAX_ESXI_PORTGROUPS, '', (ie) =>
      this.readChecked(ie, (v) => {
        const why = checkPortgroupName(v);
        return why ? `${show(v)} is not a usable port group name: ${why}` : undefined;
      }),
    );
    return this.unique(e, list, (v) => `port group ${show(v)}`);
  }

  private readActions(e: Entry): Located<EsxiActionKind[]> | undefined {
    // No upper bound of its own: kinds may not repeat, so more than three is a repeat.
    const list = this.readList(e, 'actions', 1, Infinity, 'must list at least one action (use dryRun: true to never act)', (ie) =>
      this.readChecked(ie, (v) => ((ESXI_ACTION_KINDS as readonly string[]).includes(v) ? undefined : `unknown action ${show(v)} (one of ${ESXI_ACTION_KINDS.join(', ')})`)),
    );
    const u = this.unique(e, list, (v) => `action ${v}`);
    return u && { ...u, value: u.value as EsxiActionKind[] };
  }

  /**
   * A list of `min`..`max` items, each read by `item` (which reports its own errors and marks
   * its own field bad): the valid items, and whether all were. Undefined, and marked bad, when
   * it is no list or has a wrong length; that is reported at the list itself, as
   * policies/schema.json's minItems / maxItems do. The caller decides whether a broken item
   * spoils the whole list (a port group list) or only itself (one host among several).
   */
  private readList<T>(
    e: Entry,
    what: string,
    min: number,
    max: number,
    tooFew: string,
    item: (ie: Entry) => Located<T> | undefined,
  ): ListRead<T> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    if (!isSeq(r.node)) return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a list of ${what}, ${this.describe(r.node)}`));
    const items = r.node.items;
    if (items.length < min) return this.markBad(this.fail('E_POLICY_RANGE', r, tooFew));
    if (items.length > max) return this.markBad(this.fail('E_POLICY_RANGE', r, `at most ${max} ${what} are allowed, got ${items.length}`));
    const out: Array<Located<T>> = [];
    let ok = true;
    for (let i = 0; i < items.length; i++) {
      const v = item({ node: items[i], pos: this.posOf(items[i], r.pos), field: `${e.field}[${i}]` });
      if (v) out.push(v);
      else ok = false;
      if (this.aliasBombReported) return this.markBad(e);
    }
    return { at: r, items: out, ok };
  }

  /**
   * A list of strings if every item was valid and none repeats. Repeats among the valid items
   * are reported even when others are invalid, as uniqueItems in policies/schema.json does.
   */
  private unique(e: Entry, list: ListRead<string> | undefined, what: (v: string) => string): Located<string[]> | undefined {
    if (!list) return undefined;
    const seen = new Map<string, Located<string>>();
    let ok = list.ok;
    for (const v of list.items) {
      const first = seen.get(v.value);
      if (first) {
        ok = false;
        this.fail('E_POLICY_DUPLICATE', { pos: v, field: v.field }, `${what(v.value)} listed twice (first at line ${first.line}:${first.col})`);
      } else seen.set(v.value, v);
    }
    return ok ? this.located(list.at, list.items.map((v) => v.value)) : this.markBad(e);
  }

  private readThresholds(e: Entry | undefined): Section<ThresholdKey> {
    const out: Section<ThresholdKey> = {};
    const m = this.readSection(e, THRESHOLD_KEYS);
    if (m) for (const k of THRESHOLD_KEYS) this.setNum(out, k, m.get(k), THRESHOLD_SPECS[k]);
    return out;
  }

  private readRecovery(e: Entry | undefined): RecoveryInput {
    const out: RecoveryInput = {};
    const m = this.readSection(e, RECOVERY_KEYS);
    if (!m) return out;
    const me = m.get('mode');
    if (me) {
      const s = this.readString(me);
      if (s && (RECOVERY_MODES as readonly string[]).includes(s.value)) out.mode = { ...s, value: s.value as RecoveryMode };
      else if (s) {
        this.fail('E_POLICY_VALUE', { pos: s, field: s.field }, `unknown mode ${JSON.stringify(s.value)} (one of ${RECOVERY_MODES.join(', ')})`);
        this.markBad(me);
      }
    }
    for (const k of ['cooldownMs', 'probeMs', 'backoff', 'maxTries'] as const) this.setNum(out, k, m.get(k), RECOVERY_SPECS[k]);
    return out;
  }

  private readSection<K extends string>(e: Entry | undefined, keys: readonly K[]): Map<K, Entry> | null {
    return e ? (this.readMap(e, keys, e.field)?.entries ?? null) : null;
  }

  /**
   * Check e is a mapping with string keys from `keys`, each once. Returns the entries by key
   * (only known keys) and the mapping itself after alias resolution, or null when e is not a
   * mapping at all.
   */
  private readMap<K extends string>(e: Entry, keys: readonly K[], what: string): { entries: Map<K, Entry>; at: Entry } | null {
    const r = this.deref(e);
    if (!r) {
      this.markBad(e);
      return null;
    }
    if (!isMap(r.node)) {
      const hint = isScalar(r.node) && r.node.value === null ? ' (write {} for an empty one, or remove the key)' : '';
      this.fail('E_POLICY_TYPE', { ...r, field: what }, `must be a mapping${hint}, ${this.describe(r.node)}`);
      this.markBad(e);
      return null;
    }
    const out = new Map<K, Entry>();
    const seen = new Map<string, Pos>();
    for (const pair of r.node.items) {
      const keyPos = this.posOf(pair.key, r.pos);
      const k = pair.key;
      if (!isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number' && typeof k.value !== 'boolean')) {
        this.fail('E_POLICY_TYPE', { pos: keyPos, field: what }, 'keys must be plain words');
        continue;
      }
      const name = String(k.value);
      const field = e.field ? `${e.field}.${name}` : name;
      const keyEntry: Entry = { node: k, pos: keyPos, field };
      const first = seen.get(name);
      if (first) {
        this.fail('E_POLICY_DUPLICATE', keyEntry, `written twice (first at line ${first.line}:${first.col})`);
        continue;
      }
      seen.set(name, keyPos);
      if (!(keys as readonly string[]).includes(name)) {
        this.fail('E_POLICY_UNKNOWN_KEY', keyEntry, unknownKeyMessage(name, keys));
        continue;
      }
      // `key:` with nothing after it parses as a null scalar; point at the key then.
      const vpos = isScalar(pair.value) && pair.value.value === null && pair.value.source === '' ? keyPos : this.posOf(pair.value, keyPos);
      out.set(name as K, { node: pair.value, pos: vpos, field });
    }
    return { entries: out, at: r };
  }

  // ---- scalars ---------------------------------------------------------------------------

  private setNum<K extends string>(out: Section<K>, key: K, e: Entry | undefined, spec: NumSpec): void {
    if (!e) return;
    const v = this.readNumber(e, spec);
    if (v) out[key] = v;
  }

  private readNumber(e: Entry, spec: NumSpec): Located<number> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    const n = r.node;
    if (!isScalar(n) || typeof n.value !== 'number') {
      const quoted = isScalar(n) && typeof n.value === 'string' && n.value.trim() !== '' && Number.isFinite(Number(n.value));
      const hint = quoted ? ' (remove the quotes)' : '';
      return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a number${hint}, ${this.describe(n)}`));
    }
    const v = n.value;
    if (!Number.isFinite(v)) return this.markBad(this.fail('E_POLICY_RANGE', r, 'must be a finite number'));
    // Beyond 2^53 a double no longer holds the number written (9007199254740993 reads as ...992,
    // 0xffffffffffffffffffff as 1.2e24): refuse it rather than act on another value.
    if (Math.abs(v) > Number.MAX_SAFE_INTEGER) return this.markBad(this.fail('E_POLICY_RANGE', r, `must be at most ${Number.MAX_SAFE_INTEGER} in size, got ${v}`));
    if (spec.int && !Number.isInteger(v)) return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a whole number, got ${v}`));
    if (spec.min !== undefined && (spec.gt ? v <= spec.min : v < spec.min)) {
      const range = spec.max !== undefined && !spec.gt ? `between ${spec.min} and ${spec.max}` : `${spec.gt ? '>' : '>='} ${spec.min}`;
      return this.markBad(this.fail('E_POLICY_RANGE', r, `must be ${range}, got ${v}`));
    }
    if (spec.max !== undefined && v > spec.max) {
      const range = spec.min !== undefined && !spec.gt ? `between ${spec.min} and ${spec.max}` : `<= ${spec.max}`;
      return this.markBad(this.fail('E_POLICY_RANGE', r, `must be ${range}, got ${v}`));
    }
    return this.located(r, v);
  }

  private readBool(e: Entry): Located<boolean> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    if (isScalar(r.node) && typeof r.node.value === 'boolean') return this.located(r, r.node.value);
    // YAML 1.2 reads yes/no/on/off as strings; say so, since YAML 1.1 habits are common.
    const yes11 = isScalar(r.node) && typeof r.node.value === 'string' && /^(yes|no|on|off|y|n)$/i.test(r.node.value);
    return this.markBad(this.fail('E_POLICY_TYPE', r, `must be true or false${yes11 ? ' (YAML 1.2: yes/no/on/off are strings)' : ''}, ${this.describe(r.node)}`));
  }

  private readString(e: Entry): Located<string> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    if (isScalar(r.node) && typeof r.node.value === 'string') return this.located(r, r.node.value);
    return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a string, ${this.describe(r.node)}`));
  }

  private readRole(e: Entry): Located<Role> | undefined {
    const s = this.readString(e);
    if (!s) return undefined;
    if ((ROLES as readonly string[]).includes(s.value)) return { ...s, value: s.value as Role };
    this.fail('E_POLICY_VALUE', { pos: s, field: s.field }, `unknown role ${JSON.stringify(s.value)} (one of ${ROLES.join(', ')})`);
    return this.markBad(e);
  }

  private readRoles(e: Entry, nonEmpty: boolean): Located<Role[]> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    if (!isSeq(r.node)) return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a list of roles, ${this.describe(r.node)}`));
    if (nonEmpty && r.node.items.length === 0)
      return this.markBad(this.fail('E_POLICY_RANGE', r, 'must list at least one role (use dryRun: true to never act)'));
    const roles: Role[] = [];
    let ok = true;
    const seen = new Map<Role, Pos>();
    r.node.items.forEach((item, i) => {
      const ie: Entry = { node: item, pos: this.posOf(item, r.pos), field: `${e.field}[${i}]` };
      const role = this.readRole(ie);
      if (!role) {
        ok = false;
        return;
      }
      const first = seen.get(role.value);
      if (first) {
        this.fail('E_POLICY_DUPLICATE', { pos: role, field: ie.field }, `role ${role.value} listed twice (first at line ${first.line}:${first.col})`);
        ok = false;
        return;
      }
      seen.set(role.value, role);
      roles.push(role.value);
    });
    return ok ? this.located(r, roles) : this.markBad(e);
  }

  /** A hook's argv: a non-empty list of non-empty strings (run without a shell, so no quoting rules). */
  private readArgv(e: Entry): Located<string[]> | undefined {
    const r = this.deref(e);
    if (!r) return this.markBad(e);
    if (!isSeq(r.node)) return this.markBad(this.fail('E_POLICY_TYPE', r, `must be a list of strings (program, then arguments), ${this.describe(r.node)}`));
    const items = r.node.items;
    if (items.length === 0) return this.markBad(this.fail('E_POLICY_RANGE', r, 'must list at least the program to run, e.g. [/usr/local/bin/page-oncall]'));
    if (items.length > MAX_HOOK_ARGV) return this.markBad(this.fail('E_POLICY_RANGE', r, `at most ${MAX_HOOK_ARGV} items are allowed`));
    const argv: string[] = [];
    let ok = true;
    items.forEach((item, i) => {
      const s = this.readString({ node: item, pos: this.posOf(item, r.pos), field: `${e.field}[${i}]` });
      if (!s) ok = false;
      else if (s.value === '') {
        ok = false;
        this.markBad(this.fail('E_POLICY_VALUE', { pos: s, field: s.field }, 'must not be empty'));
      } else argv.push(s.value);
    });
    return ok ? this.located(r, argv) : this.markBad(e);
  }

  // ---- helpers ---------------------------------------------------------------------------

  /** Where a section's mapping starts, for "required key missing" errors (the reachability way). */
  private sectionAt(e: Entry, field: string): { pos: Pos; field: string } {
    return { pos: this.posOf(e.node, e.pos), field };
  }

  /**
   * Follow an alias to its anchored node, counting. Returns null (after reporting) for an alias
   * to nothing or once the alias budget is spent; the walk then stops descending.
   */
  private deref(e: Entry): Entry | null {
    if (!isAlias(e.node)) return e;
    if (this.aliasBombReported) return null;
    if (++this.aliases > MAX_ALIAS_COUNT) {
      this.aliasBombReported = true;
      this.fail('E_POLICY_ALIAS', e, `more than ${MAX_ALIAS_COUNT} aliases dereferenced; refusing (an alias bomb?)`);
      return null;
    }
    let target: unknown;
    try {
      target = e.node.resolve(this.doc);
    } catch {
      target = undefined;
    }
    if (target === undefined) {
      this.fail('E_POLICY_ALIAS', e, `alias *${e.node.source} refers to no anchor before it`);
      return null;
    }
    // Aliases of aliases are legal YAML; each hop counts against the budget.
    return this.deref({ node: target, pos: this.posOf(target, e.pos), field: e.field });
  }

  private posOf(node: unknown, fallback: Pos): Pos {
    const range = (node as { range?: unknown } | null | undefined)?.range;
    if (!Array.isArray(range) || typeof range[0] !== 'number') return fallback;
    const p = this.lc.linePos(range[0]);
    return p.line > 0 ? { line: p.line, col: p.col } : fallback;
  }

  private located<T>(e: Entry, value: T): Located<T> {
    return { value, file: this.file, line: e.pos.line, col: e.pos.col, field: e.field };
  }

  private fail(code: PolicyErrorCode, e: { pos: Pos; field: string }, message: string): { field: string } {
    this.errors.push(
      new PolicyError({ code, file: this.file, line: e.pos.line, col: e.pos.col, field: e.field || '(document)', message }),
    );
    return e;
  }

  private markBad(e: { field: string }): undefined {
    this.bad.add(e.field);
    return undefined;
  }

  private describe(node: unknown): string {
    if (isMap(node)) return 'got a mapping';
    if (isSeq(node)) return 'got a list';
    if (isScalar(node)) {
      const v = node.value;
      if (v === null) return 'got nothing (null)';
      if (typeof v === 'string') return `got string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`;
      return `got ${typeof v} ${String(v)}`;
    }
    return 'got nothing';
  }
}

const LISTEN_RE = /^(?:\[([^\]]*)\]|([^:[\]]*)):([0-9]+)$/;

/**
 * `metrics.listen`: `127.0.0.1:9781`, `localhost:9781` or `[::1]:9781` (IPv6 in brackets, as in
 * a URL). Returns the parts, or why not (a message starting with "port" is a range error). The
 * host must be loopback, checked by the same isLoopbackHost the metrics server uses, so the
 * loader never accepts what the server would then refuse at start.
 */
export function parseListen(s: string): { host: string; port: number } | string {
  const m = LISTEN_RE.exec(s);
  if (!m) return `${JSON.stringify(s)} is not HOST:PORT (e.g. 127.0.0.1:9781, or [::1]:9781 for IPv6)`;
  const host = m[1] ?? m[2] ?? '';
  const ps = m[3] ?? '';
  // A leading zero reads as octal in some tools; refuse it rather than guess.
  if (!/^(0|[1-9][0-9]{0,4})$/.test(ps) || Number(ps) < 1 || Number(ps) > 65535) return `port ${ps} is not 1-65535`;
  // Brackets are for IPv6 only, and IPv6 only in brackets: `[127.0.0.1]:1` is no address.
  if (!isLoopbackHost(host) || (m[1] !== undefined) !== (isIP(host) === 6)) {
    return `host ${JSON.stringify(host)} is not a loopback address (127.0.0.0/8, [::1] or localhost): the metrics endpoint is never exposed; scrape it locally or through a proxy`;
  }
  return { host, port: Number(ps) };
}

/** Why `notify.webhook` is unusable, or undefined when it is an http(s) URL. */
export function webhookProblem(s: string): string | undefined {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return `${JSON.stringify(s)} is not a URL (e.g. https://hooks.example.net/stormbreaker)`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${JSON.stringify(u.protocol.slice(0, -1))} URLs are not supported: use http or https`;
  // `http:host` parses too (WHATWG URL), but is almost surely a typo; the schema's pattern wants `//` as well.
  if (!/^https?:\/\//i.test(s)) return `${JSON.stringify(s)}: write the URL in full, e.g. https://hooks.example.net/stormbreaker`;
  return undefined;
}

/** A value quoted for a message, cut short so one bad value cannot flood the output. */
function show(v: string): string {
  return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '...' : v);
}

function unknownKeyMessage(name: string, keys: readonly string[]): string {
  if (name === '<<') return `unknown key "<<" (merge keys are not supported; alias the whole mapping instead)`;
  const near = keys.find((k) => k.toLowerCase() === name.toLowerCase()) ?? keys.find((k) => editDistance(k, name) <= 2);
  const hint = near ? `did you mean ${near}? ` : '';
  return `unknown key ${JSON.stringify(name)} (${hint}expected one of: ${keys.join(', ')})`;
}

/** Levenshtein distance, for "did you mean" on short keys only. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 32 || b.length > 32) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 99;
}
