// What the breaker says when a loop runs through a port no policy rule names (policy/observed.ts).
// Pure. The port is never touched (it is protected and has no shut rank, so candidates() skips
// it): a loop through it is cut at a named member by shut order, or reported when none may be
// shut. These words make that plain to the operator, and say how to let the breaker choose it.
import type { PortPolicy } from '../types.js';

/** Members of a loop that no rule names (observed only), in the verdict's order. */
export function unnamedMembers(members: readonly string[], ports: ReadonlyMap<string, PortPolicy>): string[] {
  return members.filter((m) => ports.get(m)?.observed === true);
}

/** The end of a loop trip's reason: why the unnamed member was not the one shut. '' when every member is named. */
export function unnamedShutNote(members: readonly string[], ports: ReadonlyMap<string, PortPolicy>, shut: string): string {
  const u = unnamedMembers(members, ports);
  if (u.length === 0) return '';
  const them = u.join(',');
  const is = u.length === 1 ? 'is' : 'are';
  // A tunnel port is worth naming as such: the cut then fell on a physical port instead.
  const tunnels = u.filter((m) => ports.get(m)?.overlay !== undefined);
  if (tunnels.length > 0) {
    return `; the loop runs through ${them} (${tunnels.join(',')}: VXLAN tunnel port), which ${is} not named by the policy, so not touched: ${shut} was shut instead (name ${them} in a policy rule to let the breaker choose ${u.length === 1 ? 'it' : 'them'}; a tunnel port goes before a physical one of its role)`;
  }
  return `; the loop runs through ${them}, which ${is} not named by the policy, so not touched: ${shut} was shut instead (name ${them} in a policy rule to let the breaker choose ${u.length === 1 ? 'it' : 'them'})`;
}

/** Why a loop through an unnamed port is only reported: no named member may be shut. null: every member is named. */
export function unnamedOnlyReason(key: string, members: readonly string[], ports: ReadonlyMap<string, PortPolicy>): string | null {
  const u = unnamedMembers(members, ports);
  if (u.length === 0) return null;
  const named = members.filter((m) => !u.includes(m));
  const which = named.length === 0 ? 'no named port is a member' : `no named member may be shut (${named.join(',')}: protected, not in breaker.shutOrder, or already tripped)`;
  return `loop on ${key} runs through ${u.join(',')}, not named by the policy, so not touched; ${which}: reported, not acted on (name ${u.join(',')} in a policy rule to let the breaker cut it)`;
}

/** Why a flood from an unnamed port is only reported. */
export function unnamedFloodReason(port: string): string {
  return `flood from ${port}, which is not named by the policy (observed only): reported, not acted on (name ${port} in a policy rule, e.g. role vm, to let the breaker shut it)`;
}
