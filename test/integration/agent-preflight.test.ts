// `run --preflight`: the agent refuses to start on a host whose loop is closed but still quiet
// (the moment before go-live in the story), and starts once the loop is open. The probe itself
// must not start the storm: prod's counter barely moves.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startAgent } from '../../scripts/lab/agent.js';
import type { Lab } from '../../scripts/lab/topology.js';
import { readLinkStats } from '../../scripts/lab/counters.js';
import { run, ns } from '../../scripts/lab/exec.js';
import { CLI, newStateDir, REPO, useKvmLab } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-pf-';
const POLICY = `${REPO}policies/lab.yaml`;
let lab: Lab;

useKvmLab(PREFIX, (l) => (lab = l));

function runAgentOnce(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', lab.ns.host, process.execPath, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}

describe('run --preflight', () => {
  it('refuses to start while a quiet loop is closed, naming both ports, without starting a storm', async () => {
    const before = (await readLinkStats(lab.ns.prod)).get('eth0')!.rxPackets;
    const dir = newStateDir('pf');
    const r = await runAgentOnce(['run', '--policy', POLICY, '--state-dir', dir, '--socket', `${dir}/control.sock`, '--preflight']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/up1/);
    expect(r.stderr).toMatch(/up2/);
    expect(r.stderr).toMatch(/not starting/);
    await new Promise((res) => setTimeout(res, 200));
    const after = (await readLinkStats(lab.ns.prod)).get('eth0')!.rxPackets;
    expect(after - before).toBeLessThan(10); // the probe frames only, no storm
  });

  it('starts once the loop is open', async () => {
    await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', 'up2', 'down']));
    const agent = await startAgent(lab.ns.host, { policy: POLICY, extraArgs: ['--preflight'], readyTimeoutMs: 20_000 });
    try {
      expect(agent.logs.some((l) => l.msg === 'preflight done')).toBe(true);
    } finally {
      await agent.stop();
    }
  });
});
