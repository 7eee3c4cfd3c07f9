// Policy as code: policy directories (merge and precedence), policies/schema.json kept honest
// against the loader, effectivePolicy, and the example pre-commit hook run in real git repos.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import { ESXI_HOST_DEFAULTS, MAX_POLICY_BYTES, MAX_POLICY_FILES, NOTIFY_DEFAULTS, POLICY_DEFAULTS, REACHABILITY_DEFAULTS } from '../../agent/policy/defaults.js';
import { PolicyError, type PolicyErrorCode } from '../../agent/policy/errors.js';
import { loadPolicy, loadPolicyFile, parsePolicy, type PolicyResult } from '../../agent/policy/load.js';
import { effectivePolicy, resolvePorts } from '../../agent/policy/match.js';
import { POLICY_KEYS } from '../../agent/policy/schema.js';
import { ROLES, type Policy } from '../../agent/types.js';
import { ok, errs } from '../helpers/policy-result.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/policies');
const HOOK = join(ROOT, 'scripts/pre-commit-policy-check.sh');
const run = promisify(execFile);

/** [file (basename, or '' for the directory itself), line, col, field, code], in reported order. */
type Expect = [string, number, number, string, PolicyErrorCode];
function brief(dir: string, es: PolicyError[]): Expect[] {
  return es.map((e) => {
    if (e.file !== dir) expect(dirname(e.file)).toBe(dir);
    return [e.file === dir ? '' : basename(e.file), e.line, e.col, e.field, e.code];
  });
}

