// The remote side of the ESXi counter stream is a shell loop. These tests run the exact line the
// agent sends under real POSIX shells (dash, and busybox ash: the shell ESXi has), with stand-in
// counter commands printing the real captured vsish/esxcli formats, and parse what comes back.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifySshError, masterArgv, remoteLine, sessionArgv, shQuote } from '../../agent/esxi/ssh-argv.js';
import { createStreamParser, streamScript, MAX_BLOCK_CHARS } from '../../agent/esxi/stream.js';
import { parseVsishPnicStats } from '../../agent/esxi/vsish.js';
import { parseNicStats } from '../../agent/esxi/nic-stats.js';

const FIX = join(__dirname, '..', 'fixtures', 'esxcli');
const target = { address: '192.0.2.10', port: 22, user: 'root', identityFile: '/k/id', knownHostsFile: '/k/known', connectTimeoutMs: 2500 };

describe('ssh argv', () => {
  it('is strict in every invocation: key only, pinned host key, no config file, timeouts', () => {
    for (const argv of [masterArgv(target, '/c/s'), sessionArgv(target, '/c/s', 'true')]) {
      const j = argv.join(' ');
      expect(argv[0]).toBe('ssh');
      expect(j).toContain('-F none');
      expect(j).toContain('-o BatchMode=yes');
      expect(j).toContain('-o StrictHostKeyChecking=yes');
      expect(j).toContain('-o UserKnownHostsFile=/k/known');
      expect(j).toContain('-o GlobalKnownHostsFile=/dev/null');
      expect(j).toContain('-o PasswordAuthentication=no');
      expect(j).toContain('-o ConnectTimeout=3'); // 2500 ms rounds up to whole seconds
      expect(j).toContain('-i /k/id');
      // The host comes after `--`: an address can never be read as an option.
      expect(argv[argv.indexOf('--') + 1]).toBe('192.0.2.10');
    }
    // The master's own session waits on stdin (a pipe from the agent), so it dies with the agent.
    expect(masterArgv(target, '/c/s').slice(-2)).toEqual(['192.0.2.10', 'cat >/dev/null']);
    expect(masterArgv(target, '/c/s')).not.toContain('-N');
    expect(sessionArgv(target, '/c/s', 'esxcli network nic list').at(-1)).toBe('esxcli network nic list');
  });

  it('quotes every remote word so the remote shell interprets nothing', () => {
    const argv = ['printf', '%s\\n', 'VM Network', "it's", '$(reboot)', '`id`', 'a;b', '*', ''];
    const out = execFileSync('dash', ['-c', remoteLine(argv)], { encoding: 'utf8' });
    expect(out.split('\n').slice(0, -1)).toEqual(argv.slice(2));
    expect(shQuote('vmnic0')).toBe('vmnic0');
    expect(() => shQuote('a\0b')).toThrow(/NUL/);
  });

  it('tells a changed host key from an unreachable host and a refused key', () => {
    expect(classifySshError('@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.', 255)).toBe('host-key-changed');
    expect(classifySshError('No ED25519 host key is known for 192.0.2.10 and you have requested strict checking.\nHost key verification failed.', 255)).toBe('host-key-unknown');
    expect(classifySshError('root@192.0.2.10: Permission denied (publickey).', 255)).toBe('auth-failed');
    expect(classifySshError('ssh: connect to host 192.0.2.10 port 22: Connection refused', 255)).toBe('unreachable');
    expect(classifySshError('ssh: connect to host 192.0.2.10 port 22: Connection timed out', 255)).toBe('timeout');
    expect(classifySshError('', 255)).toBe('closed');
  });
});

