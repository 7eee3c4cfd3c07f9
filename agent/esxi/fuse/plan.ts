// Pure: the plan the agent arms a fuse with (fuse.py's `plan` message). Built from what the agent
// already knows about the host (its inventory and policy); every name is checked here, and the
// cut list is ordered by policy: the bridging VM's vNICs first, then other VM ports. A port in a
// protected port group, a vmkernel port, or an uplink never enters the cut list (the fuse checks
// the host's own status again before each cut).
import { isVmnic } from '../names.js';

export interface FuseVnic {
  /** The agent's port name, e.g. esx1/vnic-000c295ba000. */
  port: string;
  portId: string;
  portset: string;
  portgroup: string;
  /** vim-cmd VM id and device key; null when the inventory did not say: watched, never cut. */
  vmid: number | null;
  key: number | null;
  /** The VM has two or more vNICs in one L2 (it can bridge them). */
  bridgingVm: boolean;
}

/** The fuse's tuning, as the agent sends it and the plan carries it. */
export interface FuseTuning {
  sampleMs: number;
  leaseMs: number;
  /** broadcast+multicast rx per port, frames/s. */
  pps: number;
  hold: number;
  minHotPorts: number;
  settleMs: number;
  budget: number;
  dryRun: boolean;
  /** At rest, samples leave in one write every batchMs (0: each at once); see fuse.py. */
  batchMs: number;
  /** While an item is warm or a port's hold is running, samples every burstMs (0: always sampleMs); see fuse.py v5. */
  burstMs: number;
  /** A sample with an item at or over these rates (rx broadcast+multicast, total rx) leaves at once. */
  warmPps: number;
  warmRxPps: number;
}

export interface FusePlanInput extends FuseTuning {
  vmnics: readonly string[];
  vnics: readonly FuseVnic[];
  /** vmkernel ports (never cut, never watched as loop members). */
  vmkPortIds: readonly string[];
  protectedPortgroups: readonly string[];
}

export interface FusePlan extends FuseTuning {
  op: 'plan';
  cutTimeoutMs: number;
  watch: Array<{ kind: 'pnic'; id: string } | { kind: 'port'; portset: string; id: string }>;
  cutList: Array<{ port: string; portId: string; portset: string; argv: string[] }>;
  protectedPortgroups: string[];
  protectedPorts: string[];
}

const PORT_ID_RE = /^\d{1,12}$/;
const PORTSET_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** The same call the agent's vnic-disconnect action makes (agent/esxi/commands.ts). */
export const vnicDisconnectArgv = (vmid: number, key: number): string[] => ['vim-cmd', 'vmsvc/device.connection', String(vmid), String(key), '0'];

export type PlanResult = { ok: true; plan: FusePlan } | { ok: false; error: string };

function check(i: FusePlanInput): string | null {
  if (!(i.sampleMs >= 5 && i.sampleMs <= 100)) return `sampleMs ${i.sampleMs}: 5-100`;
  if (!(i.leaseMs >= 1000 && i.leaseMs <= 600_000)) return `leaseMs ${i.leaseMs}: 1000-600000`;
  if (!(i.pps > 0)) return `pps ${i.pps}: must be > 0`;
  if (!Number.isInteger(i.hold) || i.hold < 1 || i.hold > 50) return `hold ${i.hold}: 1-50`;
  if (!Number.isInteger(i.minHotPorts) || i.minHotPorts < 1) return `minHotPorts ${i.minHotPorts}: >= 1`;
  if (!Number.isInteger(i.budget) || i.budget < 0 || i.budget > 16) return `budget ${i.budget}: 0-16`;
  if (!Number.isInteger(i.batchMs) || i.batchMs < 0 || i.batchMs > 250) return `batchMs ${i.batchMs}: 0-250`;
  if (i.burstMs !== 0 && !(Number.isInteger(i.burstMs) && i.burstMs >= 5 && i.burstMs <= i.sampleMs)) return `burstMs ${i.burstMs}: 0 or 5-sampleMs`;
  if (!(i.warmPps > 0) || !(i.warmRxPps > 0)) return `warmPps ${i.warmPps} / warmRxPps ${i.warmRxPps}: must be > 0`;
  for (const n of i.vmnics) if (!isVmnic(n)) return `not a vmnic: ${JSON.stringify(n)}`;
  for (const v of i.vnics) {
    if (!PORT_ID_RE.test(v.portId)) return `bad port id ${JSON.stringify(v.portId)}`;
    if (!PORTSET_RE.test(v.portset)) return `bad portset ${JSON.stringify(v.portset)}`;
    if (v.vmid !== null && (!Number.isInteger(v.vmid) || v.vmid < 1)) return `bad vmid for ${v.port}`;
    if (v.key !== null && (!Number.isInteger(v.key) || v.key < 0)) return `bad device key for ${v.port}`;
  }
  for (const id of i.vmkPortIds) if (!PORT_ID_RE.test(id)) return `bad vmk port id ${JSON.stringify(id)}`;
  return null;
}

export function buildFusePlan(i: FusePlanInput): PlanResult {
  const bad = check(i);
  if (bad) return { ok: false, error: `fuse plan: ${bad}` };
  const protectedPg = new Set(i.protectedPortgroups);
  const vmk = new Set(i.vmkPortIds);
  const members = i.vnics.filter((v) => !vmk.has(v.portId));
  const cuttable = members.filter((v): v is FuseVnic & { vmid: number; key: number } => !protectedPg.has(v.portgroup) && v.vmid !== null && v.key !== null);
  // Stable: bridging VMs' vNICs first, the rest in the caller's order.
  const ordered = [...cuttable.filter((v) => v.bridgingVm), ...cuttable.filter((v) => !v.bridgingVm)];
  return {
    ok: true,
    plan: {
      op: 'plan',
      sampleMs: i.sampleMs,
      leaseMs: i.leaseMs,
      pps: i.pps,
      hold: i.hold,
      minHotPorts: i.minHotPorts,
      settleMs: i.settleMs,
      budget: i.budget,
      dryRun: i.dryRun,
      batchMs: i.batchMs,
      burstMs: i.burstMs,
      warmPps: i.warmPps,
      warmRxPps: i.warmRxPps,
      cutTimeoutMs: 5000,
      watch: [...i.vmnics.map((id) => ({ kind: 'pnic' as const, id })), ...members.map((v) => ({ kind: 'port' as const, portset: v.portset, id: v.portId }))],
      cutList: ordered.map((v) => ({ port: v.port, portId: v.portId, portset: v.portset, argv: vnicDisconnectArgv(v.vmid, v.key) })),
      protectedPortgroups: [...protectedPg],
      protectedPorts: [...vmk],
    },
  };
}
