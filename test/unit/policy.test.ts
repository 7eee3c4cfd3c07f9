import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { POLICY_DEFAULTS, MAX_POLICY_BYTES } from '../../agent/policy/defaults.js';
import { PolicyError, formatPolicyError, type PolicyErrorCode } from '../../agent/policy/errors.js';
import { loadPolicyFile, parsePolicy } from '../../agent/policy/load.js';
import { globToRegExp, resolvePort, resolvePorts } from '../../agent/policy/match.js';
import { ok, errs, brief, type Expect } from '../helpers/policy-result.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/policies');
const CODES: PolicyErrorCode[] = [
  'E_POLICY_IO', 'E_POLICY_SIZE', 'E_POLICY_BINARY', 'E_POLICY_EMPTY', 'E_POLICY_YAML', 'E_POLICY_ALIAS',
  'E_POLICY_TYPE', 'E_POLICY_UNKNOWN_KEY', 'E_POLICY_DUPLICATE', 'E_POLICY_MISSING', 'E_POLICY_RANGE',
  'E_POLICY_VALUE', 'E_POLICY_VERSION',
];


// Every broken fixture, with every error it must produce: exact positions, fields and codes.
const BAD: Record<string, Expect[]> = {
  'unknown-keys.yaml': [
    [5, 3, 'sampling.activeMS', 'E_POLICY_UNKNOWN_KEY'],
    [7, 3, 'defaults.floodpps', 'E_POLICY_UNKNOWN_KEY'],
    [8, 1, 'colour', 'E_POLICY_UNKNOWN_KEY'],
    [12, 5, 'ports[0].protect', 'E_POLICY_UNKNOWN_KEY'],
  ],
  'clear-not-below-flood.yaml': [
    [4, 13, 'defaults.clearPps', 'E_POLICY_RANGE'],
    [9, 17, 'ports[0].thresholds.floodPps', 'E_POLICY_RANGE'],
    [13, 17, 'ports[1].thresholds.clearPps', 'E_POLICY_RANGE'],
  ],
  'bad-times.yaml': [
    [3, 11, 'sampling.idleMs', 'E_POLICY_RANGE'],
    [4, 13, 'sampling.activeMs', 'E_POLICY_RANGE'],
    [5, 17, 'sampling.activeHoldMs', 'E_POLICY_RANGE'],
    [7, 13, 'breaker.windowMs', 'E_POLICY_RANGE'],
    [8, 13, 'breaker.settleMs', 'E_POLICY_RANGE'],
    [10, 14, 'actions.timeoutMs', 'E_POLICY_RANGE'],
    [11, 12, 'actions.retries', 'E_POLICY_RANGE'],
  ],
  'active-slower-than-idle.yaml': [[4, 13, 'sampling.activeMs', 'E_POLICY_RANGE']],
  'duplicates.yaml': [
    [5, 12, 'ports[1].match', 'E_POLICY_DUPLICATE'],
    [7, 12, 'ports[2].match', 'E_POLICY_VALUE'], // vm7 is shadowed by vm* above it
    [11, 5, 'ports[3].role', 'E_POLICY_DUPLICATE'],
    [13, 1, 'dryRun', 'E_POLICY_DUPLICATE'],
  ],
  'roles.yaml': [
    [3, 19, 'breaker.shutOrder[1]', 'E_POLICY_VALUE'],
    [3, 27, 'breaker.shutOrder[2]', 'E_POLICY_DUPLICATE'],
    [4, 27, 'breaker.floodShutRoles[1]', 'E_POLICY_DUPLICATE'],
    [7, 11, 'ports[0].role', 'E_POLICY_VALUE'],
    [8, 5, 'ports[1].role', 'E_POLICY_MISSING'],
    [9, 5, 'ports[2].match', 'E_POLICY_MISSING'],
  ],
  'version-missing.yaml': [[2, 1, 'version', 'E_POLICY_MISSING']],
  'version-wrong.yaml': [[1, 10, 'version', 'E_POLICY_VERSION']],
  'version-string.yaml': [[1, 10, 'version', 'E_POLICY_TYPE']],
  // Position as the yaml package reports it: the line where the unclosed `[` was expected to end.
  'syntax.yaml': [[4, 3, '(yaml)', 'E_POLICY_YAML']],
  'empty.yaml': [[1, 1, '(document)', 'E_POLICY_EMPTY']],
  'comments-only.yaml': [[1, 1, '(document)', 'E_POLICY_EMPTY']],
  'binary.yaml': [[2, 1, '(document)', 'E_POLICY_BINARY']],
  'invalid-utf8.yaml': [[2, 9, '(document)', 'E_POLICY_BINARY']],
  // 9 levels of 9 aliases; the running expansion passes 10000 nodes at the first *d on line 7.
  'alias-bomb.yaml': [[7, 8, '(yaml)', 'E_POLICY_ALIAS']],
  'wrong-types.yaml': [
    [2, 11, 'sampling', 'E_POLICY_TYPE'],
    [4, 13, 'defaults.floodPps', 'E_POLICY_TYPE'],
    [5, 16, 'defaults.holdSamples', 'E_POLICY_TYPE'],
    [6, 19, 'defaults.broadcastShare', 'E_POLICY_RANGE'],
    [7, 19, 'defaults.baselineFactor', 'E_POLICY_RANGE'],
    [9, 13, 'breaker.maxShuts', 'E_POLICY_RANGE'],
    [10, 14, 'breaker.shutOrder', 'E_POLICY_TYPE'],
    [12, 12, 'fdb.enabled', 'E_POLICY_TYPE'],
    [13, 9, 'dryRun', 'E_POLICY_TYPE'],
    [15, 3, 'ports', 'E_POLICY_TYPE'],
  ],
  'bad-rules.yaml': [
    [3, 12, 'ports[0].match', 'E_POLICY_VALUE'],
    [5, 12, 'ports[1].match', 'E_POLICY_VALUE'],
    [7, 12, 'ports[2].match', 'E_POLICY_TYPE'],
    [9, 12, 'ports[3].match', 'E_POLICY_VALUE'],
    [11, 5, 'ports[4]', 'E_POLICY_TYPE'],
    [14, 16, 'ports[5].protected', 'E_POLICY_TYPE'],
    [15, 13, 'ports[5].dryRun', 'E_POLICY_TYPE'],
    [16, 17, 'ports[5].thresholds', 'E_POLICY_TYPE'],
  ],
  'shadowed.yaml': [[5, 12, 'ports[1].match', 'E_POLICY_VALUE']],
  'null-section.yaml': [
    [2, 1, 'defaults', 'E_POLICY_TYPE'],
    [3, 1, 'ports', 'E_POLICY_TYPE'],
  ],
  'not-a-mapping.yaml': [[1, 1, '(document)', 'E_POLICY_TYPE']],
  'merge-key.yaml': [
    [2, 1, 'base', 'E_POLICY_UNKNOWN_KEY'],
    [5, 3, 'defaults.<<', 'E_POLICY_UNKNOWN_KEY'],
  ],
};

