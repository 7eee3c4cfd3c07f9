// One storm, end to end: observer on the production host, one broadcast frame from an ordinary
// VM, and either the agent or the 1-second storm-control baseline breaking the loop. Shared by
// the demo, scripts/bench-reaction and the integration tests, so they measure the same thing.
import { run, ns } from './exec.js';
import { armInject, inject, type ArmedInject, type FrameKind } from './traffic.js';
import { startObserver } from './observer.js';
import { SETTLE_FRAMES, stormStats, type CounterSeries, type StormStats } from './analyze.js';
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
  /** For storm-control: the storm began this long into its free-running interval (ms). */
  phaseMs?: number;
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

/**
 * Two loop members still up close a loop (three uplinks into one switch need two shut); one does
 * where a hairpin port loops alone (Lab.loopMinMembers).
 */
export function loopStillClosed(lab: Pick<Lab, 'loopPorts' | 'loopMinMembers'>, downs: readonly string[]): boolean {
  return lab.loopPorts.filter((p) => !downs.includes(p)).length >= (lab.loopMinMembers ?? 2);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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

/**
 * Pure: the end of the first storm-control interval that lies wholly after tNs (its intervals end
 * at startNs + k * interval). Storm-control has decided about a storm that began at tNs by then.
 */
export function fullIntervalEndNs(startNs: number, intervalMs: number, tNs: number): number {
  const iNs = intervalMs * 1e6;
  return startNs + (Math.floor(Math.max(0, tNs - startNs) / iNs) + 2) * iNs;
}

/**
 * The same storm under a switch-style 1 s storm-control that errdisables every port over the
 * level. The frame leaves at a random phase of its interval from an armed sender (no process
 * start between the phase drawn and the frame), and storm-control runs until the first interval
 * wholly after the frame has ended: it always gets one whole interval of the storm to judge (it
 * once ran a fixed 2.6 s, and a storm that began late in it met no whole interval: 'shut' empty).
 */
export async function stormWithStormControl(lab: Lab, o: { levelPps?: number; intervalMs?: number } = {}): Promise<StormRun> {
  const intervalMs = o.intervalMs ?? 1000;
  let armed: ArmedInject | null = await armInject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast' });
  const sc = await startStormControl(lab, { levelPps: o.levelPps ?? 20_000, intervalMs, durationMs: 5 * intervalMs });
  const obs = await startObserver(lab.ns.prod, ['eth0'], 6 * intervalMs + 2000);
  let prod: CounterSeries;
  let tInjectNs = 0;
  let shut: Array<{ port: string; tNs: number }> = [];
  try {
    // A switch's interval runs free of the storm: start the storm at a random phase.
    await sleepUntilNs(sc.startNs + Math.random() * intervalMs * 1e6);
    tInjectNs = (await armed.fire()).tFirstNs;
    armed = null;
    await sleepUntilNs(fullIntervalEndNs(sc.startNs, intervalMs, tInjectNs) + 100e6);
    const r = await sc.stop();
    shut = r.shut.map((s) => ({ port: s.port, tNs: s.tNs }));
    await sleep(50);
  } finally {
    armed?.disarm();
    const downs = await downHostPorts(lab).catch(() => [] as string[]);
    if (loopStillClosed(lab, downs)) await openLoop(lab);
    await sc.stop().catch(() => undefined);
    prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  const phaseMs = ((tInjectNs - sc.startNs) / 1e6) % intervalMs;
  return { mode: 'storm-control', shape: lab.shape, tInjectNs, prod, downPorts: await downHostPorts(lab), trips: [], shut, phaseMs, stats: stormStats(prod, tInjectNs, 20, SETTLE_FRAMES) };
}

function sleepUntilNs(tNs: number): Promise<void> {
  return sleep(Math.max(0, (tNs - Number(process.hrtime.bigint())) / 1e6));
}
