import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// install.sh against a real staging root: real files, real git, the real systemd-analyze.
const repo = join(import.meta.dirname, '..', '..');
const installSh = join(repo, 'install.sh');
const built = existsSync(join(repo, 'dist/agent/cli.js')) && existsSync(join(repo, 'build/Release/packet_stats.node'));

function install(root: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('bash', [installSh, '--root', root, '--no-build', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** path, type, mode, link target and sha256 of everything under root (policy repo's .git: HEAD only). */
function listing(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (rel === 'etc/stormbreaker/.git') {
        out.push(`${rel} git HEAD=${execFileSync('git', ['-C', join(root, 'etc/stormbreaker'), 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim()}`);
      } else if (st.isSymbolicLink()) out.push(`${rel} l ${mode} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`${rel} d ${mode}`);
        walk(p);
      } else out.push(`${rel} f ${mode} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  };
  walk(root);
  return out;
}

const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const haveGit = spawnSync('git', ['--version']).status === 0;

describe.skipIf(!built)('install.sh into a staging root', () => {
  let base: string;
  let root: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'sbs-install-'));
    root = join(base, 'root');
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('passes shellcheck', () => {
    const r = spawnSync('shellcheck', [installSh], { encoding: 'utf8' });
    if (r.error) return console.warn('shellcheck not installed: skipped (apt-get install -y shellcheck)');
    expect(r.status, r.stdout).toBe(0);
  });

  it('--dry-run prints the plan and creates nothing', () => {
    const r = install(root, '--dry-run');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/\+ cp -a .* \S+\/opt\/stormbreaker/);
    expect(r.out).toContain('dry run: nothing changed');
    expect(existsSync(root)).toBe(false);
  });

  it('installs, and a second run changes nothing (listing + sha256 of every file)', () => {
    const first = install(root);
    expect(first.status, first.out).toBe(0);
    for (const p of ['opt/stormbreaker/bin/stormbreaker', 'opt/stormbreaker/dist/agent/cli.js', 'opt/stormbreaker/build/Release/packet_stats.node', 'opt/stormbreaker/node_modules/pino/package.json', 'etc/stormbreaker/policy.yaml', 'etc/systemd/system/stormbreaker.service']) {
      expect(existsSync(join(root, p)), p).toBe(true);
    }
    expect(lstatSync(join(root, 'var/lib/stormbreaker')).isDirectory()).toBe(true);
    expect(readlinkSync(join(root, 'usr/local/bin/stormbreaker'))).toBe('/opt/stormbreaker/bin/stormbreaker');
    if (haveGit) expect(existsSync(join(root, 'etc/stormbreaker/.git'))).toBe(true);
    // Dev dependencies stay behind.
    expect(existsSync(join(root, 'opt/stormbreaker/node_modules/typescript'))).toBe(false);
    const before = listing(root);
    const second = install(root);
    expect(second.status, second.out).toBe(0);
    expect(second.out).toContain('is up to date');
    expect(second.out).not.toMatch(/^\+ /m); // not one command run
    expect(listing(root)).toEqual(before);
  });

  it('the installed tree runs on its own: CLI checks the installed policy, addon has sdNotify', () => {
    const cli = join(root, 'opt/stormbreaker/dist/agent/cli.js');
    const out = execFileSync(process.execPath, [cli, 'policy', 'check', join(root, 'etc/stormbreaker')], { encoding: 'utf8', cwd: base });
    expect(out).toMatch(/: ok \(/);
    const t = execFileSync(process.execPath, ['-e', `process.stdout.write(typeof require(${JSON.stringify(join(root, 'opt/stormbreaker/build/Release/packet_stats.node'))}).sdNotify)`], { encoding: 'utf8', cwd: base });
    expect(t).toBe('function');
  });

  it('never overwrites an operator policy', () => {
    const pol = join(root, 'etc/stormbreaker/policy.yaml');
    writeFileSync(pol, 'version: 1\nports:\n  - match: eno3\n    role: uplink\n    protected: true\n');
    const r = install(root);
    expect(r.status, r.out).toBe(0);
    expect(readFileSync(pol, 'utf8')).toContain('match: eno3');
  });

  it.skipIf(!haveAnalyze)('the installed unit passes systemd-analyze verify (no warnings either)', () => {
    // verify checks that ExecStart exists, and --root wants a whole OS tree, so the staged unit is
    // checked with its prefix pointed at the staged program (the only change).
    const staged = readFileSync(join(root, 'etc/systemd/system/stormbreaker.service'), 'utf8');
    expect(staged).toContain('ExecStart=/opt/stormbreaker/bin/stormbreaker run --policy /etc/stormbreaker --state-dir /var/lib/stormbreaker --socket /run/stormbreaker/control.sock');
    const unit = join(base, 'stormbreaker.service');
    writeFileSync(unit, staged.replaceAll('/opt/stormbreaker', join(root, 'opt/stormbreaker')));
    const ok = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stderr.trim()).toBe('');
    // The same check fails on a broken unit: it is not a check that cannot fail.
    writeFileSync(unit, staged.replaceAll('/opt/stormbreaker', join(root, 'opt/stormbreaker')).replace('WatchdogSec=5', 'WatchdogSec=5\nWatchdogSecs=5'));
    const bad = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(bad.stderr).toMatch(/Unknown key/);
  });
  it.runIf(!haveAnalyze)('systemd-analyze verify: SKIPPED, systemd-analyze is not installed (apt-get install -y systemd)', () => {
    console.warn('systemd-analyze unavailable: the unit was NOT verified');
  });

  it('--uninstall removes program, unit and launcher; keeps policies and the journal', () => {
    writeFileSync(join(root, 'var/lib/stormbreaker/journal.jsonl'), '{"event":"trip"}\n');
    const r = install(root, '--uninstall');
    expect(r.status, r.out).toBe(0);
    expect(existsSync(join(root, 'opt/stormbreaker'))).toBe(false);
    expect(existsSync(join(root, 'etc/systemd/system/stormbreaker.service'))).toBe(false);
    expect(existsSync(join(root, 'usr/local/bin/stormbreaker'))).toBe(false);
    expect(readFileSync(join(root, 'etc/stormbreaker/policy.yaml'), 'utf8')).toContain('match: eno3');
    expect(readFileSync(join(root, 'var/lib/stormbreaker/journal.jsonl'), 'utf8')).toContain('trip');
    // And installs again over the kept policy without touching it.
    const again = install(root);
    expect(again.status, again.out).toBe(0);
    expect(readFileSync(join(root, 'etc/stormbreaker/policy.yaml'), 'utf8')).toContain('match: eno3');
  });

  it('refuses a prefix it could not safely replace or remove', () => {
    const r = install(root, '--prefix', '/usr');
    expect(r.status).toBe(2);
    expect(r.out).toMatch(/must be a directory of its own/);
  });
});