describe('bad policy corpus', () => {
  it('every fixture in bad/ has expectations here (and vice versa)', async () => {
    const files = (await readdir(join(FIX, 'bad'))).filter((f) => f.endsWith('.yaml')).sort();
    expect(files).toEqual(Object.keys(BAD).sort());
  });

  for (const [name, expected] of Object.entries(BAD)) {
    it(name, async () => {
      const path = join(FIX, 'bad', name);
      const es = errs(await loadPolicyFile(path));
      expect(brief(es)).toEqual(expected);
      for (const e of es) {
        expect(e).toBeInstanceOf(PolicyError);
        expect(e).toBeInstanceOf(Error);
        expect(e.file).toBe(path);
        expect(e.message.length).toBeGreaterThan(5);
        expect(e.message).not.toMatch(/\n/);
      }
    });
  }

  it('messages say what is wrong and with which value', async () => {
    const msg = async (name: string) => errs(await loadPolicyFile(join(FIX, 'bad', name))).map((e) => e.message);
    expect(await msg('unknown-keys.yaml')).toContain(
      'unknown key "floodpps" (did you mean floodPps? expected one of: floodPps, clearPps, rxPps, broadcastShare, holdSamples, floodHoldMs, baselineFactor)',
    );
    expect(await msg('clear-not-below-flood.yaml')).toEqual([
      'must be < floodPps (10000)',
      'must be > clearPps (10000, from defaults)',
      'must be < floodPps (15000)',
    ]);
    expect((await msg('bad-times.yaml'))[0]).toBe('must be > 0, got -5');
    expect((await msg('roles.yaml'))[0]).toBe('unknown role "router" (one of uplink, vm, mgmt, other)');
    expect((await msg('wrong-types.yaml'))[1]).toBe('must be a number (remove the quotes), got string "20000"');
    expect((await msg('version-wrong.yaml'))[0]).toMatch(/unsupported version 2/);
    expect((await msg('alias-bomb.yaml'))[0]).toMatch(/alias bomb/);
  });

  it('the alias bomb is refused quickly, without expanding it', async () => {
    const text = await readFile(join(FIX, 'bad', 'alias-bomb.yaml'), 'utf8');
    const t0 = performance.now();
    const es = errs(parsePolicy(text, 'bomb.yaml'));
    // Expanding it would take minutes and gigabytes; refusing it takes milliseconds.
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(es[0]?.code).toBe('E_POLICY_ALIAS');
  });
});

