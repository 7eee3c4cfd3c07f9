import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPolicy } from '../../agent/policy/load.js';
import { formatPolicyError, type PolicyError } from '../../agent/policy/errors.js';

// Policy fuzzer: mutations of real policies (the shipped examples and the good fixtures), loaded
// as files the way `run`, `reload` and `policy check` load them. Every outcome must be a policy or
// errors that each name file, line, column and field; nothing may throw, and nothing may come out
// as "parser failed" (the catch-all for an exception inside the parser or the schema walk).
// A fresh seed each run (printed on failure, STORMBREAKER_FUZZ_SEED to replay).

const N = Number(process.env.STORMBREAKER_FUZZ_N ?? 1200);
const SEED = Number(process.env.STORMBREAKER_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32: deterministic per seed, good enough to pick mutations
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const TOKENS = [': ', '- ', '[', ']', '{', '}', ',', '&a ', '*a', '<<: *a', '!!binary ', '!!str ', '? ', '|', '>', '"', "'", '#', '\t', '\n', '  ', '~', 'null', '---\n', '...\n',
  '0xffffffffffffffffffff', '9007199254740993', '1e309', '-0', '.inf', '-.inf', '.nan', '0o777', '1_000', '-1', '0', '2147483648', '1e-320',
  'true', 'yes', '"\\u0000"', '\u00e9', '\u20ac', '\ud83d\ude00', '%YAML 1.1\n', 'match: ', 'role: ', 'floodPps: ', 'maxShuts: ', 'protected: ', 'version: 2', '"a\\nb": ', '"\\u2028": '];

function mutate(text: string, r: () => number): string {
  const pick = <T,>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  let t = text;
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(r() * (t.length + 1));
    const lines = t.split('\n');
    const li = Math.floor(r() * lines.length);
    switch (Math.floor(r() * 10)) {
      case 0: // insert a token
        t = t.slice(0, at) + pick(TOKENS) + t.slice(at);
        break;
      case 1: // delete a span
        t = t.slice(0, at) + t.slice(at + 1 + Math.floor(r() * 20));
        break;
      case 2: // replace one character by a random code unit
        t = t.slice(0, at) + String.fromCharCode(Math.floor(r() * 0x3000)) + t.slice(at + 1);
        break;
      case 3: // duplicate a line
        lines.splice(li, 0, lines[li] ?? '');
        t = lines.join('\n');
        break;
      case 4: // swap two lines
        {
          const lj = Math.floor(r() * lines.length);
          [lines[li], lines[lj]] = [lines[lj] ?? '', lines[li] ?? ''];
          t = lines.join('\n');
        }
        break;
      case 5: // change indentation
        lines[li] = r() < 0.5 ? ' '.repeat(1 + Math.floor(r() * 4)) + (lines[li] ?? '') : (lines[li] ?? '').replace(/^ {1,4}/, '');
        t = lines.join('\n');
        break;
      case 6: // replace every number on a line by an odd one
        lines[li] = (lines[li] ?? '').replace(/-?\d+(\.\d+)?/g, () => pick(['0xffffffffffffffffffff', '9007199254740993', '1e309', '-1', '0', '.nan', '1e300', '2147483648', '0.5', '"5"']));
        t = lines.join('\n');
        break;
      case 7: // repeat a token many times (growth, nesting)
        t = t.slice(0, at) + pick(['[', '{', '- ', '&x ', ',', 'a: ']).repeat(1 + Math.floor(r() * 200)) + t.slice(at);
        break;
      case 8: // a line whose key holds control characters, at the indentation of the line before
        lines.splice(li, 0, `${/^\s*(- )?/.exec(lines[li] ?? '')![0].replace('-', ' ')}${pick(['"a\\nb"', '"\\u2028x"', '"\\tk"', "'\u0085'"])}: ${pick(['1', 'x', '[]'])}`);
        t = lines.join('\n');
        break;
      default: // truncate
        t = t.slice(0, at);
    }
  }
  return t;
}

