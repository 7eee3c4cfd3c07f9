// The policy's optional `metrics` and `notify` sections: what loads, what is rejected and where,
// and that policies/schema.json says the same about the string fields the loader parses itself.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NOTIFY_DEFAULTS } from '../../agent/policy/defaults.js';
import { loadPolicyFile, parsePolicy } from '../../agent/policy/load.js';
import { parseListen } from '../../agent/policy/schema.js';
import { ok, errs, brief } from '../helpers/policy-result.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));


describe('metrics', () => {
  it('is off when absent; listen gives host and port', () => {
    expect(ok(parsePolicy('version: 1\n', 'x')).metrics).toBeUndefined();
    for (const [listen, host, port] of [
      ['127.0.0.1:9781', '127.0.0.1', 9781],
      ['127.1.2.3:1', '127.1.2.3', 1],
      ['localhost:65535', 'localhost', 65535],
      ['[::1]:9781', '::1', 9781],
    ] as const) {
      expect(ok(parsePolicy(`version: 1\nmetrics:\n  listen: "${listen}"\n`, 'x')).metrics, listen).toEqual({ host, port });
    }
  });

  it('rejects a non-loopback host, a bad port and a malformed address at the value', () => {
    const cases: Array<[string, string]> = [
      ['0.0.0.0:9781', 'E_POLICY_VALUE'],
      ['192.0.2.1:9781', 'E_POLICY_VALUE'],
      ['metrics.example:9781', 'E_POLICY_VALUE'],
      ['[::]:9781', 'E_POLICY_VALUE'],
      ['[127.0.0.1]:9781', 'E_POLICY_VALUE'],
      ['127.0.0.01:9781', 'E_POLICY_VALUE'],
      ['::1:9781', 'E_POLICY_VALUE'],
      ['127.0.0.1', 'E_POLICY_VALUE'],
      ['127.0.0.1:0', 'E_POLICY_RANGE'],
      ['127.0.0.1:65536', 'E_POLICY_RANGE'],
      ['127.0.0.1:09781', 'E_POLICY_RANGE'],
    ];
    for (const [listen, code] of cases) {
      const e = errs(parsePolicy(`version: 1\nmetrics:\n  listen: "${listen}"\n`, 'x'));
      expect(brief(e), listen).toEqual([[3, 11, 'metrics.listen', code]]);
    }
    expect(errs(parsePolicy('version: 1\nmetrics:\n  listen: 9781\n', 'x')).map((e) => [e.field, e.code])).toEqual([['metrics.listen', 'E_POLICY_TYPE']]);
  });

  it('requires listen when written, and knows no other key', () => {
    expect(brief(errs(parsePolicy('version: 1\nmetrics: {}\n', 'x')))).toEqual([[2, 10, 'metrics.listen', 'E_POLICY_MISSING']]);
    const e = errs(parsePolicy('version: 1\nmetrics:\n  listen: 127.0.0.1:9781\n  port: 9781\n', 'x'));
    expect(brief(e)).toEqual([[4, 3, 'metrics.port', 'E_POLICY_UNKNOWN_KEY']]);
  });

  it('policies/schema.json pattern accepts exactly what the loader accepts', async () => {
    const schema = JSON.parse(await readFile(join(ROOT, 'policies/schema.json'), 'utf8'));
    const re = new RegExp(schema.properties.metrics.properties.listen.pattern, 'u');
    const samples = [
      '127.0.0.1:9781', '127.255.255.255:65535', '127.0.0.1:1', 'localhost:80', '[::1]:9781', '[0:0:0:0:0:0:0:1]:9781',
      '0.0.0.0:9781', '128.0.0.1:9781', '127.0.0.256:1', '127.0.0.01:1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:09781',
      '127.0.0.1:', ':9781', '[::1]', '::1:9781', '[::]:1', '[0::1]:1', 'LOCALHOST:1', '[localhost]:1', 'localhost:99999', ' 127.0.0.1:1',
    ];
    for (const s of samples) expect(re.test(s), s).toBe(typeof parseListen(s) !== 'string');
  });
});

