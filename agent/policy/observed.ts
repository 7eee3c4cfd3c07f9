// Ports no rule names but that share a bridge with a watched one: observed, never acted on.
// Pure: plain data in, plain data out.
//
// Why observe them at all: a loop that closes through a port the operator did not name (a veth
// wrongly joining two bridges, a VM tap whose name the policy's globs miss) shows on the watched
// side as a single hot port with rx ≈ tx, which no loop signature accepts (it asks for two
// members of one bridge). Reading the unnamed port's counters gives the loop its second member;
// the breaker then cuts a NAMED member by shut order, and the rule "never act on a port the
// operator did not name" (match.ts) still holds: an observed port is protected and has no rank.
import type { PortInfo, Policy, PortPolicy } from '../types.js';
import { isValidIfName } from '../host/names.js';
import { portPolicyOf } from './port-policy.js';

/** The policy an observed-only port is judged by: the defaults, never shut, never recovered. */
export function observedPort(policy: Policy, name: string): PortPolicy {
  return portPolicyOf({
    name,
    role: 'other',
    protected: true,
    shutRank: Infinity,
    thresholds: { ...policy.defaults },
    rule: -1,
    dryRun: true,
    observed: true,
  });
}

/**
 * Names to observe: members of every bridge that has at least one watched port, that no rule
 * names. `membersOf` lists a bridge's ports (an I/O edge: sysfs brif). Sorted, each once.
 */
export function observedNames(
  watched: readonly PortInfo[],
  named: ReadonlyMap<string, PortPolicy>,
  membersOf: (bridge: string) => readonly string[],
): string[] {
  const bridges = new Set<string>();
  for (const p of watched) if (p.bridge !== null && named.has(p.name)) bridges.add(p.bridge);
  const out = new Set<string>();
  for (const b of bridges) for (const m of membersOf(b)) if (isValidIfName(m) && !named.has(m)) out.add(m);
  return [...out].sort();
}
