import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createNotifier, loadSdNotifyAddon, watchdogIntervalFromEnv } from '../../agent/notify/sdnotify.js';

// A real AF_UNIX SOCK_DGRAM receiver stands in for systemd's notification socket. Like systemd,
// it enables SO_PASSCRED so the kernel tells it the sender's pid (what NotifyAccess=main checks).
const RECEIVER = String.raw`
import json, os, socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(b'\0' + path[1:].encode() if path.startswith('@') else path)
s.settimeout(10)
print(json.dumps({'bound': True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for lvl, typ, data in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid, uid, gid = struct.unpack('iII', data[:12])
    text = msg.decode()
    print(json.dumps({'msg': text, 'pid': pid}), flush=True)
    if text == 'X-END=1':
        break
`;

interface Got { msg: string; pid: number | null }

function startReceiver(path: string): Promise<{ proc: ChildProcess; got: Got[]; done: Promise<void> }> {
  const proc = spawn('python3', ['-c', RECEIVER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: Got[] = [];
  let buf = '';
  return new Promise((resolve, reject) => {
    const done = new Promise<void>((res) => proc.on('exit', () => res()));
    proc.on('error', reject);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, i)) as { bound?: boolean } & Got;
        buf = buf.slice(i + 1);
        if (line.bound) resolve({ proc, got, done });
        else got.push(line);
      }
    });
  });
}

const addon = loadSdNotifyAddon();
const haveAddon = !('error' in addon);
let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});

describe('watchdogIntervalFromEnv', () => {
  it('pings at half of WATCHDOG_USEC, only for the process it names', () => {
    expect(watchdogIntervalFromEnv({ WATCHDOG_USEC: '5000000' }, 42)).toBe(2500);
    expect(watchdogIntervalFromEnv({ WATCHDOG_USEC: '5000000', WATCHDOG_PID: '42' }, 42)).toBe(2500);
    expect(watchdogIntervalFromEnv({ WATCHDOG_USEC: '5000000', WATCHDOG_PID: '43' }, 42)).toBeNull();
    expect(watchdogIntervalFromEnv({}, 42)).toBeNull();
    expect(watchdogIntervalFromEnv({ WATCHDOG_USEC: '0' }, 42)).toBeNull();
    expect(watchdogIntervalFromEnv({ WATCHDOG_USEC: '5s' }, 42)).toBeNull();
  });
});

describe('createNotifier without NOTIFY_SOCKET', () => {
  it('is a no-op that never touches the addon', () => {
    const n = createNotifier({ WATCHDOG_USEC: '5000000' }, { sdNotify: () => { throw new Error('must not be called'); } });
    expect(n.enabled).toBe(false);
    expect(n.watchdogIntervalMs).toBeNull();
    n.ready('x'); n.status('x'); n.watchdog(); n.watchdogTick(1e9); n.stopping();
    expect(n.failures).toBe(0);
  });
});

describe.skipIf(!haveAddon)('createNotifier against a real unix datagram socket', () => {
  for (const kind of ['path', 'abstract'] as const) {
    it(`delivers READY, STATUS, WATCHDOG, STOPPING (${kind}), sent by our own pid`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sbs-notify-'));
      cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
      const path = kind === 'path' ? join(dir, 'notify.sock') : `@sbs-notify-${process.pid}-${Date.now()}`;
      const r = await startReceiver(path);
      cleanup.push(() => r.proc.kill());
      const n = createNotifier({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '5000000', WATCHDOG_PID: String(process.pid) });
      expect(n.enabled).toBe(true);
      expect(n.watchdogIntervalMs).toBe(2500);
      n.ready('watching 4 ports');
      n.status('loop on br0:\nshut up1'); // a newline must not smuggle a second key in
      n.watchdog();
      n.watchdogTick(10_000); // due (never pinged by tick)
      n.watchdogTick(11_000); // not due: 1 s < 2.5 s
      n.watchdogTick(12_600); // due again
      n.stopping('agent stopped');
      (addon as { sdNotify(p: string, m: string): number }).sdNotify(path, 'X-END=1');
      await r.done;
      expect(r.got.map((g) => g.msg)).toEqual([
        'READY=1\nSTATUS=watching 4 ports',
        'STATUS=loop on br0: shut up1',
        'WATCHDOG=1',
        'WATCHDOG=1',
        'WATCHDOG=1',
        'STOPPING=1\nSTATUS=agent stopped',
        'X-END=1',
      ]);
      for (const g of r.got) expect(g.pid).toBe(process.pid);
      expect(n.failures).toBe(0);
    });
  }

  it('reports a send to a socket nobody listens on, never throws', () => {
    const errors: string[] = [];
    const n = createNotifier({ NOTIFY_SOCKET: join(tmpdir(), `sbs-none-${process.pid}.sock`) }, undefined, {
      onError: (e) => errors.push((e as Error & { code?: string }).code ?? e.message),
    });
    expect(() => n.ready()).not.toThrow();
    expect(n.failures).toBe(1);
    expect(errors).toEqual(['ENOENT']);
  });

  it('refuses a relative NOTIFY_SOCKET (EINVAL) instead of sending somewhere else', () => {
    const errors: string[] = [];
    const n = createNotifier({ NOTIFY_SOCKET: 'relative.sock' }, undefined, { onError: (e) => errors.push((e as Error & { code?: string }).code ?? '') });
    n.watchdog();
    expect(errors).toEqual(['EINVAL']);
  });

  it('costs a few µs per call (median of 2000 sends)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbs-notify-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'n.sock');
    const r = await startReceiver(path);
    cleanup.push(() => r.proc.kill());
    const send = (addon as { sdNotify(p: string, m: string): number }).sdNotify;
    const t: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t0 = process.hrtime.bigint();
      try { send(path, 'WATCHDOG=1'); } catch { /* EAGAIN if the receiver lags: still timed */ }
      t.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    t.sort((x, y) => x - y);
    const median = t[1000]!;
    console.log(`sdNotify: median ${median.toFixed(1)} µs, p99 ${t[1980]!.toFixed(1)} µs`);
    expect(median).toBeLessThan(200); // vs ~10 ms for spawning systemd-notify
  });
});