let tmpRoot = '';
beforeAll(async () => {
  tmpRoot = await mkdtemp(join(tmpdir(), 'sb-policy-dir-'));
});
afterAll(async () => {
  await rm(tmpRoot, { recursive: true, force: true });
});
let tmpCount = 0;
/** A fresh directory holding `files` (name -> text). */
async function makeDir(files: Record<string, string | Buffer>): Promise<string> {
  const dir = join(tmpRoot, `d${tmpCount++}`);
  await mkdir(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

// ---- directories ----------------------------------------------------------------------------

describe('policy directory: merge and precedence', () => {
  const dir = join(FIX, 'dir-good');

  it('merges settings key by key (later files win), concatenates ports in file order', async () => {
    const p = ok(await loadPolicy(dir));
    expect(p.file).toBe(dir);
    // idleMs/activeMs from 10-base, activeHoldMs from 30-host.
    expect(p.sampling).toEqual({ idleMs: 20, activeMs: 2, activeHoldMs: 5000, realtimePriority: 10 });
    // floodPps: 20-site overrides 10-base; clearPps: 10-base; the rest built-in.
    expect(p.defaults).toEqual({ ...POLICY_DEFAULTS.defaults, floodPps: 25000, clearPps: 8000 });
    // A list setting is one value: 30-host replaces 10-base's shutOrder whole.
    expect(p.breaker).toEqual({ ...POLICY_DEFAULTS.breaker, shutOrder: ['other', 'vm'], floodShutRoles: ['vm', 'other'] });
    expect(p.actions).toEqual({ timeoutMs: 2000, retries: 0 });
    expect(p.dryRun).toBe(true);
    // Lines are within each rule's own file.
    expect(p.ports).toEqual([
      { match: 'mgmt*', role: 'mgmt', protected: true, thresholds: {}, line: 12 },
      { match: 'eno?', role: 'uplink', protected: false, thresholds: {}, line: 14 },
      { match: 'vnet*', role: 'vm', protected: false, thresholds: { holdSamples: 3 }, line: 7 },
      { match: 'tap*', role: 'other', protected: false, thresholds: {}, dryRun: true, line: 9 },
    ]);
  });

  it('reads only *.yaml / *.yml directly in the directory, skipping dot files and subdirectories', async () => {
    // dir-good also holds README.md, .hidden.yaml (invalid) and sub/40-nested.yaml (version 2).
    expect((await readdir(dir)).sort()).toEqual(['.hidden.yaml', '10-base.yaml', '20-site.yaml', '30-host.yml', 'README.md', 'sub']);
    ok(await loadPolicy(dir));
  });

  it('hash: sha256 over name NUL length NUL bytes of each file in name order, first 12 hex', async () => {
    const names = ['10-base.yaml', '20-site.yaml', '30-host.yml'];
    const h = createHash('sha256');
    for (const n of names) {
      const b = await readFile(join(dir, n));
      h.update(`${n}\0${b.length}\0`).update(b);
    }
    expect(ok(await loadPolicy(dir)).hash).toBe(h.digest('hex').slice(0, 12));
  });

  it('hash changes when a file is renamed, edited or added; not for files that are not read', async () => {
    const files = { '10-a.yaml': 'version: 1\n', '20-b.yaml': 'version: 1\ndryRun: true\n' };
    const d = await makeDir(files);
    const h0 = ok(await loadPolicy(d)).hash;
    await writeFile(join(d, 'notes.txt'), 'x');
    await writeFile(join(d, '.swap.yaml'), 'x');
    expect(ok(await loadPolicy(d)).hash).toBe(h0);
    await rename(join(d, '20-b.yaml'), join(d, '30-b.yaml'));
    const h1 = ok(await loadPolicy(d)).hash;
    expect(h1).not.toBe(h0);
    await writeFile(join(d, '30-b.yaml'), 'version: 1\ndryRun: false\n');
    const h2 = ok(await loadPolicy(d)).hash;
    expect(new Set([h0, h1, h2]).size).toBe(3);
    await writeFile(join(d, '40-c.yml'), 'version: 1\n');
    expect(ok(await loadPolicy(d)).hash).not.toBe(h2);
    // Moving a line between files changes the hash even though the concatenated bytes do not.
    const x = await makeDir({ 'a.yaml': 'version: 1\n#\n', 'b.yaml': 'version: 1\n' });
    const y = await makeDir({ 'a.yaml': 'version: 1\n', 'b.yaml': '#\nversion: 1\n' });
    expect(ok(await loadPolicy(x)).hash).not.toBe(ok(await loadPolicy(y)).hash);
  });

  it('files load in code-unit order of their names (use numeric prefixes of equal width)', async () => {
    // 'B' (0x42) < 'a' (0x61), and '10' < '9': later files win on settings.
    const d = await makeDir({
      'a.yaml': 'version: 1\ndefaults: {floodPps: 11000}\n',
      'B.yaml': 'version: 1\ndefaults: {floodPps: 12000}\n',
      '9-x.yaml': 'version: 1\nactions: {retries: 9}\n',
      '10-x.yaml': 'version: 1\nactions: {retries: 10}\n',
    });
    const p = ok(await loadPolicy(d));
    expect(p.defaults.floodPps).toBe(11000);
    expect(p.actions.retries).toBe(9);
  });

  it('earlier files win on first match: a base rule cannot be overridden by a later glob', async () => {
    const d = await makeDir({
      '10-base.yaml': 'version: 1\nports:\n  - {match: mgmt0, role: mgmt}\n',
      '20-site.yaml': 'version: 1\nports:\n  - {match: "*", role: vm}\n',
    });
    const p = ok(await loadPolicy(d));
    expect(resolvePorts(p, ['mgmt0', 'vnet1']).get('mgmt0')).toMatchObject({ role: 'mgmt', protected: true, rule: 0 });
    expect(resolvePorts(p, ['mgmt0', 'vnet1']).get('vnet1')).toMatchObject({ role: 'vm', rule: 1 });
  });

  it('a directory of one file is that file (but policy.file is the directory, and the hash differs)', async () => {
    const text = await readFile(join(ROOT, 'policies/kvm-host.yaml'), 'utf8');
    const d = await makeDir({ 'kvm-host.yaml': text });
    const fromDir = ok(await loadPolicy(d));
    const fromFile = ok(parsePolicy(text, 'x'));
    expect({ ...fromDir, file: '', hash: '' }).toEqual({ ...fromFile, file: '', hash: '' });
    expect(fromDir.file).toBe(d);
    expect(fromDir.hash).not.toBe(fromFile.hash);
  });

  it('loadPolicyFile accepts a directory too (the daemon and CLI call it), and a symlink to one', async () => {
    const link = join(tmpRoot, `link${tmpCount++}`);
    await symlink(dir, link);
    expect(ok(await loadPolicyFile(dir)).hash).toBe(ok(await loadPolicy(dir)).hash);
    const p = ok(await loadPolicyFile(link));
    expect(p.file).toBe(link);
    expect(p.hash).toBe(ok(await loadPolicy(dir)).hash);
  });

  it('a symlinked file inside the directory is followed', async () => {
    const d = await makeDir({});
    await symlink(join(ROOT, 'policies/lab.yaml'), join(d, '10-lab.yaml'));
    expect(ok(await loadPolicy(d)).ports.map((r) => r.match)).toEqual(['up*', 'vm*', 'mgmt*']);
  });

  it('merging a split policy gives what one file with the merged content gives (property)', async () => {
    // Values are kept clear of the cross-checks (clear < flood, active <= idle) and every match is
    // unique, so the only thing under test is the merge: key by key, later wins, ports concatenated.
    const flood = fc.integer({ min: 20001, max: 1_000_000 });
    const clear = fc.integer({ min: 1, max: 4999 });
    const role = fc.constantFrom(...ROLES);
    const part = fc.record(
      {
        sampling: fc.record({ idleMs: fc.integer({ min: 10, max: 1000 }), activeMs: fc.integer({ min: 1, max: 10 }), activeHoldMs: fc.integer({ min: 1, max: 1e6 }) }, { requiredKeys: [] }),
        defaults: fc.record({ floodPps: flood, clearPps: clear, holdSamples: fc.integer({ min: 1, max: 9 }), broadcastShare: fc.double({ min: 0, max: 1, noNaN: true }) }, { requiredKeys: [] }),
        breaker: fc.record({ maxShuts: fc.integer({ min: 1, max: 9 }), shutOrder: fc.uniqueArray(role, { minLength: 1 }), floodShutRoles: fc.uniqueArray(role) }, { requiredKeys: [] }),
        actions: fc.record({ retries: fc.integer({ min: 0, max: 100 }), timeoutMs: fc.integer({ min: 1, max: 1e5 }) }, { requiredKeys: [] }),
        fdb: fc.record({ enabled: fc.boolean() }, { requiredKeys: [] }),
        dryRun: fc.boolean(),
        ports: fc.array(fc.record({ role, thresholds: fc.record({ floodPps: flood, clearPps: clear }, { requiredKeys: [] }), dryRun: fc.boolean() }, { requiredKeys: ['role'] }), { maxLength: 4 }),
      },
      { requiredKeys: [] },
    );
    type Part = Record<string, unknown> & { ports?: Array<Record<string, unknown>> };
    await fc.assert(
      fc.asyncProperty(fc.array(part, { minLength: 1, maxLength: 4 }), async (parts: Part[]) => {
        let n = 0;
        const files: Record<string, string> = {};
        const merged: Record<string, unknown> = { version: 1 };
        parts.forEach((p, i) => {
          const doc: Part = { version: 1, ...p };
          if (p.ports) doc.ports = p.ports.map((r) => ({ match: `r${n++}*`, ...r }));
          files[`${String(i).padStart(2, '0')}-part.yaml`] = stringify(doc);
          // The reference merge, written independently of merge.ts.
          for (const [k, v] of Object.entries(doc)) {
            if (k === 'ports') merged.ports = [...((merged.ports as unknown[]) ?? []), ...(v as unknown[])];
            else if (v !== null && typeof v === 'object') merged[k] = { ...(merged[k] as object), ...v };
            else merged[k] = v;
          }
        });
        const d = await makeDir(files);
        const fromDir = ok(await loadPolicy(d));
        const fromOne = ok(parsePolicy(stringify(merged), 'one.yaml'));
        const strip = (p: Policy) => ({ ...p, file: '', hash: '', ports: p.ports.map((r) => ({ ...r, line: 0 })) });
        expect(strip(fromDir)).toEqual(strip(fromOne));
        await rm(d, { recursive: true });
      }),
      { numRuns: 60 },
    );
  });
});

describe('policy directory: errors keep their own file:line:col', () => {
  const CASES: Record<string, Expect[]> = {
    'dir-dup-match': [['20-b.yaml', 5, 12, 'ports[1].match', 'E_POLICY_DUPLICATE']],
    'dir-shadow': [['20-b.yaml', 3, 12, 'ports[0].match', 'E_POLICY_VALUE']],
    'dir-errors': [
      ['10-a.yaml', 2, 1, 'version', 'E_POLICY_MISSING'],
      ['20-b.yaml', 3, 3, 'defaults.floodpps', 'E_POLICY_UNKNOWN_KEY'],
      ['20-b.yaml', 4, 16, 'defaults.holdSamples', 'E_POLICY_RANGE'],
      ['20-b.yaml', 8, 28, 'ports[0].thresholds.clearPps', 'E_POLICY_RANGE'],
      ['30-c.yaml', 1, 10, 'version', 'E_POLICY_VERSION'],
      ['30-c.yaml', 2, 9, 'dryRun', 'E_POLICY_TYPE'],
    ],
    'dir-cross': [
      ['20-site.yaml', 3, 13, 'sampling.activeMs', 'E_POLICY_RANGE'],
      ['20-site.yaml', 5, 13, 'defaults.floodPps', 'E_POLICY_RANGE'],
      ['30-host.yaml', 6, 17, 'ports[0].thresholds.clearPps', 'E_POLICY_RANGE'],
    ],
    // A file that does not parse stops cross-checks, but the other files' own errors still show.
    'dir-syntax': [
      ['10-a.yaml', 4, 1, '(yaml)', 'E_POLICY_YAML'],
      ['10-a.yaml', 4, 1, '(yaml)', 'E_POLICY_YAML'],
      ['20-b.yaml', 2, 1, 'colour', 'E_POLICY_UNKNOWN_KEY'],
    ],
    'dir-empty': [['', 0, 0, '(file)', 'E_POLICY_EMPTY']],
  };

  it('every dir-* fixture except dir-good has expectations here', async () => {
    const dirs = (await readdir(FIX)).filter((d) => d.startsWith('dir-') && d !== 'dir-good').sort();
    expect(dirs).toEqual(Object.keys(CASES).sort());
  });

  for (const [name, expected] of Object.entries(CASES)) {
    it(name, async () => {
      const dir = join(FIX, name);
      const es = errs(await loadPolicy(dir));
      expect(brief(dir, es)).toEqual(expected);
      for (const e of es) expect(e.message).not.toMatch(/\n/);
    });
  }

  it('a match repeated in two files names both places; a cross-file shadow names the earlier file', async () => {
    const a = join(FIX, 'dir-dup-match', '10-a.yaml');
    expect(errs(await loadPolicy(join(FIX, 'dir-dup-match')))[0]?.message).toBe(
      `same match as ports[1] at ${a}:5:12; the first rule wins, so this one never applies`,
    );
    const s = join(FIX, 'dir-shadow', '10-a.yaml');
    expect(errs(await loadPolicy(join(FIX, 'dir-shadow')))[0]?.message).toBe(
      `never applies: ports[0] ("vm*" at ${s}:3:12) matches vm7 first; earlier files' rules win, so move this rule into that file above it`,
    );
  });

  it('a cross-check between two files blames the later file and points at the earlier value', async () => {
    const base = join(FIX, 'dir-cross', '10-base.yaml');
    const site = join(FIX, 'dir-cross', '20-site.yaml');
    expect(errs(await loadPolicy(join(FIX, 'dir-cross'))).map((e) => e.message)).toEqual([
      `must be <= sampling.idleMs (5, set at ${base}:3:11)`,
      `must be > clearPps (8000, set at ${base}:6:13)`,
      `must be < floodPps (6000, from defaults, set at ${site}:5:13)`,
    ]);
    // The other way round: the later file wrote idleMs, so idleMs is blamed.
    const d = await makeDir({ '1.yaml': 'version: 1\nsampling: {activeMs: 8}\n', '2.yaml': 'version: 1\nsampling: {idleMs: 5}\n' });
    const es = errs(await loadPolicy(d));
    expect(brief(d, es)).toEqual([['2.yaml', 2, 20, 'sampling.idleMs', 'E_POLICY_RANGE']]);
    expect(es[0]?.message).toBe(`must be >= sampling.activeMs (8, set at ${join(d, '1.yaml')}:2:22)`);
    // Within one file nothing changes: clearPps is blamed, no "set at".
    expect(errs(parsePolicy('version: 1\ndefaults: {floodPps: 6000, clearPps: 8000}\n', 'x'))[0]).toMatchObject({ field: 'defaults.clearPps', message: 'must be < floodPps (6000)' });
  });

  it('an error in one rule does not hide the same-numbered rule of another file (bad fields are per file)', async () => {
    const d = await makeDir({
      '1.yaml': 'version: 1\nports:\n  - {match: a, role: vm, thresholds: {floodPps: -1}}\n',
      '2.yaml': 'version: 1\nports:\n  - {match: b, role: vm, thresholds: {floodPps: 3000}}\n',
    });
    expect(brief(d, errs(await loadPolicy(d)))).toEqual([
      ['1.yaml', 3, 49, 'ports[0].thresholds.floodPps', 'E_POLICY_RANGE'],
      ['2.yaml', 3, 49, 'ports[0].thresholds.floodPps', 'E_POLICY_RANGE'],
    ]);
  });

  it('I/O: missing path, a *.yaml subdirectory, a dangling symlink, a huge file, too many files', async () => {
    const missing = join(tmpRoot, 'nope');
    expect(brief(tmpRoot, errs(await loadPolicy(missing)))).toEqual([['nope', 0, 0, '(file)', 'E_POLICY_IO']]);

    const d = await makeDir({ '10-a.yaml': 'version: 1\ncolour: 1\n' });
    await mkdir(join(d, '20-sub.yaml'));
    await symlink(join(d, 'gone'), join(d, '30-dangling.yaml'));
    await writeFile(join(d, '40-big.yaml'), 'version: 1\n#' + 'x'.repeat(MAX_POLICY_BYTES));
    const es = errs(await loadPolicy(d));
    expect(brief(d, es)).toEqual([
      ['10-a.yaml', 2, 1, 'colour', 'E_POLICY_UNKNOWN_KEY'],
      ['20-sub.yaml', 0, 0, '(file)', 'E_POLICY_IO'],
      ['30-dangling.yaml', 0, 0, '(file)', 'E_POLICY_IO'],
      ['40-big.yaml', 0, 0, '(file)', 'E_POLICY_SIZE'],
    ]);
    expect(es[1]?.message).toMatch(/directory/);
    expect(es[2]?.message).toMatch(/ENOENT/);

    const many: Record<string, string> = {};
    for (let i = 0; i <= MAX_POLICY_FILES; i++) many[`${String(i).padStart(3, '0')}.yaml`] = 'version: 1\n';
    const m = await makeDir(many);
    expect(brief(m, errs(await loadPolicy(m)))).toEqual([['', 0, 0, '(file)', 'E_POLICY_SIZE']]);
    await unlink(join(m, '000.yaml'));
    ok(await loadPolicy(m));
  });

  it('at most 1000 rules in all files together (shutRank would spill into the next role)', async () => {
    const rules = (from: number, n: number) => 'version: 1\nports:\n' + Array.from({ length: n }, (_, i) => `  - {match: p${from + i}, role: vm}\n`).join('');
    const d = await makeDir({ 'a.yaml': rules(0, 600), 'b.yaml': rules(600, 600) });
    const es = errs(await loadPolicy(d));
    expect(brief(d, es)).toEqual([['b.yaml', 403, 5, 'ports[400]', 'E_POLICY_RANGE']]);
    const e = await makeDir({ 'a.yaml': rules(0, 500), 'b.yaml': rules(500, 500) });
    expect(ok(await loadPolicy(e)).ports).toHaveLength(1000);
  });

  it('errors are capped across all files, grouped by file in load order', async () => {
    const bad = (n: number) => 'version: 1\n' + Array.from({ length: n }, (_, i) => `k${i}: 1\n`).join('');
    const d = await makeDir({ 'a.yaml': bad(70), 'b.yaml': bad(70) });
    const es = errs(await loadPolicy(d));
    expect(es).toHaveLength(101);
    expect(es.slice(0, 70).every((e) => basename(e.file) === 'a.yaml')).toBe(true);
    expect(es[100]?.message).toBe('40 more errors not shown');
  });

  it('never throws: a directory of arbitrary files gives a policy or errors (property)', async () => {
    const text = fc.oneof(
      fc.constant('version: 1\n'),
      fc.constant('version: 1\nports:\n  - {match: "vm*", role: vm}\n'),
      fc.constant('dryRun: true\n'),
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'binary', maxLength: 80 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z0-9]{1,6}$/), fc.constantFrom('.yaml', '.yml', '.txt'), text), { selector: (t) => t[0] + t[1], maxLength: 5 }), async (fs) => {
        const d = await makeDir(Object.fromEntries(fs.map(([n, ext, t]) => [n + ext, t])));
        const r = await loadPolicy(d);
        if ('policy' in r) expect(r.policy.file).toBe(d);
        else for (const e of r.errors) expect(e).toBeInstanceOf(PolicyError);
        await rm(d, { recursive: true });
      }),
      { numRuns: 80 },
    );
  });
});

