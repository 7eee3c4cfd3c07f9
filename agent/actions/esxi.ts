// Link-down / link-up of an ESXi port, as the policy allows, over the host's SSH session.
//
//   <host>/vmnicN        link-down: esxcli network nic down -n vmnicN      (nic-down)
//   <host>/vnic-<mac>    link-down: the first of the host's `actions` that applies, in its order:
//                          vnic-disconnect       vim-cmd vmsvc/device.connection VMID KEY 0
//                          portgroup-quarantine  esxcli ... portgroup set -p PG --vlan-id Q
//   link-up undoes what the trip did (its EsxiActionRecord): nic up, reconnect, the old VLAN.
//
// Every target is validated against the host's own lists (commands.ts) and every action is
// verified by reading the host again; a failed or unverified action is retried, then reported.
import { toArgv, type EsxOp } from '../esxi/commands.js';
import type { EsxInventory, EsxVm, EsxVmNic } from '../esxi/inventory.js';
import { parseNicList } from '../esxi/nic-list.js';
import { parsePortgroupList } from '../esxi/portgroup.js';
import { parseVmDevices } from '../esxi/vim.js';
import { macOfVnicPort } from '../esxi/ports.js';
import type { RemoteExec } from '../esxi/session.js';
import type { EsxActionContext } from '../esxi/host.js';
import type { ActionRequest, ActionResult, EsxiActionRecord, EsxiHostPolicy } from '../types.js';

/** The host's policy, inventory and session, and the previous trip's record (see esxi/host.ts). */
export type EsxiActionContext = EsxActionContext;

interface Plan {
  /** null: the host is already in the requested state (nothing to run; `record` says why). */
  op: EsxOp | null;
  record: EsxiActionRecord;
  /** Read the host again: is the requested state there? */
  verify: () => Promise<boolean>;
}

function findVnic(inv: EsxInventory, local: string): { vm: EsxVm; nic: EsxVmNic } | null {
  const mac = macOfVnicPort(local);
  if (mac === null) return null;
  for (const vm of inv.vms) for (const nic of vm.nics) if (nic.mac === mac) return { vm, nic };
  return null;
}

async function nicAdminUp(exec: RemoteExec, nic: string): Promise<boolean | null> {
  const r = await exec(['esxcli', 'network', 'nic', 'list']);
  if (r.error !== undefined || r.code !== 0) return null;
  const p = parseNicList(r.stdout);
  return p.ok ? (p.value.find((n) => n.name === nic)?.adminUp ?? null) : null;
}

async function pgVlan(exec: RemoteExec, pg: string): Promise<number | null> {
  const r = await exec(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'list']);
  if (r.error !== undefined || r.code !== 0) return null;
  const p = parsePortgroupList(r.stdout);
  return p.ok ? (p.value.find((x) => x.name === pg)?.vlanId ?? null) : null;
}

async function vnicConnected(exec: RemoteExec, vmid: string, key: number): Promise<boolean | null> {
  const r = await exec(['vim-cmd', 'vmsvc/device.getdevices', vmid]);
  if (r.error !== undefined || r.code !== 0) return null;
  const p = parseVmDevices(r.stdout);
  return p.ok ? (p.value.find((d) => d.key === key)?.connected ?? null) : null;
}