describe('stream script under real POSIX shells', () => {
  let dir = '';
  const shells = ['dash', ...(spawnSync('busybox', ['sh', '-c', 'true']).status === 0 ? ['busybox'] : [])];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sb-stream-'));
    // Stand-ins that print the real captures (vsish's banner goes to stderr, as with -p).
    const vsish = readFileSync(join(FIX, 'vsish-pnic-stats_intel-mfd.txt'), 'utf8');
    const [banner, ...body] = vsish.split('\n');
    writeFileSync(join(dir, 'vsish.out'), body.join('\n'));
    writeFileSync(join(dir, 'vsish'), `#!/bin/sh\necho '${banner}' >&2\ncat '${dir}/vsish.out'\n`);
    writeFileSync(join(dir, 'esxcli'), `#!/bin/sh\n[ "$5" = "-n" ] && [ "$6" = vmnic2 ] || { echo "Error: Invalid NIC name" >&2; exit 1; }\ncat '${join(FIX, 'nic-stats-get_vmnic2_broadcom-kb341594.txt')}'\n`);
    chmodSync(join(dir, 'vsish'), 0o755);
    chmodSync(join(dir, 'esxcli'), 0o755);
  });
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

  const items = [
    { kind: 'nic' as const, id: 'vmnic0', op: { op: 'vsish-pnic-stats' as const, nic: 'vmnic0' } },
    { kind: 'nic' as const, id: 'vmnic2', op: { op: 'nic-stats' as const, nic: 'vmnic2' } },
    { kind: 'nic' as const, id: 'vmnic3', op: { op: 'nic-stats' as const, nic: 'vmnic3' } },
  ];

  for (const sh of shells) {
    it(`answers one framed block per tick (${sh})`, () => {
      const nonce = 'abcdef0123456789';
      const argv = sh === 'busybox' ? ['busybox', 'sh', '-c', streamScript(nonce, items)] : ['dash', '-c', streamScript(nonce, items)];
      const r = spawnSync(argv[0]!, argv.slice(1), { input: '1\n2\n3\n', encoding: 'utf8', env: { PATH: `${dir}:/usr/bin:/bin` }, timeout: 10_000 });
      expect(r.status).toBe(0); // stdin closed: the loop ends by itself
      const p = createStreamParser(nonce);
      // Fed in awkward pieces, as a pipe delivers it.
      const blocks = [];
      for (let i = 0; i < r.stdout.length; i += 333) blocks.push(...p.feed(r.stdout.slice(i, i + 333)));
      expect(p.takeNoise()).toEqual([]);
      expect(blocks.map((b) => b.tick)).toEqual([1, 2, 3]);
      for (const b of blocks) {
        expect(b.sections.map((s) => [s.id, s.rc])).toEqual([['vmnic0', 0], ['vmnic2', 0], ['vmnic3', 1]]);
        const v = parseVsishPnicStats(b.sections[0]!.text);
        expect(v.ok && v.value.rxBroadcast).toBe(42);
        const n = parseNicStats(b.sections[1]!.text);
        expect(n.ok && n.value.rxMulticast).toBe(976222150);
        expect(b.sections[2]!.text).toContain('Invalid NIC name');
      }
    });
  }

  it('ends on a tick that is not a number (nothing from stdin is ever run)', () => {
    const r = spawnSync('dash', ['-c', streamScript('abcdef0123456789', items)], { input: '$(touch /tmp/sb-pwned)\n', encoding: 'utf8', env: { PATH: `${dir}:/usr/bin:/bin` } });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(existsSync('/tmp/sb-pwned')).toBe(false);
  });

  it('refuses items whose ids or ops could reach the remote shell unchecked', () => {
    expect(() => streamScript('abcdef0123456789', [{ kind: 'nic', id: 'vmnic0;reboot', op: { op: 'vsish-pnic-stats', nic: 'vmnic0' } }])).toThrow(/bad stream item/);
    expect(() => streamScript('abcdef0123456789', [{ kind: 'nic', id: 'vmnic0', op: { op: 'vsish-pnic-stats', nic: 'eth0' } }])).toThrow(/vmnic/);
    expect(() => streamScript('NOPE', items)).toThrow(/nonce/);
  });
});

describe('stream parser', () => {
  const n = 'abcdef0123456789';
  it('ignores markers with another nonce and reports lines outside blocks', () => {
    const p = createStreamParser(n);
    const out = p.feed(`junk\n@@sb:${n}:begin:7\n@@sb:${n}:nic:vmnic0\n@@sb:ffffffffffffffff:end:7\nx\n@@sb:${n}:rc:0\n@@sb:${n}:end:7\n`);
    expect(out).toHaveLength(1);
    expect(out[0]!.sections[0]!.text).toBe('@@sb:ffffffffffffffff:end:7\nx');
    expect(p.takeNoise()).toEqual(['junk']);
  });
  it('drops a block that ends with another tick or grows without bound', () => {
    const p = createStreamParser(n);
    expect(p.feed(`@@sb:${n}:begin:1\n@@sb:${n}:end:2\n`)).toEqual([]);
    expect(p.takeNoise()[0]).toMatch(/ended as 2/);
    const big = 'x'.repeat(1000) + '\n';
    const out = p.feed(`@@sb:${n}:begin:3\n@@sb:${n}:nic:vmnic0\n` + big.repeat(Math.ceil(MAX_BLOCK_CHARS / 1000) + 2) + `@@sb:${n}:rc:0\n@@sb:${n}:end:3\n`);
    expect(out).toEqual([]);
    expect(p.takeNoise().join()).toMatch(/larger than/);
  });
});