describe('parsePolicy edge cases', () => {
  const codes = (text: string) => errs(parsePolicy(text, 'x.yaml')).map((e) => e.code);

  it('only version is required; everything else is the tuned default', () => {
    const p = ok(parsePolicy('version: 1\n', 'p.yaml'));
    expect(p.sampling).toEqual({ idleMs: 100, activeMs: 1, activeHoldMs: 2000, realtimePriority: 10 });
    expect(p.defaults).toEqual({ floodPps: 20000, clearPps: 5000, rxPps: 60000, broadcastShare: 0.5, holdSamples: 2, floodHoldMs: 300, baselineFactor: 4 });
    expect(p.breaker).toEqual({ maxShuts: 2, windowMs: 10000, settleMs: 30, shutOrder: ['vm', 'other', 'uplink'], floodShutRoles: ['vm', 'other'] });
    expect(p.actions).toEqual({ timeoutMs: 2000, retries: 2 });
    expect(p.fdb).toEqual({ enabled: true });
    expect(p.dryRun).toBe(false);
    expect(p.ports).toEqual([]);
    expect(p.version).toBe(1);
    expect(p.file).toBe('p.yaml');
  });

  it('the loaded policy does not share arrays with the frozen defaults', () => {
    const p = ok(parsePolicy('version: 1\n', 'p.yaml'));
    p.breaker.shutOrder.push('mgmt');
    expect(POLICY_DEFAULTS.breaker.shutOrder).toEqual(['vm', 'other', 'uplink']);
  });

  it('hash is the first 12 hex chars of sha256 of the bytes', async () => {
    const text = 'version: 1\ndryRun: true\n';
    const want = createHash('sha256').update(text).digest('hex').slice(0, 12);
    expect(ok(parsePolicy(text, 'a')).hash).toBe(want);
    // With a BOM and CRLF, the hash must still be of the bytes on disk.
    const path = join(FIX, 'good', 'bom-crlf.yaml');
    const bytes = await readFile(path);
    expect(bytes[0]).toBe(0xef);
    expect(ok(await loadPolicyFile(path)).hash).toBe(createHash('sha256').update(bytes).digest('hex').slice(0, 12));
  });

  it('a full policy keeps every written value; rules keep only what they wrote', async () => {
    const p = ok(await loadPolicyFile(join(FIX, 'good', 'full.yaml')));
    expect(p.sampling).toEqual({ idleMs: 20, activeMs: 2, activeHoldMs: 5000, realtimePriority: 0 });
    expect(p.breaker.shutOrder).toEqual(['other', 'vm', 'uplink', 'mgmt']);
    expect(p.breaker.floodShutRoles).toEqual([]);
    expect(p.actions).toEqual({ timeoutMs: 500, retries: 0 });
    expect(p.fdb.enabled).toBe(false);
    expect(p.dryRun).toBe(true);
    expect(p.ports).toEqual([
      { match: 'bond0', role: 'uplink', protected: true, thresholds: {}, line: 29 },
      { match: 'vnet*', role: 'vm', protected: false, thresholds: p.defaults, dryRun: false, line: 32 },
      { match: 'tap???i?', role: 'other', protected: false, thresholds: { floodPps: 9000 }, line: 36 },
      { match: 'mgmt0', role: 'mgmt', protected: false, thresholds: {}, line: 40 },
    ]);
  });

  it('mgmt rules are protected unless they say otherwise; others are not', () => {
    const p = ok(parsePolicy('version: 1\nports:\n  - {match: m0, role: mgmt}\n  - {match: v0, role: vm}\n', 'p'));
    expect(p.ports.map((r) => r.protected)).toEqual([true, false]);
  });

  it('collects all errors, not just the first, in file order', () => {
    const text = 'ports:\n  - match: a\n    role: x\ndefaults:\n  floodPps: -1\n  holdSamples: 0\n';
    expect(brief(errs(parsePolicy(text, 'x.yaml')))).toEqual([
      [1, 1, 'version', 'E_POLICY_MISSING'],
      [3, 11, 'ports[0].role', 'E_POLICY_VALUE'],
      [5, 13, 'defaults.floodPps', 'E_POLICY_RANGE'],
      [6, 16, 'defaults.holdSamples', 'E_POLICY_RANGE'],
    ]);
  });

  it('cross-checks use the merged value and blame what the rule wrote', () => {
    // defaults.clearPps 5000 (built-in); the rule lowers floodPps to 5000: blame the rule's floodPps.
    const es = errs(parsePolicy('version: 1\nports:\n  - match: a\n    role: vm\n    thresholds: {floodPps: 5000}\n', 'x'));
    expect(brief(es)).toEqual([[5, 28, 'ports[0].thresholds.floodPps', 'E_POLICY_RANGE']]);
    expect(es[0]?.message).toBe('must be > clearPps (5000, from defaults)');
    // A lower floodPps in defaults alone is checked against the built-in clearPps.
    expect(errs(parsePolicy('version: 1\ndefaults:\n  floodPps: 3000\n', 'x'))[0]?.message).toBe(
      'must be > clearPps (5000, the built-in default)',
    );
    // No cascade: a bad defaults.clearPps is reported once, not again for every rule.
    const text = 'version: 1\ndefaults: {clearPps: -1}\nports:\n  - {match: a, role: vm, thresholds: {floodPps: 100}}\n';
    expect(codes(text)).toEqual(['E_POLICY_RANGE']);
  });

  it('rejects more than one document, unknown tags, and undefined aliases', () => {
    expect(codes('version: 1\n---\nversion: 1\n')).toEqual(['E_POLICY_YAML']);
    expect(codes('version: !int 1\n')).toEqual(['E_POLICY_YAML']);
    expect(codes('version: 1\ndryRun: *nothing\n')).toEqual(['E_POLICY_ALIAS']);
  });

  it('limits aliases: more than 100, or a self-referencing one', () => {
    const many = `version: 1\ndefaults: &d {}\nx: [${Array.from({ length: 101 }, () => '*d').join(', ')}]\n`;
    const es = errs(parsePolicy(many, 'x'));
    expect(brief(es)).toEqual([[3, 5 + 4 * 100, '(yaml)', 'E_POLICY_ALIAS']]);
    expect(codes('version: 1\nx: &a [*a]\n')).toEqual(['E_POLICY_ALIAS']);
    // A handful of aliases is fine.
    const few = 'version: 1\nports:\n  - {match: a, role: vm, thresholds: &t {floodPps: 9000}}\n  - {match: b, role: vm, thresholds: *t}\n';
    expect(ok(parsePolicy(few, 'x')).ports[1]?.thresholds).toEqual({ floodPps: 9000 });
  });

  it('refuses deep flow nesting fast, before the yaml parser recurses', () => {
    const t0 = performance.now();
    const es = errs(parsePolicy('x: ' + '['.repeat(400_000), 'x'));
    // The yaml parser needs seconds on this input; the guard refuses it in milliseconds.
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(brief(es)).toEqual([[1, 4 + 32, '(document)', 'E_POLICY_YAML']]);
    // Brackets in comments do not count.
    expect(ok(parsePolicy('# ' + '['.repeat(100) + '\nversion: 1\n', 'x')).version).toBe(1);
  });

  it('refuses text over 1 MiB before parsing, and NUL anywhere', () => {
    const big = 'version: 1\n#' + 'x'.repeat(MAX_POLICY_BYTES);
    expect(brief(errs(parsePolicy(big, 'x')))).toEqual([[0, 0, '(file)', 'E_POLICY_SIZE']]);
    expect(brief(errs(parsePolicy('version: 1\nfoo: "a\0b"\n', 'x')))).toEqual([[2, 8, '(document)', 'E_POLICY_BINARY']]);
  });

  it('caps a flood of YAML errors and says how many more there were', () => {
    const text = Array.from({ length: 200 }, (_, i) => `k${i}: [\n`).join('');
    const es = errs(parsePolicy(text, 'x'));
    expect(es.length).toBeLessThanOrEqual(21);
    expect(es.every((e) => e.code === 'E_POLICY_YAML')).toBe(true);
    // Schema errors too: all are counted, 100 are shown.
    const keys = 'version: 1\n' + Array.from({ length: 150 }, (_, i) => `k${i}: 1\n`).join('');
    const ks = errs(parsePolicy(keys, 'x'));
    expect(ks).toHaveLength(101);
    expect(ks[99]?.field).toBe('k99');
    expect(ks[100]?.message).toBe('50 more errors not shown');
  });

  it('never throws for arbitrary text (property)', () => {
    const tokens = fc.constantFrom(
      'version', ': ', '1', '2', '-1', '0.5', '\n', '  ', '- ', '[', ']', '{', '}', ',', '&a ', '*a', '*b', '&b ',
      'ports', 'match', 'role', 'vm', 'mgmt', 'defaults', 'floodPps', 'clearPps', 'breaker', 'shutOrder',
      'sampling', 'idleMs', '"', "'", '#', '!!str ', '!x ', '---\n', '? ', '<<', '\t', '\0', '~', 'null', 'true',
      '.inf', '0x1F', '|\n', '>\n', '%YAML 1.2\n', '\uFEFF', '\r\n',
    );
    const yamlish = fc.array(tokens, { maxLength: 60 }).map((a) => a.join(''));
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 300 }), yamlish, yamlish.map((s) => 'version: 1\n' + s));
    fc.assert(
      fc.property(text, (t) => {
        const r = parsePolicy(t, 'prop.yaml');
        if ('policy' in r) {
          expect(r.policy.version).toBe(1);
          expect(r.policy.hash).toMatch(/^[0-9a-f]{12}$/);
        } else {
          expect(r.errors.length).toBeGreaterThan(0);
          for (const e of r.errors) {
            expect(e).toBeInstanceOf(PolicyError);
            expect(CODES).toContain(e.code);
            expect(e.file).toBe('prop.yaml');
            expect(Number.isInteger(e.line) && e.line >= 0).toBe(true);
            expect(Number.isInteger(e.col) && e.col >= 0).toBe(true);
            expect(e.line === 0).toBe(e.col === 0);
          }
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('any in-range policy round-trips through YAML (property)', () => {
    const role = fc.constantFrom('uplink', 'vm', 'mgmt', 'other' as const);
    const ms = fc.integer({ min: 1, max: 100_000 });
    const rule = fc.record({
      match: fc.stringMatching(/^[a-z][a-z0-9]{0,6}[*?]?$/),
      role,
      thresholds: fc.record({ holdSamples: fc.integer({ min: 1, max: 9 }), broadcastShare: fc.double({ min: 0, max: 1, noNaN: true }) }, { requiredKeys: [] }),
    });
    const input = fc.record({
      version: fc.constant(1),
      sampling: fc.tuple(ms, ms, ms).map(([a, b, c]) => ({ idleMs: Math.max(a, b), activeMs: Math.min(a, b), activeHoldMs: c, realtimePriority: 10 })),
      defaults: fc.integer({ min: 2, max: 1e6 }).chain((flood) =>
        fc.record({ floodPps: fc.constant(flood), clearPps: fc.integer({ min: 1, max: flood - 1 }), baselineFactor: fc.double({ min: 1, max: 100, noNaN: true }) }),
      ),
      breaker: fc.record({ maxShuts: fc.integer({ min: 1, max: 10 }), shutOrder: fc.uniqueArray(role, { minLength: 1 }) }),
      dryRun: fc.boolean(),
      ports: fc.uniqueArray(rule, { selector: (r) => r.match, maxLength: 6 }),
    });
    fc.assert(
      fc.property(input, (want) => {
        const r = parsePolicy(stringify(want), 'gen.yaml');
        if ('errors' in r) {
          // The only legitimate refusal: a literal rule shadowed by an earlier glob.
          for (const e of r.errors) expect(e.message).toMatch(/^never applies/);
          return;
        }
        const p = r.policy;
        expect(p.sampling).toEqual(want.sampling);
        expect(p.defaults).toMatchObject(want.defaults);
        expect(p.breaker).toMatchObject(want.breaker);
        expect(p.dryRun).toBe(want.dryRun);
        expect(p.ports.map((x) => [x.match, x.role, x.thresholds, x.protected])).toEqual(
          want.ports.map((x) => [x.match, x.role, x.thresholds, x.role === 'mgmt']),
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe('loadPolicyFile I/O edge', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-policy-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a missing file is E_POLICY_IO at 0:0 with the errno', async () => {
    const path = join(dir, 'nope.yaml');
    const es = errs(await loadPolicyFile(path));
    expect(brief(es)).toEqual([[0, 0, '(file)', 'E_POLICY_IO']]);
    expect(es[0]?.message).toMatch(/ENOENT/);
    expect(formatPolicyError(es[0] as PolicyError)).toMatch(new RegExp(`^${path}: \\(file\\): cannot read: ENOENT`));
  });

  it('a directory is loaded as a policy directory; one with no policy files is E_POLICY_EMPTY (see policy-dir.test.ts)', async () => {
    const es = errs(await loadPolicyFile(dir));
    expect(brief(es)).toEqual([[0, 0, '(file)', 'E_POLICY_EMPTY']]);
    expect(es[0]?.message).toMatch(/directory has no/);
  });

  it('a file over 1 MiB is refused without parsing', async () => {
    const path = join(dir, 'big.yaml');
    await writeFile(path, 'version: 1\n' + '#'.repeat(MAX_POLICY_BYTES));
    const es = errs(await loadPolicyFile(path));
    expect(brief(es)).toEqual([[0, 0, '(file)', 'E_POLICY_SIZE']]);
    // Exactly at the cap is still accepted.
    await writeFile(path, 'version: 1\n#'.padEnd(MAX_POLICY_BYTES, 'x'));
    expect(ok(await loadPolicyFile(path)).version).toBe(1);
  });

  it('formatPolicyError prints file:line:col: field: message', () => {
    const e = new PolicyError({ code: 'E_POLICY_RANGE', file: 'policies/prod.yaml', line: 14, col: 7, field: 'defaults.floodPps', message: 'must be > 0' });
    expect(formatPolicyError(e)).toBe('policies/prod.yaml:14:7: defaults.floodPps: must be > 0');
    expect(e.code).toBe('E_POLICY_RANGE');
    expect(e.name).toBe('PolicyError');
  });
});

describe('example policies', () => {
  for (const name of ['lab.yaml', 'kvm-host.yaml', 'minimal.yaml']) {
    it(`policies/${name} loads without error`, async () => {
      ok(await loadPolicyFile(join(ROOT, 'policies', name)));
    });
  }
  for (const name of ['full.yaml', 'version-only.yaml', 'bom-crlf.yaml']) {
    it(`good/${name} loads without error`, async () => {
      ok(await loadPolicyFile(join(FIX, 'good', name)));
    });
  }

  it('lab.yaml covers both labs with the port names the demo uses', async () => {
    const p = ok(await loadPolicyFile(join(ROOT, 'policies', 'lab.yaml')));
    const m = resolvePorts(p, ['br0', 'vsw0', 'up1', 'up2', 'vm1', 'vmA1', 'vmA2', 'mgmt0']);
    const view = Object.fromEntries([...m].map(([n, pp]) => [n, [pp.role, pp.protected]]));
    expect(view).toEqual({
      up1: ['uplink', false],
      up2: ['uplink', false],
      vm1: ['vm', false],
      vmA1: ['vm', false],
      vmA2: ['vm', false],
      mgmt0: ['mgmt', true],
    });
    // A VM port is shut before an uplink; mgmt never.
    expect(m.get('vmA1')!.shutRank).toBeLessThan(m.get('up1')!.shutRank);
    expect(m.get('mgmt0')!.shutRank).toBe(Infinity);
  });

  it('kvm-host.yaml maps realistic names', async () => {
    const p = ok(await loadPolicyFile(join(ROOT, 'policies', 'kvm-host.yaml')));
    expect(resolvePort(p, 'eno1')?.role).toBe('uplink');
    expect(resolvePort(p, 'eno2')?.role).toBe('uplink');
    expect(resolvePort(p, 'vnet12')?.role).toBe('vm');
    expect(resolvePort(p, 'tap100i0')?.role).toBe('vm');
    expect(resolvePort(p, 'vxlan-5')?.role).toBe('uplink');
    expect(resolvePort(p, 'vxlan_zone1')?.role).toBe('uplink');
    expect(resolvePort(p, 'eno3')).toMatchObject({ role: 'mgmt', protected: true });
    expect(resolvePort(p, 'eno4')).toBeNull();
  });
});

describe('match', () => {
  const policy = ok(
    parsePolicy(
      [
        'version: 1',
        'defaults: {floodPps: 30000}',
        'ports:',
        '  - {match: mgmt0, role: mgmt}',
        '  - {match: "eth?", role: uplink, thresholds: {clearPps: 1000}}',
        '  - {match: "vm*", role: vm, dryRun: true}',
        '  - {match: "*", role: other}',
        '',
      ].join('\n'),
      'm.yaml',
    ),
  );

  it('globToRegExp: * any run, ? one character, the rest literal', () => {
    const re = globToRegExp('vm*');
    expect(['vm', 'vm1', 'vmA12'].every((n) => re.test(n))).toBe(true);
    expect(['xvm1', 'v', 'VM1'].some((n) => re.test(n))).toBe(false);
    expect(globToRegExp('eth?').test('eth0')).toBe(true);
    expect(globToRegExp('eth?').test('eth')).toBe(false);
    expect(globToRegExp('eth?').test('eth10')).toBe(false);
    expect(globToRegExp('eth0.100').test('eth0.100')).toBe(true);
    expect(globToRegExp('eth0.100').test('eth0x100')).toBe(false);
    expect(globToRegExp('a+b(c)').test('a+b(c)')).toBe(true);
    expect(globToRegExp('br-*').test('br-lan')).toBe(true);
  });

  it('first matching rule wins; thresholds merge over defaults; shutRank = role order * 1000 + rule', () => {
    expect(resolvePort(policy, 'eth0')).toEqual({
      name: 'eth0',
      role: 'uplink',
      protected: false,
      shutRank: 2 * 1000 + 1,
      thresholds: { floodPps: 30000, clearPps: 1000, rxPps: 60000, broadcastShare: 0.5, holdSamples: 2, floodHoldMs: 300, baselineFactor: 4 },
      rule: 1,
      dryRun: false,
      recovery: { mode: 'manual', cooldownMs: 30000, probeMs: 2000, backoff: 2, maxTries: 3 },
    });
    expect(resolvePort(policy, 'vm3')).toMatchObject({ role: 'vm', shutRank: 2, rule: 2, dryRun: true });
    expect(resolvePort(policy, 'eth10')).toMatchObject({ role: 'other', shutRank: 1003, rule: 3 });
    expect(resolvePort(policy, 'mgmt0')).toMatchObject({ role: 'mgmt', protected: true, shutRank: Infinity, rule: 0 });
  });

  it('a port no rule matches is not watched', () => {
    const p = ok(parsePolicy('version: 1\nports:\n  - {match: "vm*", role: vm}\n', 'x'));
    expect(resolvePort(p, 'eno1')).toBeNull();
    expect(resolvePorts(p, ['eno1', 'vm1', 'vm2'])).toEqual(new Map([['vm1', resolvePort(p, 'vm1')], ['vm2', resolvePort(p, 'vm2')]]));
    expect(resolvePort(ok(parsePolicy('version: 1\n', 'x')), 'vm1')).toBeNull();
  });

  it('names that cannot be interfaces are never resolved, even by "*"', () => {
    for (const bad of ['', 'a b', 'eth0;reboot', 'x'.repeat(16), '.', '..', 'a/b']) expect(resolvePort(policy, bad)).toBeNull();
  });

  it('recovery: manual by default; top-level auto reaches vm/other rules, never uplink or mgmt unless the rule says so', () => {
    expect(resolvePort(ok(parsePolicy('version: 1\nports:\n  - {match: v, role: vm}\n', 'x')), 'v')?.recovery?.mode).toBe('manual');
    const p = ok(
      parsePolicy(
        'version: 1\nrecovery: {mode: auto, cooldownMs: 500, backoff: 3}\nports:\n  - {match: m, role: mgmt}\n  - {match: u, role: uplink}\n' +
          '  - {match: u2, role: uplink, recovery: {mode: auto, probeMs: 700}}\n  - {match: v, role: vm}\n  - {match: w, role: vm, recovery: {mode: manual}}\n  - {match: o, role: other, recovery: {maxTries: 5}}\n',
        'x',
      ),
    );
    expect(p.recovery).toEqual({ mode: 'auto', cooldownMs: 500, probeMs: 2000, backoff: 3, maxTries: 3 });
    expect(resolvePort(p, 'm')?.recovery?.mode).toBe('manual');
    expect(resolvePort(p, 'u')?.recovery).toEqual({ mode: 'manual', cooldownMs: 500, probeMs: 2000, backoff: 3, maxTries: 3 });
    expect(resolvePort(p, 'u2')?.recovery).toEqual({ mode: 'auto', cooldownMs: 500, probeMs: 700, backoff: 3, maxTries: 3 });
    expect(resolvePort(p, 'v')?.recovery?.mode).toBe('auto');
    expect(resolvePort(p, 'w')?.recovery?.mode).toBe('manual');
    expect(resolvePort(p, 'o')?.recovery).toEqual({ mode: 'auto', cooldownMs: 500, probeMs: 2000, backoff: 3, maxTries: 5 });
  });

  it('recovery values are checked where they are written', () => {
    const r = parsePolicy(
      'version: 1\nrecovery: {mode: sometimes, backoff: 0.5, maxTries: 0}\nports:\n  - {match: v, role: vm, recovery: {cooldownMs: -1, probeMs: "2000", bogus: 1}}\n',
      'x',
    );
    expect('errors' in r).toBe(true);
    const fields = 'errors' in r ? r.errors.map((e) => `${e.line}:${e.field}:${e.code}`).sort() : [];
    expect(fields).toEqual([
      '2:recovery.backoff:E_POLICY_RANGE',
      '2:recovery.maxTries:E_POLICY_RANGE',
      '2:recovery.mode:E_POLICY_VALUE',
      '4:ports[0].recovery.bogus:E_POLICY_UNKNOWN_KEY',
      '4:ports[0].recovery.cooldownMs:E_POLICY_RANGE',
      '4:ports[0].recovery.probeMs:E_POLICY_TYPE',
    ]);
  });

  it('policy-wide dryRun applies to every port', () => {
    const p = ok(parsePolicy('version: 1\ndryRun: true\nports:\n  - {match: a, role: vm, dryRun: false}\n', 'x'));
    expect(resolvePort(p, 'a')?.dryRun).toBe(true);
  });

  it('an explicit shutOrder may include mgmt and reorders ranks', () => {
    const p = ok(parsePolicy('version: 1\nbreaker: {shutOrder: [uplink, mgmt]}\nports:\n  - {match: m, role: mgmt}\n  - {match: u, role: uplink}\n  - {match: v, role: vm}\n', 'x'));
    const m = resolvePorts(p, ['m', 'u', 'v']);
    expect([m.get('u')?.shutRank, m.get('m')?.shutRank, m.get('v')?.shutRank]).toEqual([1, 1000, Infinity]);
    expect(m.get('m')?.protected).toBe(true);
  });
});

describe('reachability (issue 5 item 7)', () => {
  it('is off when absent, and defaults timeoutMs 300 and tries 2 when a target is written', () => {
    expect(ok(parsePolicy('version: 1\n', 'x')).reachability).toBeUndefined();
    expect(ok(parsePolicy('version: 1\nreachability: { target: 192.0.2.1 }\n', 'x')).reachability).toEqual({ target: '192.0.2.1', timeoutMs: 300, tries: 2 });
    expect(ok(parsePolicy('version: 1\nreachability: { target: "10.0.0.254", timeoutMs: 50, tries: 5 }\n', 'x')).reachability).toEqual({ target: '10.0.0.254', timeoutMs: 50, tries: 5 });
  });

  it('rejects a target that is not a dotted-quad IPv4 address, with its position', () => {
    for (const t of ['gw.example', '256.1.1.1', '10.0.0', '01.2.3.4', '::1', '1.2.3.4 ']) {
      const e = errs(parsePolicy(`version: 1\nreachability: { target: ${JSON.stringify(t)} }\n`, 'x'));
      expect(e.map((x) => [x.code, x.field, x.line]), t).toEqual([['E_POLICY_VALUE', 'reachability.target', 2]]);
    }
  });

  it('requires the target whenever reachability is written, and bounds timeoutMs and tries', () => {
    expect(errs(parsePolicy('version: 1\nreachability: { tries: 3 }\n', 'x')).map((x) => [x.code, x.field])).toEqual([['E_POLICY_MISSING', 'reachability.target']]);
    const e = errs(parsePolicy('version: 1\nreachability: { target: 192.0.2.1, timeoutMs: 0, tries: 11 }\n', 'x'));
    expect(e.map((x) => [x.code, x.field]).sort()).toEqual([
      ['E_POLICY_RANGE', 'reachability.timeoutMs'],
      ['E_POLICY_RANGE', 'reachability.tries'],
    ]);
    expect(errs(parsePolicy('version: 1\nreachability: { target: 192.0.2.1, tries: 1.5 }\n', 'x')).map((x) => x.code)).toEqual(['E_POLICY_TYPE']);
  });
});