/** What to run for this request, or why nothing may be run. Pure apart from the verify closures. */
export function planEsxiAction(req: ActionRequest, ctx: EsxiActionContext): Plan | string {
  const { host, inventory: inv, exec } = ctx;
  const prefix = `${host.name}/`;
  if (!req.port.startsWith(prefix)) return `${req.port} is not a port of ESXi host ${host.name}`;
  if (!inv) return `no inventory of ${host.name} yet (not connected)`;
  const local = req.port.slice(prefix.length);
  const down = req.kind === 'link-down';
  const hostNics = inv.nics.map((n) => n.name);

  if (/^vmnic[0-9]+$/.test(local)) {
    if (down && !host.actions.includes('nic-down')) return `policy esxi.hosts[${host.name}].actions does not list nic-down`;
    return {
      op: { op: down ? 'nic-down' : 'nic-up', nic: local, hostNics },
      record: { host: host.name, action: down ? 'nic-down' : 'nic-up', target: local },
      verify: async () => (await nicAdminUp(exec, local)) === !down,
    };
  }

  const found = findVnic(inv, local);
  if (!found) return `${req.port}: no virtual NIC with that MAC on ${host.name}`;
  const { vm, nic } = found;
  const hostPgs = inv.portgroups.map((p) => p.name);
  if (host.protectedPortgroups.includes(nic.portgroup)) return `${req.port} is on protected port group ${nic.portgroup}`;

  const disconnect = (connect: boolean): Plan | string => {
    if (vm.vmid === null || nic.deviceKey === null) return `vim-cmd id or device key of ${vm.name} ${nic.mac} unknown (vim-cmd reads failed)`;
    const keys = vm.nics.map((n) => n.deviceKey).filter((k): k is number => k !== null);
    const vmid = vm.vmid;
    const key = nic.deviceKey;
    return {
      op: { op: connect ? 'vm-nic-connect' : 'vm-nic-disconnect', vmid, deviceKey: key, vmNicKeys: keys },
      record: { host: host.name, action: connect ? 'vnic-connect' : 'vnic-disconnect', target: `${vm.name} key ${key}` },
      verify: async () => (await vnicConnected(exec, vmid, key)) === connect,
    };
  };
  const quarantine = (): Plan | string => {
    if (host.quarantineVlan === null) return 'no quarantineVlan in the policy';
    const pg = inv.portgroups.find((p) => p.name === nic.portgroup);
    if (!pg) return `port group ${nic.portgroup} not listed by the host`;
    const q = host.quarantineVlan;
    // A second vNIC of a quarantined port group (an escalation): nothing left to move. The VLAN to
    // go back to is in the first trip's record; this one has none, and its restore says so.
    if (pg.vlanId === q) return { op: null, record: { host: host.name, action: 'portgroup-quarantine', target: pg.name }, verify: async () => true };
    return {
      op: { op: 'portgroup-quarantine', portgroup: pg.name, vlanId: q, hostPortgroups: hostPgs },
      record: { host: host.name, action: 'portgroup-quarantine', target: pg.name, previousVlan: pg.vlanId },
      verify: async () => (await pgVlan(exec, pg.name)) === q,
    };
  };

  if (down) {
    const why: string[] = [];
    for (const kind of host.actions) {
      const p = kind === 'vnic-disconnect' ? disconnect(false) : kind === 'portgroup-quarantine' ? quarantine() : null;
      if (p === null) continue;
      if (typeof p !== 'string') return p;
      why.push(`${kind}: ${p}`);
    }
    return why.length ? `no allowed action works for ${req.port}: ${why.join('; ')}` : `policy allows no action on virtual NICs (actions: ${host.actions.join(', ')})`;
  }
  // link-up: undo what the trip did; without a record, reconnecting is the only undo that fits.
  const prev = ctx.previous;
  if (prev?.action === 'portgroup-quarantine') {
    if (prev.previousVlan === undefined) return `port group ${prev.target} was already quarantined when this port tripped: restore the port tripped first (its record holds the VLAN to go back to), or set the VLAN by hand`;
    const vlan = prev.previousVlan;
    return {
      op: { op: 'portgroup-restore-vlan', portgroup: prev.target, vlanId: vlan, hostPortgroups: hostPgs },
      record: { host: host.name, action: 'portgroup-restore', target: prev.target, previousVlan: vlan },
      verify: async () => (await pgVlan(exec, prev.target)) === vlan,
    };
  }
  return disconnect(true);
}

/**
 * Reconnecting a vNIC the inventory no longer shows (its VM has no vSwitch port left, so it is not
 * in `vm list`): from the trip's record (`<vm> key <key>`), the VM's vim-cmd id and its devices
 * read now. The device must still carry the port's MAC: a key reused by another vNIC is refused.
 */
