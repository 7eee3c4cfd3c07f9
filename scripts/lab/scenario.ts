// One storm, end to end: observer on the production host, one broadcast frame from an ordinary
// VM, and either the agent or the 1-second storm-control baseline breaking the loop. Shared by
// the demo, scripts/bench-reaction and the integration tests, so they measure the same thing.
import { run, ns } from './exec.js';
import { inject, type FrameKind } from './traffic.js';
import { startObserver } from './observer.js';
import { stormStats, type CounterSeries, type StormStats } from './analyze.js';
import { startStormControl } from './baseline.js';
import type { Lab } from './topology.js';
import type { AgentHandle } from './agent.js';

export interface StormRun {
  mode: 'agent' | 'storm-control';
  shape: Lab['shape'];
  /** CLOCK_MONOTONIC ns just before the injected frame was sent. */
  tInjectNs: number;
  /** rx_packets at the production host (the victim) over the run. */
  prod: CounterSeries;
  stats: StormStats;
  /** Host ports administratively down after the run. */
  downPorts: string[];
  /** For the agent: the trip events it journaled during this run. */
  trips: Array<Record<string, unknown>>;
  /** For storm-control: what it shut and when. */
  shut: Array<{ port: string; tNs: number }>;
  /** The loop was still closed at the end of the observation and was opened by hand (agent runs). */
  openedByHand?: boolean;
}

/** Administrative state of the host's bridge ports (ip -j link). */
export async function downHostPorts(lab: Lab): Promise<string[]> {
  const { stdout } = await run(ns(lab.ns.host, ['ip', '-j', 'link', 'show']));
  const links = JSON.parse(stdout) as Array<{ ifname: string; flags: string[] }>;
  return links.filter((l) => lab.hostPorts.includes(l.ifname) && !l.flags.includes('UP')).map((l) => l.ifname).sort();
}

/** Bring every host port back up (between runs); the loop closes again, quietly. */
export async function resetPorts(lab: Lab): Promise<void> {
  for (const p of lab.hostPorts) await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', p, 'up']));
}

/** Last resort for every exit path: a loop left closed after a run is broken by hand. */
export async function openLoop(lab: Lab): Promise<void> {
  for (const p of lab.loopPorts) await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', p, 'down'])).catch(() => undefined);
}

/** Two loop members still up close a loop (three uplinks into one switch need two shut). */
export function loopStillClosed(lab: Pick<Lab, 'loopPorts'>, downs: readonly string[]): boolean {
  return lab.loopPorts.filter((p) => !downs.includes(p)).length >= 2;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The agent must already run in lab.ns.host with every port up. One frame of `kind` from vm1
 * starts the storm (an unknown unicast circles like a broadcast). Observes for observeMs (the
 * storm is bounded: if the agent did not break it by then, the loop is opened by hand).
 */
export async function stormWithAgent(lab: Lab, agent: AgentHandle, observeMs = 400, kind: FrameKind = 'broadcast'): Promise<StormRun> {
  const seen = agent.logs.length;
  const obs = await startObserver(lab.ns.prod, ['eth0'], observeMs + 2000);
  let prod: CounterSeries;
  let tInjectNs = 0;
  let openedByHand = false;
  try {
    const sent = await inject(lab, 'vm1', 'eth0', { count: 1, kind });
    tInjectNs = sent.tFirstNs;
    await sleep(observeMs);
  } finally {
    const downs = await downHostPorts(lab).catch(() => [] as string[]);
    openedByHand = loopStillClosed(lab, downs);
    if (openedByHand) await openLoop(lab);
    prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  const trips = agent.logs.slice(seen).filter((l) => l.msg === 'trip' || l.msg === 'escalate' || l.msg === 'would-trip');
  return { mode: 'agent', shape: lab.shape, tInjectNs, prod, stats: stormStats(prod, tInjectNs), downPorts: await downHostPorts(lab), trips, shut: [], openedByHand };
}

/** The same storm under a switch-style 1 s storm-control that errdisables every port over the level. */
export async function stormWithStormControl(lab: Lab, o: { levelPps?: number; intervalMs?: number } = {}): Promise<StormRun> {
  const intervalMs = o.intervalMs ?? 1000;
  const sc = await startStormControl(lab, { levelPps: o.levelPps ?? 20_000, intervalMs, durationMs: 2 * intervalMs + 600 });
  const obs = await startObserver(lab.ns.prod, ['eth0'], 2 * intervalMs + 3000);
  let prod: CounterSeries;
  let tInjectNs = 0;
  let shut: Array<{ port: string; tNs: number }> = [];
  try {
    // A switch's interval runs free of the storm: start the storm at a random phase.
    await sleep(Math.random() * intervalMs);
    const sent = await inject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
    tInjectNs = sent.tFirstNs;
    const r = await sc.done();
    shut = r.shut.map((s) => ({ port: s.port, tNs: s.tNs }));
    await sleep(50);
  } finally {
    const downs = await downHostPorts(lab).catch(() => [] as string[]);
    if (loopStillClosed(lab, downs)) await openLoop(lab);
    await sc.stop().catch(() => undefined);
    prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  return { mode: 'storm-control', shape: lab.shape, tInjectNs, prod, stats: stormStats(prod, tInjectNs), downPorts: await downHostPorts(lab), trips: [], shut };
}
