// The agent's policy for the stand-in ESXi lab: one host `esx1` reached over the lab's sshd,
// both vmnics as uplinks, the VM ports of "VM Network" watched. Pure: the YAML text. Shared by
// the integration test, the demo and the benchmark so that all three judge the same way.
import type { EsxiLab } from './lab.js';
import { sshTarget } from './sshd.js';

export interface LabPolicyOptions {
  sampleMs?: number;
  /** YAML flow list of port groups whose VM ports are watched (default ["VM Network"]). */
  portgroups?: string;
  /** YAML flow list of allowed actions, smallest scope first. */
  actions?: string;
  holdSamples?: number;
  /** The shut budget's window (a benchmark restores within seconds and shortens it). */
  windowMs?: number;
  /** Written only when given (the agent's default is true). */
  watchBridgingVms?: boolean;
  /** The on-host fuse; written only when given (the agent's default is armed). */
  fuse?: 'armed' | 'stream' | 'off';
}

export function esxiLabPolicy(lab: EsxiLab, o: LabPolicyOptions = {}): string {
  const t = sshTarget(lab);
  const sampleMs = o.sampleMs ?? 100;
  return `version: 1
breaker: { maxShuts: 2, windowMs: ${o.windowMs ?? 10000}, shutOrder: [vm, other, uplink] }
esxi:
  hosts:
    - name: esx1
      address: ${t.address}
      user: root
      identityFile: ${t.identityFile}
      knownHostsFile: ${t.knownHostsFile}
      sampleMs: ${sampleMs}
      staleMs: ${Math.max(1000, 2 * sampleMs)}
      connectTimeoutMs: 3000
      commandTimeoutMs: 5000
      vmnics:
        - { name: vmnic0, role: uplink }
        - { name: vmnic1, role: uplink }
      portgroups: ${o.portgroups ?? '["VM Network"]'}
${o.watchBridgingVms === undefined ? '' : `      watchBridgingVms: ${o.watchBridgingVms}\n`}${o.fuse === undefined ? '' : `      fuse: ${o.fuse}\n`}      quarantineVlan: 4001
      actions: ${o.actions ?? '[vnic-disconnect, portgroup-quarantine, nic-down]'}
      thresholds: { holdSamples: ${o.holdSamples ?? 2} }
ports: []
`;
}
