// scripts/setup.sh on a machine whose node is too old: it asks apt for a candidate and, when apt
// offers none >= 20 (Debian 12: 18), stops with ONE line that says what to do. node, apt-get and
// apt-cache are stand-ins on PATH (Debian 12's answers); dpkg-query is the real one.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const bin = mkdtempSync(join(tmpdir(), 'sbt-setup-'));
afterAll(() => rmSync(bin, { recursive: true, force: true }));
function shim(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

describe.runIf(process.getuid?.() === 0)('setup.sh without Node >= 20', () => {
  it('fails with one clear line when apt offers only nodejs 18', () => {
    shim('node', 'echo 18');
    shim('apt-get', 'echo "apt-get $*" >>"$(dirname "$0")/apt.log"; exit 0');
    shim('apt-cache', 'printf "nodejs:\\n  Installed: (none)\\n  Candidate: 18.20.4+dfsg-1~deb12u1\\n"');
    const r = spawnSync('bash', ['scripts/setup.sh'], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 60_000 });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^stormbreaker: Node\.js >= 20 is required and this machine's apt offers nodejs 18\.20\.4\+dfsg-1~deb12u1 .*NodeSource/);
  });
});
