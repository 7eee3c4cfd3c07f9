// Read one ESXi host's virtual network over an open session: the commands in commands.ts, the
// parsers of this folder, joined into an EsxInventory. The only I/O is `exec` (one remote command).
//
// Required reads (nic list, vswitch list, portgroup list) fail the whole read: without them no
// target can be validated. VM reads that fail leave that VM's fields null, so the action that
// needs them is refused later with the reason, instead of the agent guessing.
import { toArgv, type EsxOp } from './commands.js';
import type { EsxInventory, EsxPortgroup, EsxVm, EsxVmNic } from './inventory.js';
import { parseNicList } from './nic-list.js';
import { parseVswitchList } from './vswitch.js';
import { parsePortgroupList } from './portgroup.js';
import { parseVmList } from './vm-list.js';
import { parseVmPortList } from './vm-port.js';
import { parseGetAllVms, parseVmDevices } from './vim.js';
import { parseSecurityPolicy, parseFailoverPolicy } from './policy-get.js';
import { parseAdvancedInt } from './advanced.js';
import { mayBridge } from './l2.js';
import type { Result } from './result.js';
import type { RemoteExec } from './session.js';

export interface ReadOptions {
  host: string;
  /** Also read each port group's security and failover policy and /Net/BlockGuestBPDU (preflight). */
  policies?: boolean;
  /**
   * Read the ports and devices only of VMs with a port on one of these port groups (the daemon:
   * on a host with many VMs, two commands per VM every 30 s would load it for nothing). Absent:
   * every running VM (preflight, which judges them all).
   */
  onlyPortgroups?: readonly string[];
  /**
   * With onlyPortgroups: also read every VM that may have two vNICs in one L2 (l2.ts mayBridge),
   * a guest that could bridge them into a loop, and the VMs named here (those already watched:
   * a VM cut down to one connected vNIC is not in `vm list` twice any more, but must stay known).
   */
  bridgeSuspects?: boolean;
  alsoVms?: readonly string[];
  nowMs?: () => number;
}

export class InventoryError extends Error {}

async function run<T>(exec: RemoteExec, op: EsxOp, parse: (text: string) => Result<T>): Promise<Result<T>> {
  const argv = toArgv(op);
  if (!argv.ok) return argv;
  const r = await exec(argv.value);
  if (r.error !== undefined) return { ok: false, error: `${argv.value.join(' ')}: ${r.error}` };
  if (r.code !== 0) return { ok: false, error: `${argv.value.join(' ')}: exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? ''}` };
  const p = parse(r.stdout);
  return p.ok ? p : { ok: false, error: `${argv.value.join(' ')}: ${p.error}${p.line ? ` (line ${p.line})` : ''}` };
}

function must<T>(r: Result<T>): T {
  if (!r.ok) throw new InventoryError(r.error);
  return r.value;
}

export async function readInventory(exec: RemoteExec, opts: ReadOptions): Promise<{ inventory: EsxInventory; problems: string[] }> {
  const problems: string[] = [];
  const soft = <T>(r: Result<T>): T | null => {
    if (r.ok) return r.value;
    problems.push(r.error);
    return null;
  };
  const nics = must(await run(exec, { op: 'nic-list' }, parseNicList));
  const vswitches = must(await run(exec, { op: 'vswitch-list' }, parseVswitchList));
  const pgs = must(await run(exec, { op: 'portgroup-list' }, parsePortgroupList));

  const portgroups: EsxPortgroup[] = [];
  for (const pg of pgs) {
    let security = null;
    let failover = null;
    if (opts.policies && pg.unusable === null) {
      security = soft(await run(exec, { op: 'pg-security', portgroup: pg.name }, parseSecurityPolicy));
      failover = soft(await run(exec, { op: 'pg-failover', portgroup: pg.name }, parseFailoverPolicy));
    }
    portgroups.push({ ...pg, security, failover });
  }

  // Running VMs (World IDs) and their vSwitch ports; then vim-cmd's ids and device keys.
  const running = soft(await run(exec, { op: 'vm-list' }, parseVmList)) ?? [];
  const all = soft(await run(exec, { op: 'vim-vm-list' }, parseGetAllVms)) ?? [];
  // esxcli names VMs by World ID, vim-cmd by Vmid: the only join is the name. A name held by two
  // VMs joins nothing (their vNICs cannot be disconnected; the next allowed action is used).
  const vmidByName = new Map<string, string | null>();
  for (const v of all) vmidByName.set(v.name, vmidByName.has(v.name) ? null : v.vmid);
  for (const [name, id] of vmidByName) if (id === null) problems.push(`two VMs are named ${JSON.stringify(name)}: vim-cmd ids not joined, vNIC disconnect refused for them`);
  const vms: EsxVm[] = [];
  const only = opts.onlyPortgroups ? new Set(opts.onlyPortgroups) : null;
  // `vm list` names each VM's networks; when that list cannot be trusted (a comma in a name), read the VM anyway.
  const also = new Set(opts.alsoVms ?? []);
  const relevant = only
    ? running.filter((v) => !v.networksComplete || v.networks.some((n) => only.has(n)) || also.has(v.name) || (opts.bridgeSuspects === true && mayBridge(v, pgs)))
    : running;
  for (const v of relevant) {
    const ports = soft(await run(exec, { op: 'vm-port-list', worldId: v.worldId }, parseVmPortList)) ?? [];
    const vmid = vmidByName.get(v.name) ?? null;
    const devices = vmid !== null ? soft(await run(exec, { op: 'vim-vm-devices', vmid }, parseVmDevices)) : null;
    const nicsOfVm: EsxVmNic[] = [];
    const seen = new Set<string>();
    for (const p of ports) {
      const mac = p.mac.toLowerCase();
      const d = devices?.find((x) => x.mac === mac);
      seen.add(mac);
      nicsOfVm.push({ portId: p.portId, mac, portgroup: p.portgroup, vswitch: p.vswitch, teamUplink: p.teamUplink, deviceKey: d?.key ?? null, connected: d ? (d.connected ?? true) : true });
    }
    // A disconnected vNIC has no vSwitch port: known only from vim-cmd (needed to reconnect it).
    for (const d of devices ?? []) {
      if (d.mac === null || seen.has(d.mac)) continue;
      const vs = portgroups.find((p) => p.name === d.portgroup)?.vswitch ?? '';
      nicsOfVm.push({ portId: null, mac: d.mac, portgroup: d.portgroup ?? '', vswitch: vs, teamUplink: null, deviceKey: d.key, connected: d.connected });
    }
    vms.push({ name: v.name, worldId: v.worldId, vmid, nics: nicsOfVm });
  }
  let blockGuestBpdu: boolean | null = null;
  if (opts.policies) {
    const a = soft(await run(exec, { op: 'advanced-get', path: '/Net/BlockGuestBPDU' }, (t) => parseAdvancedInt(t, '/Net/BlockGuestBPDU')));
    if (a) blockGuestBpdu = a.intValue === 1;
  }
  const now = opts.nowMs ?? ((): number => performance.now());
  const vimVms = [...vmidByName].filter((e): e is [string, string] => e[1] !== null).map(([name, vmid]) => ({ name, vmid }));
  return { inventory: { host: opts.host, nics, vswitches, portgroups, vms, blockGuestBpdu, readAtMs: now(), vimVms }, problems };
}