describe('notify', () => {
  it('is off when absent; defaults timeoutMs and tries', () => {
    expect(ok(parsePolicy('version: 1\n', 'x')).notify).toBeUndefined();
    expect(ok(parsePolicy('version: 1\nnotify:\n  webhook: https://hooks.example.net/sb\n', 'x')).notify).toEqual({
      webhook: 'https://hooks.example.net/sb',
      ...NOTIFY_DEFAULTS,
    });
    expect(NOTIFY_DEFAULTS).toEqual({ timeoutMs: 2000, tries: 3 });
    const both = 'version: 1\nnotify:\n  webhook: http://127.0.0.1:8080/x\n  hookArgv:\n    - /usr/local/bin/page\n    - --quiet\n  timeoutMs: 500\n  tries: 10\n';
    expect(ok(parsePolicy(both, 'x')).notify).toEqual({ webhook: 'http://127.0.0.1:8080/x', hookArgv: ['/usr/local/bin/page', '--quiet'], timeoutMs: 500, tries: 10 });
    expect(ok(parsePolicy('version: 1\nnotify: { hookArgv: [/bin/true] }\n', 'x')).notify).toEqual({ hookArgv: ['/bin/true'], timeoutMs: 2000, tries: 3 });
  });

  it('rejects bad values with their field and line:col', () => {
    const at = (yaml: string) => brief(errs(parsePolicy(`version: 1\nnotify:\n${yaml}`, 'x')));
    expect(at('  webhook: ftp://files.example/x\n')).toEqual([[3, 12, 'notify.webhook', 'E_POLICY_VALUE']]);
    expect(at('  webhook: not a url\n')).toEqual([[3, 12, 'notify.webhook', 'E_POLICY_VALUE']]);
    expect(at('  webhook: "http:example.net"\n')).toEqual([[3, 12, 'notify.webhook', 'E_POLICY_VALUE']]);
    expect(at('  hookArgv: []\n')).toEqual([[3, 13, 'notify.hookArgv', 'E_POLICY_RANGE']]);
    expect(at('  hookArgv: /bin/page\n')).toEqual([[3, 13, 'notify.hookArgv', 'E_POLICY_TYPE']]);
    expect(at('  hookArgv:\n    - /bin/page\n    - ""\n    - 3\n')).toEqual([
      [5, 7, 'notify.hookArgv[1]', 'E_POLICY_VALUE'],
      [6, 7, 'notify.hookArgv[2]', 'E_POLICY_TYPE'],
    ]);
    expect(at('  webhook: https://h.example/\n  timeoutMs: 0\n  tries: 11\n')).toEqual([
      [4, 14, 'notify.timeoutMs', 'E_POLICY_RANGE'],
      [5, 10, 'notify.tries', 'E_POLICY_RANGE'],
    ]);
    expect(at('  webhook: https://h.example/\n  timeoutMs: 60001\n  tries: 2.5\n').map((e) => e[3])).toEqual(['E_POLICY_RANGE', 'E_POLICY_TYPE']);
    expect(at('  webhook: https://h.example/\n  url: https://h.example/\n')).toEqual([[4, 3, 'notify.url', 'E_POLICY_UNKNOWN_KEY']]);
    // Settings alone notify nobody.
    expect(at('  tries: 2\n')).toEqual([[3, 3, 'notify', 'E_POLICY_MISSING']]);
    // A target that was written but is invalid is not also reported missing.
    expect(at('  hookArgv: []\n').map((e) => e[2])).toEqual(['notify.hookArgv']);
  });

  it('in a policy directory, one file may write the webhook and another the hook', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-notify-'));
    try {
      await writeFile(join(dir, '10-base.yaml'), 'version: 1\nnotify:\n  webhook: https://h.example/a\n  tries: 5\n');
      await writeFile(join(dir, '20-host.yaml'), 'version: 1\nnotify:\n  hookArgv: [/usr/local/bin/page]\nmetrics:\n  listen: "[::1]:9781"\n');
      const p = ok(await loadPolicyFile(dir));
      expect(p.notify).toEqual({ webhook: 'https://h.example/a', hookArgv: ['/usr/local/bin/page'], timeoutMs: 2000, tries: 5 });
      expect(p.metrics).toEqual({ host: '::1', port: 9781 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('policies/kvm-host.yaml loads with both sections', async () => {
    const p = ok(await loadPolicyFile(join(ROOT, 'policies/kvm-host.yaml')));
    expect(p.metrics).toEqual({ host: '127.0.0.1', port: 9781 });
    expect(p.notify?.hookArgv?.[0]).toMatch(/^\//);
  });
});
