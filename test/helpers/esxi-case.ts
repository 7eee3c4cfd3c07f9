// The stand-in ESXi lab with the agent watching it over SSH, its own detector deciding
// (`fuse: stream`), as the esxi-benign and esxi-guest-loop lab tests use it: start, stop, put
// back what a case cut, and one line per agent verdict for a failure message.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildEsxiLab, closeLoop, openLoop, standinArgv, teardownEsxiLab, type EsxiLab } from '../../scripts/lab/esxi/lab.js';
import { readInventory } from '../../scripts/lab/esxi/inventory.js';
import { esxiLabPolicy } from '../../scripts/lab/esxi/policy.js';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { run } from '../../scripts/lab/exec.js';
import { inject } from '../../scripts/lab/traffic.js';
import { newStateDir, removeStateDirs, requireBuiltAgent, sleep, waitForNew, type Line } from './agent-lab.js';

export interface EsxiCase {
  lab: EsxiLab;
  agent: AgentHandle;
}

/** Build the lab (`split`: vmA's second vNIC on vSwitch1) and start the agent; resolves once it streams the host's counters. */
export async function startEsxiCase(prefix: string, name: string, o: { split?: boolean; portgroups?: string } = {}): Promise<EsxiCase> {
  requireBuiltAgent();
  const lab = await buildEsxiLab(prefix, o.split === true ? { split: true } : {});
  const policy = join(lab.dir, 'policy.yaml');
  writeFileSync(policy, esxiLabPolicy(lab, o.portgroups === undefined ? { fuse: 'stream' } : { fuse: 'stream', portgroups: o.portgroups }));
  const agent = await startAgent(lab.ns.agent, { policy, stateDir: newStateDir(name) });
  await agent.waitFor((l) => l.component === 'esxi' && l.state === 'streaming', 15_000);
  await sleep(500);
  return { lab, agent };
}

/** The loop opened, the agent stopped, the lab and state dirs removed, on every path. */
export async function stopEsxiCase(prefix: string, c: Partial<EsxiCase>): Promise<void> {
  try {
    if (c.lab) await openLoop(c.lab).catch(() => undefined);
    await c.agent?.stop();
  } finally {
    await teardownEsxiLab(prefix);
    removeStateDirs();
  }
}

/** Every vNIC the agent disconnected put back (and the vmnics up, if asked), every tripped port restored: the next case starts clean. */
export async function restoreAll(c: EsxiCase, reason: string, o: { vmnics?: boolean } = {}): Promise<void> {
  const inv = await readInventory(c.lab);
  for (const vm of inv.vms) for (const n of vm.nics) if (!n.connected) await run(standinArgv(c.lab, 'vim-cmd', ['vmsvc/device.connection', String(vm.vmid), String(n.key), '1']));
  if (o.vmnics === true) for (const n of ['vmnic0', 'vmnic1']) await run(standinArgv(c.lab, 'esxcli', ['network', 'nic', 'up', '-n', n]));
  const st = (await c.agent.ask('status')) as { ports: Array<{ port: string; state: string }> };
  for (const p of st.ports.filter((x) => x.state === 'tripped')) await c.agent.ask('restore', { port: p.port, reason }).catch(() => undefined);
  await sleep(1500); // the agent re-reads the host after a reconnect
}

/** One agent log line as `msg port: reason; clues`. */
export function describeLine(l: Line): string {
  const ev = l.evidence as { clues?: string[] } | undefined;
  return `${String(l.msg)} ${String(l.port ?? '')}: ${String(l.reason ?? '')}; ${(ev?.clues ?? []).join('; ')}`;
}

/**
 * The bridging guest's loop closed and one broadcast sent from prod; resolves with the agent's
 * first trip, ms from before the frame to its log line, and every trip of the next 1.5 s (a
 * second cut would come within the settle). The loop is opened whatever happens (guard: 8 s).
 */
export async function guestLoopStorm(c: EsxiCase): Promise<{ trip: Line; ms: number; lines: Line[] }> {
  const seen = c.agent.logs.length;
  const tripped = waitForNew(c.agent, (l) => l.msg === 'trip', 8000);
  tripped.catch(() => undefined);
  await closeLoop(c.lab);
  const guard = setTimeout(() => void openLoop(c.lab).catch(() => undefined), 8000);
  try {
    const t0 = Date.now();
    await inject({ prefix: c.lab.prefix, ns: { prod: c.lab.ns.prod } }, 'prod', 'eth0', { count: 1, kind: 'broadcast' });
    const trip = await tripped;
    const ms = Date.now() - t0;
    await sleep(1500);
    return { trip, ms, lines: c.agent.logs.slice(seen) };
  } finally {
    clearTimeout(guard);
    await openLoop(c.lab);
  }
}