// ---- effectivePolicy ------------------------------------------------------------------------

describe('effectivePolicy', () => {
  it('per port: rule index and line, merged thresholds and which came from the rule, shutRank, dryRun', async () => {
    const p = ok(await loadPolicy(join(FIX, 'dir-good')));
    const eff = effectivePolicy(p, ['vnet0', 'eno1', 'mgmt0', 'tap7', 'br0', 'vnet0', 'bad name', 'eno12']);
    expect(eff.unmatched).toEqual(['br0', 'eno12']);
    expect(eff.invalid).toEqual(['bad name']);
    expect(eff.ports.map((x) => x.port)).toEqual(['vnet0', 'eno1', 'mgmt0', 'tap7']);
    const thresholds = { ...POLICY_DEFAULTS.defaults, floodPps: 25000, clearPps: 8000 };
    expect(eff.ports[0]).toEqual({
      port: 'vnet0',
      role: 'vm',
      protected: false,
      rule: { index: 2, line: 7, match: 'vnet*' },
      thresholds: { ...thresholds, holdSamples: 3 },
      fromRule: ['holdSamples'],
      // shutOrder [other, vm] (30-host): vm is second.
      shutRank: 1 * 1000 + 2,
      // The policy-wide dryRun of 20-site.
      dryRun: true,
    });
    expect(eff.ports[1]).toMatchObject({ role: 'uplink', rule: { index: 1, line: 14 }, shutRank: Infinity, fromRule: [] });
    expect(eff.ports[2]).toMatchObject({ role: 'mgmt', protected: true, rule: { index: 0, line: 12, match: 'mgmt*' }, shutRank: Infinity });
    expect(eff.ports[3]).toMatchObject({ role: 'other', rule: { index: 3, line: 9 }, shutRank: 3, thresholds });
  });

  it('agrees with resolvePorts on every name (property)', () => {
    const p = ok(parsePolicy('version: 1\nports:\n  - {match: "vm?", role: vm, thresholds: {clearPps: 100}}\n  - {match: "e*", role: uplink, dryRun: true}\n  - {match: m0, role: mgmt}\n', 'x'));
    const name = fc.oneof(fc.stringMatching(/^[a-z0-9]{0,5}$/), fc.constantFrom('vm1', 'e', 'm0', 'eth0', 'a b', 'x'.repeat(16)));
    fc.assert(
      fc.property(fc.array(name, { maxLength: 10 }), (names) => {
        const eff = effectivePolicy(p, names);
        const m = resolvePorts(p, names);
        expect(eff.ports.map((x) => x.port).sort()).toEqual([...m.keys()].sort());
        for (const x of eff.ports) {
          const pp = m.get(x.port)!;
          expect([x.role, x.protected, x.rule.index, x.thresholds, x.shutRank, x.dryRun]).toEqual([pp.role, pp.protected, pp.rule, pp.thresholds, pp.shutRank, pp.dryRun]);
        }
        const all = new Set([...eff.ports.map((x) => x.port), ...eff.unmatched, ...eff.invalid]);
        expect(all).toEqual(new Set(names));
        expect(all.size).toBe(eff.ports.length + eff.unmatched.length + eff.invalid.length);
      }),
      { numRuns: 300 },
    );
  });

  it('a policy with no rules watches nothing', () => {
    expect(effectivePolicy(ok(parsePolicy('version: 1\n', 'x')), ['eth0'])).toEqual({ ports: [], unmatched: ['eth0'], invalid: [] });
  });
});

