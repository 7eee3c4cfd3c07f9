// Lab variations of the kvm shape that the first lab was never tuned on (issue 11): a third
// uplink into the same switch, and loop links shaped to a few Mbit/s (old 10/100 gear), so a
// loop circles at a few thousand frames/s, under every flood threshold.
import { run } from './exec.js';
import { assertIfName } from './names.js';
import type { Lab } from './topology.js';

/**
 * One more host uplink `name` into the switch (peer `peer` on sw0), up at once: the loop gains
 * a member. Returns the lab with the port added to loopPorts and hostPorts.
 */
export async function addUplink(lab: Lab, name: string, peer: string): Promise<Lab> {
  assertIfName(name);
  assertIfName(peer);
  await run(['ip', '-n', lab.ns.host, 'link', 'add', 'name', name, 'type', 'veth', 'peer', 'name', peer, 'netns', lab.ns.sw]);
  await run(['ip', '-n', lab.ns.sw, 'link', 'set', 'dev', peer, 'master', 'sw0']);
  await run(['ip', '-n', lab.ns.host, 'link', 'set', 'dev', name, 'master', lab.bridge]);
  await run(['ip', '-n', lab.ns.sw, 'link', 'set', 'dev', peer, 'up']);
  await run(['ip', '-n', lab.ns.host, 'link', 'set', 'dev', name, 'up']);
  return { ...lab, loopPorts: [...lab.loopPorts, name], hostPorts: [...lab.hostPorts, name] };
}

/** The switch-side peer of a kvm uplink: up1 <-> sw1 (also under a VLAN subinterface's name, up1.100). */
export function switchPeer(port: string): string {
  const m = /^up(\d+)(?:\.\d+)?$/.exec(port);
  if (!m) throw new Error(`${port} is not a kvm uplink`);
  return `sw${m[1]}`;
}

/**
 * Egress of both ends of each uplink through a token bucket of `mbit` Mbit/s (tc tbf). The
 * bucket (burstKb, 4 kB by default) must hold the largest frame: tbf drops a larger one.
 */
export async function shapeUplinks(lab: Lab, ports: readonly string[], mbit: number, burstKb = 4): Promise<void> {
  if (!(mbit > 0 && mbit <= 10_000)) throw new Error(`mbit must be in (0, 10000], got ${mbit}`);
  if (!(Number.isInteger(burstKb) && burstKb >= 2 && burstKb <= 1024)) throw new Error(`burstKb must be an integer in 2..1024, got ${burstKb}`);
  for (const p of ports) {
    for (const [netns, dev] of [[lab.ns.host, p], [lab.ns.sw, switchPeer(p)]] as const) {
      await run(['tc', '-n', netns, 'qdisc', 'replace', 'dev', assertIfName(dev), 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', `${burstKb}kb`, 'latency', '20ms']);
    }
  }
}

/** Remove what shapeUplinks added (no error for a link without it). */
export async function unshapeUplinks(lab: Lab, ports: readonly string[]): Promise<void> {
  for (const p of ports) {
    for (const [netns, dev] of [[lab.ns.host, p], [lab.ns.sw, switchPeer(p)]] as const) {
      await run(['tc', '-n', netns, 'qdisc', 'del', 'dev', assertIfName(dev), 'root']).catch(() => undefined);
    }
  }
}

/** Pure: the argv that enslaves a host port to the lab's bridge (plug) or frees it (unplug, bridge null). */
export function enslaveArgv(lab: Pick<Lab, 'ns' | 'bridge'>, port: string, plug: boolean): string[] {
  return ['ip', '-n', lab.ns.host, 'link', 'set', 'dev', assertIfName(port), ...(plug ? ['master', lab.bridge] : ['nomaster'])];
}

/** Plug (enslave) or unplug (free, link left up) a host uplink: the hotplug shape's one change. */
export async function setEnslaved(lab: Lab, port: string, plug: boolean): Promise<void> {
  await run(enslaveArgv(lab, port, plug));
}

/**
 * Bring a host uplink's switch end up or down: the host port keeps its bridge and admin state and
 * only its carrier follows (a veth's carrier is its peer's admin state). The carrier shape's one
 * change: a cable plugged into a NIC that sat in the bridge without link.
 */
export async function setSwitchEnd(lab: Lab, port: string, up: boolean): Promise<void> {
  await run(['ip', '-n', lab.ns.sw, 'link', 'set', 'dev', assertIfName(switchPeer(port)), up ? 'up' : 'down']);
}
