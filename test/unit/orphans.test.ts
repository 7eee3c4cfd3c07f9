import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNotifier } from '../../agent/notify/webhook.js';
import type { NotifyEvent } from '../../agent/notify/webhook.js';

// No orphans: real processes, found by a unique argument in the process table.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (mark: string): number[] => {
  try {
    return execFileSync('pgrep', ['-f', mark], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
};
async function gone(mark: string, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (alive(mark).length === 0) return true;
    await sleep(20);
  }
  return false;
}
const ev = { ts: new Date().toISOString(), event: 'trip', port: 'vm1', reason: 'test' } as unknown as NotifyEvent;

describe('no orphans', () => {
  // Whatever a failing run leaves behind (only our own marked sleeps) is killed here.
  afterAll(() => {
    for (const pid of alive(`^sleep 6[123]\\.${process.pid}`)) process.kill(pid, 'SIGKILL');
  });
  it('a hook that times out is killed with what it started (sh -c ...; sleep)', async () => {
    const mark = `61.${process.pid}1`;
    const errors: Error[] = [];
    const n = createNotifier({ target: { kind: 'exec', argv: ['sh', '-c', `sleep ${mark}; true`] }, timeoutMs: 300, tries: 1, onError: (e) => errors.push(e) });
    n.notify(ev);
    await sleep(150);
    expect(alive(`^sleep ${mark}`).length).toBe(1);
    await n.idle();
    expect(errors[0]?.message).toMatch(/killed after 300 ms/);
    expect(await gone(`^sleep ${mark}`)).toBe(true);
    n.close();
  });

  it('close() kills a running hook and its children', async () => {
    const mark = `62.${process.pid}2`;
    const n = createNotifier({ target: { kind: 'exec', argv: ['sh', '-c', `sleep ${mark}; true`] }, timeoutMs: 60_000, tries: 1 });
    n.notify(ev);
    await sleep(200);
    expect(alive(`^sleep ${mark}`).length).toBe(1);
    n.close();
    expect(await gone(`^sleep ${mark}`)).toBe(true);
  });

  it('bridge monitor fdb dies with the agent, even by kill -9', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-orphan-'));
    const mark = `63.${process.pid}3`;
    const fake = join(dir, 'bridge');
    writeFileSync(fake, `#!/bin/sh\nexec sleep ${mark}\n`);
    chmodSync(fake, 0o755);
    const mod = resolve('dist/agent/sources/fdb.js');
    const agent = spawn(process.execPath, ['--input-type=module', '-e', `const { createFdbSource } = await import(${JSON.stringify(mod)}); createFdbSource({ now: () => 0, bridgeBin: ${JSON.stringify(fake)} }); setInterval(() => {}, 1000);`], { stdio: 'ignore' });
    try {
      const end = Date.now() + 5000;
      while (alive(`^sleep ${mark}`).length === 0 && Date.now() < end) await sleep(20);
      expect(alive(`^sleep ${mark}`).length).toBe(1);
      agent.kill('SIGKILL');
      expect(await gone(`^sleep ${mark}`)).toBe(true);
    } finally {
      agent.kill('SIGKILL');
      for (const pid of alive(`^sleep ${mark}`)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