// ---- policies/schema.json -------------------------------------------------------------------

type S = Record<string, unknown>;
const SCHEMA = JSON.parse(await readFile(join(ROOT, 'policies/schema.json'), 'utf8')) as S;
/** Keywords the schema may use; the mini validator below implements every one that validates. */
const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', 'default', 'examples', '$defs']);
const ASSERTIONS = new Set([
  '$ref', 'type', 'const', 'enum', 'properties', 'additionalProperties', 'required', 'minimum', 'exclusiveMinimum', 'maximum',
  'pattern', 'items', 'minItems', 'maxItems', 'uniqueItems', 'anyOf',
]);

/** Follow a local $ref; sibling keywords of a $ref must be annotations only (checked below). */
function deref(s: S): S {
  const ref = s.$ref;
  if (typeof ref !== 'string') return s;
  const m = /^#\/\$defs\/(\w+)$/.exec(ref);
  const target = m ? ((SCHEMA.$defs as Record<string, S>)[m[1] as string] as S | undefined) : undefined;
  if (!target) throw new Error(`unresolvable $ref ${ref}`);
  const { $ref: _, ...rest } = s;
  return { ...deref(target), ...rest };
}

/** Every (sub)schema, for keyword checks. */
function allSchemas(s: unknown, out: S[] = []): S[] {
  if (s === null || typeof s !== 'object' || Array.isArray(s)) return out;
  const o = s as S;
  out.push(o);
  for (const k of ['properties', '$defs'] as const) for (const v of Object.values((o[k] as S | undefined) ?? {})) allSchemas(v, out);
  if (o.items) allSchemas(o.items, out);
  for (const b of (o.anyOf as unknown[] | undefined) ?? []) allSchemas(b, out);
  return out;
}

/** Section key lists of the schema: '' (root), 'sampling', ..., 'ports[]', 'ports[].thresholds'. */
function schemaKeys(s: S, path = '', out = new Map<string, string[]>()): Map<string, string[]> {
  const r = deref(s);
  if (r.properties) {
    const props = r.properties as Record<string, S>;
    out.set(path, Object.keys(props));
    for (const [k, v] of Object.entries(props)) schemaKeys(v, path ? `${path}.${k}` : k, out);
  }
  if (r.items) schemaKeys(r.items as S, `${path}[]`, out);
  return out;
}

