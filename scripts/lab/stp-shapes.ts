// A host bridge that runs the kernel's STP (stp_state 1), beside a switch that does not pass
// BPDUs on (a port with BPDU filtering, or a "dumb" switch that drops link-local frames): the
// host never hears its own hellos back, both uplinks forward, and a loop through the switch
// storms as if STP were off. Under kernel STP the kernel refuses a bridge port's state from user
// space (EBUSY), so the agent's fast stop (bridge state disabled) is not available there.
import { ns, run } from './exec.js';
import { assertIfName } from './names.js';
import type { Lab } from './topology.js';

/** STP's shortest forward delay the kernel takes (centiseconds: 2 s, BR_MIN_FORWARD_DELAY). */
const FORWARD_DELAY_CS = 200;
const STP_TABLE = 'sbstp';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Kernel STP on the lab's host bridge, shortest forward delay. With `filterBpdus` the switch
 * drops STP's group address (01:80:c2:00:00:00) instead of flooding it (a Linux bridge with STP
 * off floods it), so the host's STP sees no loop; without, the host's STP blocks one uplink.
 */
export async function hostStp(lab: Lab, filterBpdus: boolean): Promise<void> {
  if (filterBpdus) {
    await run(ns(lab.ns.sw, ['nft', 'add', 'table', 'bridge', STP_TABLE]));
    await run(ns(lab.ns.sw, ['nft', 'add', 'chain', 'bridge', STP_TABLE, 'fw', '{ type filter hook forward priority 0; }']));
    await run(ns(lab.ns.sw, ['nft', 'add', 'rule', 'bridge', STP_TABLE, 'fw', 'ether', 'daddr', '01:80:c2:00:00:00', 'drop']));
  }
  await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', lab.bridge, 'type', 'bridge', 'forward_delay', String(FORWARD_DELAY_CS), 'stp_state', '1']));
}

/** The STP state of each of `ports` on the host bridge ('forwarding', 'blocking', 'disabled', ...). */
export async function stpStates(lab: Lab, ports: readonly string[]): Promise<Map<string, string>> {
  const { stdout } = await run(ns(lab.ns.host, ['bridge', '-j', 'link', 'show']));
  const links = JSON.parse(stdout) as Array<{ ifname: string; state?: string }>;
  const out = new Map<string, string>();
  for (const p of ports) out.set(assertIfName(p), links.find((l) => l.ifname === p)?.state ?? 'absent');
  return out;
}

/** STP off again on the host bridge (every port forwards at once) and the switch's BPDU filter gone. */
export async function hostStpOff(lab: Lab): Promise<void> {
  await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', lab.bridge, 'type', 'bridge', 'stp_state', '0']));
  await run(ns(lab.ns.sw, ['nft', 'delete', 'table', 'bridge', STP_TABLE])).catch(() => undefined); // absent without the filter
}

/**
 * Wait until the STP states of `ports` satisfy `want`: one state for all (a port brought up goes
 * listening, then learning, one forward delay each: ~4 s to forwarding), or a test of the states
 * in `ports` order. Throws with the states seen on timeout.
 */
export async function waitStp(lab: Lab, ports: readonly string[], want: string | ((states: string[]) => boolean), timeoutMs = 15_000): Promise<void> {
  const ok = typeof want === 'string' ? (s: string[]) => s.every((x) => x === want) : want;
  const end = Date.now() + timeoutMs;
  let seen = new Map<string, string>();
  while (Date.now() < end) {
    seen = await stpStates(lab, ports);
    if (ok([...seen.values()])) return;
    await sleep(100);
  }
  throw new Error(`STP: ports not as wanted after ${timeoutMs} ms: ${[...seen].map(([p, s]) => `${p} ${s}`).join(', ')}`);
}
