// A full hypervisor: the kvm lab's bridge with many guest NICs beside its two uplinks (libvirt's
// vnetN names), their peers in a namespace of their own as a guest's interfaces are. Every storm
// frame is flooded out of each of them, and the agent samples all of them each tick, while the
// near-limit poller reads only the loop's two uplinks.
import { run } from './exec.js';
import { assertNetns } from './names.js';
import { ipv6Off, type Lab } from './topology.js';

/** Guest NICs a "many" lab adds (a busy host; bench-cost measures the agent at 256 at rest). */
export const MAX_GUEST_PORTS = 512;

/**
 * Add `n` guest NICs vnet0..vnet{n-1} to the lab's bridge, up, with peers g0.. in `${prefix}vms`
 * (torn down with the lab: same prefix). One `ip -batch` per namespace, not 4n spawns.
 */
export async function addGuestPorts(lab: Lab, n: number): Promise<Lab> {
  if (!Number.isInteger(n) || n < 1 || n > MAX_GUEST_PORTS) throw new Error(`guest ports must be an integer in 1..${MAX_GUEST_PORTS}, got ${n}`);
  const vms = assertNetns(`${lab.prefix}vms`);
  await run(['ip', 'netns', 'add', vms]);
  await ipv6Off(vms);
  const names = Array.from({ length: n }, (_, i) => `vnet${i}`);
  const host = names.flatMap((p, i) => [`link add name ${p} type veth peer name g${i} netns ${vms}`, `link set dev ${p} master ${lab.bridge}`, `link set dev ${p} up`]);
  const timeoutMs = 30_000 + n * 100;
  await run(['ip', '-n', lab.ns.host, '-batch', '-'], { input: `${host.join('\n')}\n`, timeoutMs });
  await run(['ip', '-n', vms, '-batch', '-'], { input: `${names.map((_, i) => `link set dev g${i} up`).join('\n')}\n`, timeoutMs });
  return { ...lab, hostPorts: [...lab.hostPorts, ...names] };
}