function seeds(): string[] {
  const dirs = ['policies', 'test/fixtures/policies/good'];
  const out: string[] = [];
  for (const d of dirs) for (const f of readdirSync(d)) if (/\.ya?ml$/.test(f) && !f.startsWith('alerts')) out.push(readFileSync(join(d, f), 'utf8'));
  return out;
}

/** What makes an error acceptable: placed (file:line:col, field), or a whole-file size/IO error. */
function placed(e: PolicyError, file: string): boolean {
  if (e.file !== file || !e.field || !e.message) return false;
  if (/parser failed/.test(e.message)) return false;
  if (e.line === 0) return (e.code === 'E_POLICY_SIZE' || e.code === 'E_POLICY_IO') && e.field === '(file)';
  return Number.isInteger(e.line) && e.line >= 1 && Number.isInteger(e.col) && e.col >= 1;
}

describe(`policy fuzzer (${N} mutated files, seed ${SEED})`, () => {
  it('every mutation loads as a policy or as placed errors: no throw, no parser failure', async () => {
    const r = rng(SEED);
    const base = seeds();
    expect(base.length).toBeGreaterThan(3);
    const dir = mkdtempSync(join(tmpdir(), 'sb-fuzz-'));
    let ok = 0;
    let rejected = 0;
    const bad: string[] = [];
    const t0 = performance.now();
    try {
      for (let i = 0; i < N; i++) {
        const file = join(dir, `m${i}.yaml`);
        writeFileSync(file, mutate(base[i % base.length]!, r));
        const res = await loadPolicy(file);
        if ('policy' in res) ok++;
        else {
          rejected++;
          for (const e of res.errors) if (!placed(e, file)) bad.push(`m${i}: ${formatPolicyError(e)} [${e.code}]`);
        }
      }
      const ms = performance.now() - t0;
      expect(bad, `seed ${SEED}`).toEqual([]);
      expect(ok + rejected).toBe(N);
      expect(rejected).toBeGreaterThan(N / 4); // the mutations do break policies
      expect(ms / N).toBeLessThan(100); // bounded cost per file, even under load
      // The CLI on all of them in one run: exit 1, and every stderr line placed; no stack trace.
      const files = Array.from({ length: N }, (_, i) => join(dir, `m${i}.yaml`));
      const cli = spawnSync(process.execPath, ['dist/agent/cli.js', 'policy', 'check', ...files], { encoding: 'utf8', timeout: 120_000 });
      expect(cli.status).toBe(1);
      const lines = cli.stderr.split('\n').filter((l) => l !== '');
      expect(lines.filter((l) => /^\s+at /.test(l) || /parser failed/.test(l))).toEqual([]);
      expect(lines.filter((l) => !/^\S+\.yaml(:\d+:\d+)?: ./.test(l))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('out-of-range numbers, a FIFO and 300k flow items are errors with file:line:col, fast', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-fuzz-'));
    try {
      const range = join(dir, 'range.yaml');
      writeFileSync(range, 'version: 1\ndefaults:\n  floodPps: 0xffffffffffffffffffff\nbreaker:\n  maxShuts: 9007199254740993\n');
      const rr = await loadPolicy(range);
      expect('errors' in rr && rr.errors.map(formatPolicyError)).toEqual([
        `${range}:3:13: defaults.floodPps: must be at most 9007199254740991 in size, got 1.2089258196146292e+24`,
        `${range}:5:13: breaker.maxShuts: must be at most 9007199254740991 in size, got 9007199254740992`,
      ]);
      const fifo = join(dir, 'fifo.yaml');
      execFileSync('mkfifo', [fifo]);
      const fr = await loadPolicy(fifo);
      expect('errors' in fr && fr.errors[0]!.message).toMatch(/not a regular file/);
      const big = join(dir, 'big.yaml');
      writeFileSync(big, 'version: 1\nports: [' + Array.from({ length: 300_000 }, () => '{}').join(',') + ']\n');
      const t0 = performance.now();
      const br = await loadPolicy(big);
      expect(performance.now() - t0).toBeLessThan(1000); // before: 2.6 s and 470 MB
      expect('errors' in br && br.errors[0]).toMatchObject({ code: 'E_POLICY_SIZE', line: 2 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