/** Each leaf (non-object) property: path and its schema, with `ports[]` standing for any rule. */
function schemaLeaves(s: S, path = '', out: Array<[string, S]> = []): Array<[string, S]> {
  const r = deref(s);
  if (r.properties) for (const [k, v] of Object.entries(r.properties as Record<string, S>)) schemaLeaves(v, path ? `${path}.${k}` : k, out);
  else if (path) out.push([path, r]);
  if (r.items && deref(r.items as S).properties) schemaLeaves(r.items as S, `${path}[]`, out);
  return out;
}

const typeOf = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;

/** A small draft 2020-12 validator for exactly the keywords above; returns failing paths in loader field syntax. */
function validate(s: S, v: unknown, path = '', out: string[] = []): string[] {
  const r = deref(s);
  const at = path || '(document)';
  const fail = (p = at) => void out.push(p);
  if ('const' in r && JSON.stringify(v) !== JSON.stringify(r.const)) return (fail(), out);
  if (r.enum && !(r.enum as unknown[]).some((e) => e === v)) return (fail(), out);
  if (r.type) {
    const t = typeOf(v);
    if (!(t === r.type || (r.type === 'number' && t === 'integer'))) return (fail(), out);
  }
  if (typeof v === 'number') {
    if (typeof r.minimum === 'number' && v < r.minimum) fail();
    else if (typeof r.exclusiveMinimum === 'number' && v <= r.exclusiveMinimum) fail();
    else if (typeof r.maximum === 'number' && v > r.maximum) fail();
  }
  if (typeof v === 'string' && typeof r.pattern === 'string' && !new RegExp(r.pattern, 'u').test(v)) fail();
  // anyOf fails at the object itself (the loader says e.g. `notify`: write webhook or hookArgv).
  if (r.anyOf && !(r.anyOf as S[]).some((b) => validate(b, v, path, []).length === 0)) fail();
  if (Array.isArray(v)) {
    if (typeof r.minItems === 'number' && v.length < r.minItems) fail();
    if (typeof r.maxItems === 'number' && v.length > r.maxItems) fail();
    const seen: string[] = [];
    v.forEach((item, i) => {
      const p = `${path}[${i}]`;
      const before = out.length;
      if (r.items) validate(r.items as S, item, p, out);
      const key = JSON.stringify(item);
      if (out.length === before && r.uniqueItems && seen.includes(key)) fail(p);
      seen.push(key);
    });
  }
  if (typeOf(v) === 'object') {
    const o = v as S;
    const props = (r.properties ?? {}) as Record<string, S>;
    for (const k of (r.required ?? []) as string[]) if (!(k in o)) fail(path ? `${path}.${k}` : k);
    for (const [k, val] of Object.entries(o)) {
      const p = path ? `${path}.${k}` : k;
      if (props[k]) validate(props[k], val, p, out);
      else if (r.additionalProperties === false) fail(p);
    }
  }
  return out;
}

/** Loader errors a JSON Schema cannot express: they compare two values. */
const CROSS = /^(must be [<>]=? (floodPps|clearPps|sampling\.|2 x sampleMs|staleMs \/ 2)|same (match|name) as|never applies|required when actions lists)/;

/** A valid esxi host: leaves of `esxi.hosts[]` are tried inside it. */
const ESXI_HOST = {
  name: 'esx1',
  address: '192.0.2.10',
  identityFile: '/etc/stormbreaker/esx1_ed25519',
  knownHostsFile: '/etc/stormbreaker/known_hosts',
  vmnics: [{ name: 'vmnic0', role: 'uplink' }],
  quarantineVlan: 4001,
};
/**
 * A policy with one leaf (a schemaLeaves path) set to v, inside a rule for `ports[].`, inside a
 * valid host (or its vmnic) for `esxi.hosts[].`; and the loader's field name for it.
 */
function docWithLeaf(path: string, v: unknown): { doc: S; field: string } {
  const doc: S = { version: 1 };
  let o: S = doc;
  let rest = path;
  if (path.startsWith('ports[].')) {
    o = { match: 'vnet*', role: 'vm' };
    doc.ports = [o];
    rest = path.slice('ports[].'.length);
  } else if (path.startsWith('esxi.hosts[].')) {
    o = structuredClone(ESXI_HOST) as S;
    doc.esxi = { hosts: [o] };
    rest = path.slice('esxi.hosts[].'.length);
    if (rest.startsWith('vmnics[].')) {
      o = (o.vmnics as S[])[0] as S;
      rest = rest.slice('vmnics[].'.length);
    }
  }
  const keys = rest.split('.');
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as S;
  o[keys[keys.length - 1] as string] = v;
  return { doc, field: path.replace(/\[\]/g, '[0]') };
}
const loaderFields = (r: PolicyResult): string[] =>
  'errors' in r ? [...new Set(r.errors.filter((e) => !CROSS.test(e.message)).map((e) => e.field))].sort() : [];