async function planReconnectFromRecord(req: ActionRequest, ctx: EsxiActionContext): Promise<Plan | string> {
  const rec = ctx.previous;
  const m = rec?.action === 'vnic-disconnect' ? /^(.*) key ([0-9]+)$/.exec(rec.target) : null;
  const mac = macOfVnicPort(req.port.slice(ctx.host.name.length + 1));
  if (!m || !mac) return 'no record of the disconnect to undo';
  const vmid = ctx.inventory?.vimVms?.find((v) => v.name === m[1])?.vmid;
  if (vmid === undefined) return `VM ${m[1]} not found by vim-cmd vmsvc/getallvms (or its name is not unique)`;
  const r = await ctx.exec(['vim-cmd', 'vmsvc/device.getdevices', vmid]);
  const d = r.error === undefined && r.code === 0 ? parseVmDevices(r.stdout) : null;
  if (!d?.ok) return `cannot read the devices of ${m[1]}: ${r.error ?? (d && !d.ok ? d.error : `exit ${r.code}`)}`;
  const key = Number(m[2]);
  const dev = d.value.find((x) => x.key === key);
  if (!dev || dev.mac !== mac) return `device ${key} of ${m[1]} no longer carries ${mac}: refusing to connect another vNIC`;
  return {
    op: { op: 'vm-nic-connect', vmid, deviceKey: key, vmNicKeys: d.value.map((x) => x.key) },
    record: { host: ctx.host.name, action: 'vnic-connect', target: `${m[1]} key ${key}` },
    verify: async () => (await vnicConnected(ctx.exec, vmid, key)) === true,
  };
}

export async function executeEsxiAction(req: ActionRequest, ctx: EsxiActionContext): Promise<ActionResult> {
  const t0 = performance.now();
  const base = { kind: req.kind, port: req.port, via: 'ssh' } as const;
  let plan = planEsxiAction(req, ctx);
  if (typeof plan === 'string' && req.kind === 'link-up' && /no virtual NIC with that MAC/.test(plan)) {
    const again = await planReconnectFromRecord(req, ctx);
    plan = typeof again === 'string' ? `${plan}; ${again}` : again;
  }
  if (typeof plan === 'string') return { ...base, ok: false, durationMs: performance.now() - t0, attempts: 0, error: plan, verified: false };
  if (plan.op === null) return { ...base, ok: true, durationMs: performance.now() - t0, attempts: 0, verified: await plan.verify(), esxi: plan.record };
  const argv = toArgv(plan.op);
  if (!argv.ok) return { ...base, ok: false, durationMs: performance.now() - t0, attempts: 0, error: argv.error, verified: false, esxi: plan.record };
  let attempts = 0;
  let error = '';
  while (attempts <= ctx.retries) {
    attempts++;
    const r = await ctx.exec(argv.value);
    if (r.error !== undefined || r.code !== 0) {
      error = r.error ?? `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? ''}`;
      continue;
    }
    const verified = await plan.verify();
    if (verified) return { ...base, ok: true, argv: argv.value, durationMs: performance.now() - t0, attempts, verified: true, esxi: plan.record };
    error = 'ran, but the host does not show the requested state';
  }
  return { ...base, ok: false, argv: argv.value, durationMs: performance.now() - t0, attempts, error, verified: false, esxi: plan.record };
}

/**
 * Is the effect of a trip still in place on the host? (A vNIC reconnected by hand, a vmnic brought
 * up, a port group moved back.) Pure: judged on a fresh inventory; unknown counts as in place, so
 * the agent never re-acts on a guess.
 */
export function tripUndone(inv: EsxInventory, host: EsxiHostPolicy, port: string, rec: EsxiActionRecord | undefined): boolean {
  const local = port.slice(host.name.length + 1);
  if (/^vmnic[0-9]+$/.test(local)) return inv.nics.find((n) => n.name === local)?.adminUp === true;
  if (rec?.action === 'portgroup-quarantine') {
    const pg = inv.portgroups.find((p) => p.name === rec.target);
    return pg !== undefined && host.quarantineVlan !== null && pg.vlanId !== host.quarantineVlan;
  }
  const found = findVnic(inv, local);
  return found !== null && found.nic.connected === true && found.nic.portId !== null;
}
