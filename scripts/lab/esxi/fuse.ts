// The on-host fuse against the stand-in (issue 12): its plan from the stand-in's inventory, and
// the ssh session that runs it, exactly as the agent's session would (program and plan on stdin;
// remote command = the fixed loader). Shared by the integration test and the benchmark.
import { readInventory } from './inventory.js';
import type { EsxiLab } from './lab.js';
import { sshArgv } from './sshd.js';
import { fuseRemoteLine, type FuseProgram } from '../../../agent/esxi/fuse/program.js';
import { buildFusePlan, type FusePlan, type FusePlanInput, type FuseVnic } from '../../../agent/esxi/fuse/plan.js';

/** vmk0's vSwitch port ID in the stand-in inventory. */
export const LAB_VMK_PORT_ID = '33554436';

/** The stand-in's vNICs as the agent would list them (port IDs change on every reconnect). */
export async function labVnics(lab: EsxiLab): Promise<FuseVnic[]> {
  const inv = await readInventory(lab);
  return inv.vms.flatMap((vm) =>
    vm.nics
      .filter((n) => n.connected)
      .map((n) => ({
        port: `esx1/vnic-${n.mac.replace(/:/g, '')}`,
        portId: String(n.portId),
        portset: 'vSwitch0',
        portgroup: n.portgroup,
        vmid: vm.vmid,
        key: n.key,
        bridgingVm: vm.nics.length > 1,
      })),
  );
}

export async function labFusePlan(lab: EsxiLab, o: Partial<FusePlanInput> = {}): Promise<FusePlan> {
  const r = buildFusePlan({
    sampleMs: 10,
    leaseMs: 5000,
    pps: 2000,
    hold: 2,
    minHotPorts: 2,
    settleMs: 300,
    budget: 2,
    dryRun: false,
    // Each sample at once: these labs time the fuse itself (the agent batches at rest, host-fuse.ts).
    batchMs: 0,
    // Every sample at sampleMs: these labs time the fuse's rest period (host-fuse.ts bursts).
    burstMs: 0,
    warmPps: 500,
    warmRxPps: 1500,
    vmnics: ['vmnic0', 'vmnic1'],
    vnics: await labVnics(lab),
    vmkPortIds: [LAB_VMK_PORT_ID],
    protectedPortgroups: ['Management Network'],
    ...o,
  });
  if (!r.ok) throw new Error(r.error);
  return r.plan;
}

/** argv (run from the host) of the ssh session from ${p}agent that runs the fuse on the stand-in. */
export function labFuseArgv(lab: EsxiLab, program: FuseProgram): string[] {
  // sshArgv quotes each remote word; the fuse's remote line is already one quoted shell line.
  const argv = sshArgv(lab, ['true']);
  return [...argv.slice(0, -1), fuseRemoteLine(program, lab.dir)];
}