describe('policies/schema.json matches the loader', () => {
  it('uses only keywords the validator here implements; $ref siblings are annotations only', () => {
    expect(SCHEMA.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    for (const s of allSchemas(SCHEMA)) {
      for (const k of Object.keys(s)) expect(ANNOTATIONS.has(k) || ASSERTIONS.has(k), `keyword ${k}`).toBe(true);
      if (s.$ref) for (const k of Object.keys(s)) expect(k === '$ref' || ANNOTATIONS.has(k), `$ref sibling ${k}`).toBe(true);
      // Every object is closed: a typo must be flagged in the editor as the loader flags it.
      if (s.properties) expect(s.additionalProperties).toBe(false);
    }
  });

  it('lists exactly the keys the loader accepts, section by section, in the same order', () => {
    const fromSchema = schemaKeys(SCHEMA);
    const fromLoader = new Map<string, readonly string[]>([
      ['', POLICY_KEYS.root],
      ['sampling', POLICY_KEYS.sampling],
      ['defaults', POLICY_KEYS.defaults],
      ['breaker', POLICY_KEYS.breaker],
      ['recovery', POLICY_KEYS.recovery],
      ['actions', POLICY_KEYS.actions],
      ['fdb', POLICY_KEYS.fdb],
      ['reachability', POLICY_KEYS.reachability],
      ['metrics', POLICY_KEYS.metrics],
      ['notify', POLICY_KEYS.notify],
      ['esxi', POLICY_KEYS.esxi],
      ['esxi.hosts[]', POLICY_KEYS.esxiHost],
      ['esxi.hosts[].vmnics[]', POLICY_KEYS.esxiVmnic],
      ['esxi.hosts[].thresholds', POLICY_KEYS.esxiThresholds],
      ['ports[]', POLICY_KEYS.rule],
      ['ports[].thresholds', POLICY_KEYS.thresholds],
      ['ports[].recovery', POLICY_KEYS.ruleRecovery],
    ]);
    expect(Object.fromEntries(fromSchema)).toEqual(Object.fromEntries(fromLoader));
  });

  it('every key in POLICY_DEFAULTS is in the schema with that default, and every schema default is the product default', () => {
    const leaves = new Map(schemaLeaves(SCHEMA));
    const walk = (o: object, path: string): void => {
      for (const [k, v] of Object.entries(o)) {
        const p = path ? `${path}.${k}` : k;
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v, p);
        else {
          expect(leaves.has(p), `schema lacks ${p}`).toBe(true);
          expect(leaves.get(p)?.default, p).toEqual(v);
        }
      }
    };
    walk(POLICY_DEFAULTS, '');
    for (const [p, s] of leaves) {
      if (!('default' in s)) continue;
      // Rule thresholds share $defs/thresholds, whose defaults are those of `defaults`.
      // Rule recovery shares $defs/recovery, whose defaults are those of the top-level `recovery`.
      // An esxi host's thresholds share $defs/thresholds too.
      const key = p
        .replace(/^(ports|esxi\.hosts)\[\]\.thresholds\./, 'defaults.')
        .replace(/^ports\[\]\.recovery\./, 'recovery.');
      if (key === 'ports[].dryRun') expect(s.default).toBe(false);
      // esxi is off unless hosts are written: a host's defaults live apart from POLICY_DEFAULTS.
      else if (key.startsWith('esxi.hosts[].')) expect(ESXI_HOST_DEFAULTS[key.slice('esxi.hosts[].'.length) as keyof typeof ESXI_HOST_DEFAULTS], p).toEqual(s.default);
      // reachability is off unless a target is written, so its defaults live apart from POLICY_DEFAULTS.
      else if (key.startsWith('reachability.')) expect(REACHABILITY_DEFAULTS[key.slice('reachability.'.length) as keyof typeof REACHABILITY_DEFAULTS], p).toEqual(s.default);
      // notify, likewise, is off unless a webhook or hookArgv is written.
      else if (key.startsWith('notify.')) expect(NOTIFY_DEFAULTS[key.slice('notify.'.length) as keyof typeof NOTIFY_DEFAULTS], p).toEqual(s.default);
      else expect(key.split('.').reduce<unknown>((o, k) => (o as S)[k], POLICY_DEFAULTS), p).toEqual(s.default);
    }
    for (const [k, v] of Object.entries(ESXI_HOST_DEFAULTS)) expect(leaves.get(`esxi.hosts[].${k}`)?.default, `esxi.hosts[].${k}`).toEqual(v);
  });

  it('the schema has no key the loader rejects: each leaf, written alone with a valid value, loads', () => {
    const sample = (s: S): unknown =>
      'default' in s ? s.default : 'const' in s ? s.const : s.enum ? (s.enum as unknown[])[0] : s.examples ? (s.examples as unknown[])[0] : s.type === 'boolean' ? true : s.type === 'array' ? [] : 1;
    const leaves = schemaLeaves(SCHEMA);
    expect(leaves.length).toBeGreaterThan(25);
    for (const [path, s] of leaves) {
      const { doc } = docWithLeaf(path, sample(s));
      // reachability's other keys need its target (the loader says so, as does the schema's `required`).
      if (path.startsWith('reachability.')) (doc.reachability as S).target ??= '192.0.2.1';
      // notify's timeoutMs and tries need a webhook or hookArgv (the schema's anyOf).
      if (path.startsWith('notify.') && !(doc.notify as S).hookArgv) (doc.notify as S).webhook ??= 'http://127.0.0.1:9/hook';
      ok(parsePolicy(stringify(doc), `${path}.yaml`));
    }
  });

  it('number bounds and integer-ness agree with the loader at and around every bound', () => {
    const numeric = schemaLeaves(SCHEMA).filter(([, s]) => s.type === 'number' || s.type === 'integer');
    // 4 sampling + 7 defaults + 3 breaker + 4 recovery + 2 actions + 2 reachability + 2 notify + 8 esxi host + 7 esxi host
    // thresholds + 7 rule thresholds + 4 rule recovery (esxi quarantineVlan, number or null, is checked in policy-esxi.test.ts)
    expect(numeric.length).toBe(50);
    for (const [path, s] of numeric) {
      const lo = (s.minimum ?? s.exclusiveMinimum) as number;
      const values = [lo - 1, lo - 0.5, lo, lo + 0.5, lo + 1, -1, 0, 2.5, 1e9];
      if (typeof s.maximum === 'number') values.push(s.maximum - 1, s.maximum, s.maximum + 0.5, s.maximum + 1);
      for (const v of values) {
        const { doc, field } = docWithLeaf(path, v);
        const schemaSays = validate(SCHEMA, doc).includes(field);
        const loaderSays = loaderFields(parsePolicy(stringify(doc), 'x')).includes(field);
        expect(loaderSays, `${path} = ${v}: schema ${schemaSays ? 'rejects' : 'accepts'}`).toBe(schemaSays);
      }
    }
  });

  it('roles, version and the match pattern agree with the loader', () => {
    expect((SCHEMA.$defs as Record<string, S>).role?.enum).toEqual([...ROLES]);
    const names = ['vnet*', 'tap???i?', 'eth0.100', 'br-lan', 'a:b@c', 'x'.repeat(15), 'x'.repeat(16), '', 'a b', 'eth0;x', 'a/b', 'é', 'vm[1]', '*'];
    for (const m of names) {
      const doc = { version: 1, ports: [{ match: m, role: 'vm' }] };
      expect(loaderFields(parsePolicy(stringify(doc), 'x')).includes('ports[0].match'), m).toBe(validate(SCHEMA, doc).includes('ports[0].match'));
    }
    for (const v of [1, 2, 0, '1', 1.0, true]) {
      const doc = { version: v };
      expect(loaderFields(parsePolicy(stringify(doc), 'x')), String(v)).toEqual(validate(SCHEMA, doc));
    }
  });

  it('example policies and good fixtures are valid against the schema', async () => {
    const files = [
      ...(await readdir(join(ROOT, 'policies'))).filter((f) => f.endsWith('.yaml')).map((f) => join(ROOT, 'policies', f)),
      ...['full.yaml', 'version-only.yaml', 'bom-crlf.yaml'].map((f) => join(FIX, 'good', f)),
      ...['10-base.yaml', '20-site.yaml', '30-host.yml'].map((f) => join(FIX, 'dir-good', f)),
    ];
    for (const f of files) expect(validate(SCHEMA, parseDocument(await readFile(f, 'utf8')).toJS()), f).toEqual([]);
  });

  it('each example in policies/ points yaml-language-server at the schema on its first line', async () => {
    for (const f of ['kvm-host.yaml', 'lab.yaml', 'minimal.yaml', 'esxi-lab.yaml']) {
      const first = (await readFile(join(ROOT, 'policies', f), 'utf8')).split('\n')[0];
      expect(first, f).toBe('# yaml-language-server: $schema=./schema.json');
    }
  });

  // The bad corpus: where the fault is in one value, the schema must flag exactly the fields the
  // loader flags. The rest compare two values (or are not YAML at all), which no schema can see.
  const SAME_FIELDS = ['unknown-keys', 'bad-times', 'bad-rules', 'roles', 'null-section', 'not-a-mapping', 'merge-key', 'version-missing', 'version-wrong', 'version-string'];
  const NOT_EXPRESSIBLE = ['clear-not-below-flood', 'active-slower-than-idle', 'duplicates', 'shadowed', 'syntax', 'empty', 'comments-only', 'binary', 'invalid-utf8', 'alias-bomb'];
  /** JSON has no infinity, so `.inf` (YAML) passes `minimum: 1`; the schema's description says so. */
  const KNOWN_GAPS: Record<string, string[]> = { 'wrong-types': ['defaults.baselineFactor'] };

  it('the bad corpus is classified completely', async () => {
    const all = (await readdir(join(FIX, 'bad'))).map((f) => f.replace(/\.yaml$/, '')).sort();
    expect([...SAME_FIELDS, ...NOT_EXPRESSIBLE, ...Object.keys(KNOWN_GAPS)].sort()).toEqual(all);
  });

  for (const name of [...SAME_FIELDS, ...Object.keys(KNOWN_GAPS)]) {
    it(`bad/${name}.yaml: the schema flags the fields the loader flags`, async () => {
      const path = join(FIX, 'bad', `${name}.yaml`);
      const loader = loaderFields(await loadPolicy(path)).filter((f) => !(KNOWN_GAPS[name] ?? []).includes(f));
      expect(loader.length).toBeGreaterThan(0);
      const schema = [...new Set(validate(SCHEMA, parseDocument(await readFile(path, 'utf8')).toJS()))].sort();
      expect(schema).toEqual(loader);
    });
  }

  it('schema and loader agree on generated policies, field by field (property)', () => {
    // Values drawn around every bound and of every type, keys sometimes misspelt: whatever the
    // schema flags, the loader flags (and nothing else), cross-checks aside.
    const junk = fc.constantFrom<unknown>(null, true, 'x', 'vm', '20000', [], {}, -1, 0, 0.5, 1, 1.5, 2, 100, 101, 2147483647, 2147483648);
    const valueFor = (s: S): fc.Arbitrary<unknown> => {
      const r = deref(s);
      if (r.enum) return fc.oneof(fc.constantFrom(...(r.enum as unknown[])), junk);
      // The schema's own examples too, so string and list fields are also drawn valid (a listen address, a URL, an argv).
      const examples = (r.examples as unknown[] | undefined) ?? [];
      if (r.type === 'string') return fc.oneof(fc.constantFrom('vnet*', 'eth0', 'a b', 'x'.repeat(16), '', ...examples), junk);
      if (r.type === 'array') return fc.oneof(fc.array(fc.oneof(fc.constantFrom(...ROLES), junk), { maxLength: 4 }), ...(examples.length ? [fc.constantFrom(...examples)] : []), junk);
      if (r.type === 'object') return fc.oneof(objectFor(r), junk);
      return junk;
    };
    // Lists of objects (rules, esxi hosts and their vmnics) are drawn as lists of such objects, or as the schema's examples.
    const listOf = (v: S, maxLength: number): fc.Arbitrary<unknown> => {
      const examples = (deref(v).examples as unknown[] | undefined) ?? [];
      return fc.oneof(fc.array(objectFor(deref(v).items as S), { maxLength }), ...(examples.length ? [fc.constantFrom(...examples)] : []), junk);
    };
    const objectFor = (s: S): fc.Arbitrary<unknown> => {
      const r = deref(s);
      const props = Object.fromEntries(
        Object.entries(r.properties as Record<string, S>).map(([k, v]) => [
          k,
          k === 'ports' ? listOf(v, 3) : k === 'hosts' || k === 'vmnics' ? listOf(v, 2) : valueFor(v),
        ]),
      );
      return fc.tuple(fc.record(props, { requiredKeys: [] }), fc.option(fc.constantFrom('colour', 'floodpps', 'Match'), { freq: 5 })).map(([o, extra]) => (extra ? { ...o, [extra]: 1 } : o));
    };
    const doc = fc.oneof({ weight: 20, arbitrary: objectFor(SCHEMA) }, { weight: 1, arbitrary: junk });
    fc.assert(
      fc.property(doc, (d) => {
        const schema = [...new Set(validate(SCHEMA, d))].sort();
        const r = parsePolicy(stringify(d), 'x');
        const loader = loaderFields(r);
        // Past 100 errors the loader shows the first 100 and a `(document)` line saying how many
        // more (hosts with junk in every key get there): then what it shows must still be flagged.
        const capped = 'errors' in r && / more errors not shown$/.test(r.errors[r.errors.length - 1]?.message ?? '');
        if (capped) expect(schema).toEqual(expect.arrayContaining(loader.filter((f) => f !== '(document)')));
        else expect(schema).toEqual(loader);
      }),
      { numRuns: 1500 },
    );
  });
});

