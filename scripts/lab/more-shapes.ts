// More kvm-lab variations a careful tester builds next (issue 11, session 11): a storm started by
// any frame send.py can make (IPv6 multicast, an 802.1Q-tagged broadcast, 1500-byte frames),
// MACs pinned in the bridges' FDBs so a legitimate unicast stream runs through the uplinks
// without ever being flooded into the loop, and uplinks renamed as VLAN subinterfaces are named.
// Every storm is bounded: after observeMs the loop is opened by hand whatever the agent did.
import { run, ns } from './exec.js';
import { assertIfName } from './names.js';
import { armInject, type ArmedInject, type InjectOptions } from './traffic.js';
import { startObserver } from './observer.js';
import { stormStats, type CounterSeries, type StormStats } from './analyze.js';
import { downHostPorts, loopStillClosed, openLoop } from './scenario.js';
import type { Lab } from './topology.js';
import type { AgentHandle } from './agent.js';

export interface FrameStorm {
  tInjectNs: number;
  stats: StormStats;
  /** Host ports administratively down at the end of the observation (before any by-hand opening). */
  downAtEnd: string[];
  openedByHand: boolean;
  /** The agent's trip/escalate/would-trip log lines during the run. */
  trips: Array<Record<string, unknown>>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One frame from vm1 (any send.py frame), observed at `at` (prod beyond the switch by default;
 * mgmt on the host bridge when prod also receives other traffic) for observeMs, then the loop
 * opened by hand if still closed. The observer and the sender are started first, then `before`
 * runs (e.g. background traffic; its time is added to the observation), then the frame leaves
 * through the armed sender: under a CPU-bound background no process start delays it.
 */
export async function frameStorm(
  lab: Lab,
  agent: AgentHandle,
  frame: InjectOptions,
  observeMs: number,
  o: { at?: 'prod' | 'mgmt'; before?: () => Promise<void>; beforeMs?: number } = {},
): Promise<FrameStorm> {
  const obs = await startObserver(lab.ns[o.at ?? 'prod'], ['eth0'], observeMs + (o.beforeMs ?? 0) + 4000);
  let prod: CounterSeries;
  let tInjectNs = 0;
  let downAtEnd: string[] = [];
  let openedByHand = false;
  let seen = agent.logs.length;
  let armed: ArmedInject | null = null;
  try {
    armed = await armInject(lab, 'vm1', 'eth0', { ...frame, count: 1 });
    await o.before?.();
    seen = agent.logs.length;
    tInjectNs = (await armed.fire()).tFirstNs;
    await sleep(observeMs);
  } finally {
    armed?.disarm();
    downAtEnd = await downHostPorts(lab).catch(() => [] as string[]);
    openedByHand = loopStillClosed(lab, downAtEnd);
    if (openedByHand) await openLoop(lab);
    prod = (await obs.stop()).eth0 ?? { t: [], c: [] };
  }
  const trips = agent.logs.slice(seen).filter((l) => l.msg === 'trip' || l.msg === 'escalate' || l.msg === 'would-trip');
  return { tInjectNs, stats: stormStats(prod, tInjectNs), downAtEnd, openedByHand, trips };
}

/** MAC address of `dev` in `netns`. */
export async function macOf(netns: string, dev: string): Promise<string> {
  const { stdout } = await run(ns(netns, ['ip', '-j', 'link', 'show', 'dev', assertIfName(dev)]));
  const mac = (JSON.parse(stdout) as Array<{ address?: string }>)[0]?.address;
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error(`no MAC for ${dev} in ${netns}`);
  return mac;
}

/** A static, sticky FDB entry: frames to `mac` leave by `port` only, and the MAC never moves (as a switch's port security pins it). */
export async function pinMac(netns: string, mac: string, port: string): Promise<void> {
  await run(ns(netns, ['bridge', 'fdb', 'replace', mac, 'dev', assertIfName(port), 'master', 'static', 'sticky']));
}

export async function unpinMac(netns: string, mac: string, port: string): Promise<void> {
  await run(ns(netns, ['bridge', 'fdb', 'del', mac, 'dev', assertIfName(port), 'master'])).catch(() => undefined);
}

/**
 * Rename host ports (down, rename, up again; loop members come up last), as an operator's VLAN
 * subinterfaces are named (up1 -> up1.100). Returns the lab with the new names.
 */
export async function renameHostPorts(lab: Lab, names: ReadonlyMap<string, string>): Promise<Lab> {
  const host = lab.ns.host;
  for (const [from, to] of names) {
    await run(ns(host, ['ip', 'link', 'set', 'dev', assertIfName(from), 'down']));
    await run(ns(host, ['ip', 'link', 'set', 'dev', from, 'name', assertIfName(to)]));
  }
  const rn = (p: string) => names.get(p) ?? p;
  for (const to of names.values()) await run(ns(host, ['ip', 'link', 'set', 'dev', to, 'up']));
  return { ...lab, loopPorts: lab.loopPorts.map(rn), hostPorts: lab.hostPorts.map(rn) };
}

/**
 * MTU of every link a kvm lab's frames cross (VMs, host ports, switch ports, prod, mgmt), e.g.
 * 9000 for jumbo frames; the bridges follow their ports. Call again with 1500 to undo.
 */
export async function setLabMtu(lab: Lab, mtu: number): Promise<void> {
  if (!(Number.isInteger(mtu) && mtu >= 1280 && mtu <= 9216)) throw new Error(`mtu must be an integer in 1280..9216, got ${mtu}`);
  const links: Array<[string, string]> = [
    [lab.ns.vm1, 'eth0'],
    [lab.ns.prod, 'eth0'],
    [lab.ns.mgmt, 'eth0'],
    [lab.ns.sw, 'swp'],
    ...lab.hostPorts.map((p): [string, string] => [lab.ns.host, p]),
    ...lab.loopPorts.map((p): [string, string] => [lab.ns.sw, p.replace(/^up/, 'sw')]),
  ];
  for (const [n, dev] of links) await run(ns(n, ['ip', 'link', 'set', 'dev', assertIfName(dev), 'mtu', String(mtu)]));
}

/** Delete a host uplink added by addUplink (its switch-side peer goes with it). */
export async function removeUplink(lab: Lab, name: string): Promise<Lab> {
  await run(ns(lab.ns.host, ['ip', 'link', 'del', 'dev', assertIfName(name)]));
  return { ...lab, loopPorts: lab.loopPorts.filter((p) => p !== name), hostPorts: lab.hostPorts.filter((p) => p !== name) };
}