// ---- the pre-commit hook --------------------------------------------------------------------

describe('scripts/pre-commit-policy-check.sh', () => {
  it('passes bash -n', async () => {
    await run('bash', ['-n', HOOK]);
  });

  const shellcheck = ['/usr/bin/shellcheck', '/usr/local/bin/shellcheck'].find((p) => existsSync(p));
  it.skipIf(!shellcheck)('passes shellcheck', async () => {
    await run(shellcheck as string, [HOOK]);
  });

  // A real CLI, built from this tree into a temporary directory (dist/ may be stale or absent).
  let build = '';
  let bin = '';
  let base = '';
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'sb-hook-'));
    build = join(base, 'build');
    await mkdir(build);
    // Other modules of the tree may not type-check mid-change; tsc still emits, so only the output counts.
    await run('npx', ['--no-install', 'tsc', '-p', join(ROOT, 'tsconfig.json'), '--outDir', join(build, 'dist')], { cwd: ROOT }).catch(() => undefined);
    expect(existsSync(join(build, 'dist/agent/cli.js'))).toBe(true);
    await writeFile(join(build, 'package.json'), '{"type":"module"}\n');
    await symlink(join(ROOT, 'node_modules'), join(build, 'node_modules'));
    bin = join(base, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'stormbreaker'), `#!/bin/sh\nexec "${process.execPath}" "${join(build, 'dist/agent/cli.js')}" "$@"\n`);
    await chmod(join(bin, 'stormbreaker'), 0o755);
  }, 120_000);
  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  // PATH without any stormbreaker: node's directory (node, npx) and the system's.
  const basePath = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;
  async function repo(files: Record<string, string>): Promise<string> {
    const r = await mkdtemp(join(base, 'repo-'));
    const git = (...a: string[]) => execFileSync('git', a, { cwd: r });
    git('init', '-q');
    git('config', 'user.email', 't@example.invalid');
    git('config', 'user.name', 't');
    for (const [name, text] of Object.entries(files)) {
      await mkdir(dirname(join(r, name)), { recursive: true });
      await writeFile(join(r, name), text);
    }
    if (Object.keys(files).length > 0) {
      git('add', '--', ...Object.keys(files));
      git('commit', '-q', '--no-verify', '-m', 'base');
    }
    return r;
  }
  const git = (r: string, ...a: string[]) => execFileSync('git', a, { cwd: r, encoding: 'utf8' });
  async function hook(r: string, path = `${bin}:${basePath}`): Promise<{ code: number; out: string; err: string }> {
    try {
      const { stdout, stderr } = await run('bash', [HOOK], { cwd: r, env: { PATH: path, HOME: base, npm_config_update_notifier: 'false' } });
      return { code: 0, out: stdout, err: stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  }
  const GOOD = 'version: 1\nports:\n  - {match: "vnet*", role: vm}\n';

  it('checks staged policy files and fails on errors, naming repository paths', async () => {
    const r = await repo({});
    await mkdir(join(r, 'policies'));
    await writeFile(join(r, 'policies/a.yaml'), GOOD);
    await writeFile(join(r, 'policies/b.yaml'), 'version: 1\ndefaults: {floodPps: -1}\n');
    git(r, 'add', 'policies');
    const h = await hook(r);
    expect(h.code).toBe(1);
    expect(h.out).toContain('policies/a.yaml: ok');
    expect(h.err).toContain('policies/b.yaml:2:22: defaults.floodPps: must be > 0, got -1');
    expect(h.err).not.toContain(tmpdir());
  });

  it('checks the staged content, not the working tree', async () => {
    const r = await repo({ 'policies/a.yaml': GOOD });
    await writeFile(join(r, 'policies/a.yaml'), 'version: 1\ncolour: 1\n');
    git(r, 'add', 'policies/a.yaml');
    await writeFile(join(r, 'policies/a.yaml'), GOOD); // fixed, but not staged
    expect((await hook(r)).code).toBe(1);
    git(r, 'add', 'policies/a.yaml');
    // Staged == HEAD now: nothing to check.
    expect(await hook(r)).toMatchObject({ code: 0, err: '' });
    await writeFile(join(r, 'policies/a.yaml'), GOOD + 'dryRun: true\n');
    git(r, 'add', 'policies/a.yaml');
    await writeFile(join(r, 'policies/a.yaml'), 'broken: [\n'); // broken, but not staged
    const h = await hook(r);
    expect(h.code).toBe(0);
    expect(h.out).toContain('policies/a.yaml: ok');
  });

  it('ignores YAML outside the policy paths; stormbreaker.policyPath changes them', async () => {
    const r = await repo({});
    await writeFile(join(r, 'ci.yml'), 'jobs: {}\n');
    git(r, 'add', 'ci.yml');
    expect(await hook(r)).toMatchObject({ code: 0, out: '' });
    git(r, 'config', '--add', 'stormbreaker.policyPath', 'hosts/');
    await mkdir(join(r, 'hosts'));
    await writeFile(join(r, 'hosts/h1.yml'), 'version: 1\nports: {}\n');
    git(r, 'add', 'hosts');
    const h = await hook(r);
    expect(h.code).toBe(1);
    expect(h.err).toContain('hosts/h1.yml:2:8: ports: must be a list');
    expect(h.err).not.toContain('ci.yml');
  });

  it('a stormbreaker.policyDir is checked as one policy, also when a file is deleted', async () => {
    const r = await repo({
      'policy.d/10-base.yaml': 'version: 1\nports:\n  - {match: mgmt0, role: mgmt}\n',
      'policy.d/20-site.yaml': GOOD,
    });
    git(r, 'config', 'stormbreaker.policyDir', 'policy.d');
    // Fine on its own, but repeats a match of 20-site: only the directory check can see that.
    await writeFile(join(r, 'policy.d/30-host.yaml'), GOOD);
    git(r, 'add', 'policy.d/30-host.yaml');
    const h = await hook(r);
    expect(h.code).toBe(1);
    expect(h.err).toContain('policy.d/30-host.yaml:3:13: ports[0].match: same match as ports[0] at policy.d/20-site.yaml:3:13');
    git(r, 'rm', '-q', '--cached', 'policy.d/30-host.yaml');
    // Deleting the override that made it valid: the check runs although no file was added.
    await writeFile(join(r, 'policy.d/20-site.yaml'), 'version: 1\ndefaults: {clearPps: 25000}\n');
    await writeFile(join(r, 'policy.d/30-host.yaml'), 'version: 1\ndefaults: {floodPps: 30000}\n');
    git(r, 'add', 'policy.d');
    git(r, 'commit', '-q', '--no-verify', '-m', 'y');
    git(r, 'rm', '-q', 'policy.d/30-host.yaml');
    const d = await hook(r);
    expect(d.code).toBe(1);
    expect(d.err).toContain('policy.d/20-site.yaml:2:22: defaults.clearPps: must be < floodPps (20000, the built-in default)');
  });

  it('falls back to node dist/agent/cli.js when stormbreaker is neither on PATH nor in node_modules', async () => {
    const r = await repo({});
    await symlink(join(build, 'dist'), join(r, 'dist'));
    await mkdir(join(r, 'policies'));
    await writeFile(join(r, 'policies/a.yaml'), 'version: 1\ncolour: 1\n');
    git(r, 'add', 'policies');
    const h = await hook(r, basePath);
    expect(h.code).toBe(1);
    expect(h.err).toContain('policies/a.yaml:2:1: colour: unknown key');
    // Neither: refuse rather than let an unchecked policy through.
    await unlink(join(r, 'dist'));
    const n = await hook(r, basePath);
    expect(n.code).toBe(1);
    expect(n.err).toContain('cannot find stormbreaker');
  });

  it('uses npx --no-install stormbreaker from the repository node_modules when not on PATH', async () => {
    const r = await repo({});
    await mkdir(join(r, 'node_modules/.bin'), { recursive: true });
    await symlink(join(bin, 'stormbreaker'), join(r, 'node_modules/.bin/stormbreaker'));
    await mkdir(join(r, 'policies'));
    await writeFile(join(r, 'policies/a.yaml'), GOOD);
    git(r, 'add', 'policies/a.yaml');
    const h = await hook(r, basePath);
    expect(h).toMatchObject({ code: 0 });
    expect(h.out).toContain('policies/a.yaml: ok');
  });
});
