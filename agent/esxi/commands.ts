// Every command this agent will ever run on an ESXi host, as exact argv, built by one pure
// function from a closed set of operations. Each identifier is validated before it enters argv;
// names that select a target (NIC, port group, VM NIC) must also be in what the host itself lists,
// so a typo or a stale config can only make the agent refuse, never hit something else.
//
// The agent reaches ESXi over SSH (a later part), where the remote side receives ONE command line
// for its shell: the SSH layer must quote every element (POSIX single quotes). names.ts already
// refuses quotes, backslash and '$' in names, so a quoting bug there cannot become injection.
import { BLOCK_GUEST_BPDU_PATH } from './advanced.js';
import {
  checkPortgroupName,
  isDeviceKey,
  isQuarantineVlan,
  isVlanId,
  isVmid,
  isVmnic,
  isWorldId,
  validatePortgroup,
  validateVmnic,
} from './names.js';
import { fail, ok, show, type Result } from './result.js';

export type EsxOp =
  // --- reads ------------------------------------------------------------------------------------
  | { op: 'nic-stats'; nic: string }
  | { op: 'vsish-pnic-stats'; nic: string }
  | { op: 'ens-uplink-stats'; nic: string }
  | { op: 'nic-list' }
  | { op: 'esxcfg-nics' }
  | { op: 'vswitch-list' }
  | { op: 'portgroup-list' }
  | { op: 'vm-list' }
  | { op: 'vm-port-list'; worldId: string }
  | { op: 'vim-vm-list' }
  | { op: 'vim-vm-devices'; vmid: string }
  | { op: 'port-stats'; portId: string }
  | { op: 'pg-security'; portgroup: string }
  | { op: 'pg-failover'; portgroup: string }
  | { op: 'advanced-get'; path: AdvancedPath }
  // --- actions ----------------------------------------------------------------------------------
  | { op: 'nic-down'; nic: string; hostNics: readonly string[] }
  | { op: 'nic-up'; nic: string; hostNics: readonly string[] }
  | { op: 'portgroup-quarantine'; portgroup: string; vlanId: number; hostPortgroups: readonly string[] }
  | { op: 'portgroup-restore-vlan'; portgroup: string; vlanId: number; hostPortgroups: readonly string[] }
  | { op: 'vm-nic-disconnect'; vmid: string; deviceKey: number; vmNicKeys: readonly number[] }
  | { op: 'vm-nic-connect'; vmid: string; deviceKey: number; vmNicKeys: readonly number[] };

export type EsxOpName = EsxOp['op'];

/**
 * Advanced options the agent may read: a closed set, so no caller can turn `advanced-get` into a
 * general "read any option" verb. /Net/BlockGuestBPDU feeds the ESXi preflight lint.
 */
export const ADVANCED_PATHS = [BLOCK_GUEST_BPDU_PATH] as const;
export type AdvancedPath = (typeof ADVANCED_PATHS)[number];

/** vSwitch port IDs are unsigned 32-bit ("Uplink Port ID: 2214592517" in the vm port list capture). */
function portId(id: string): Result<string> {
  return typeof id === 'string' && /^[0-9]{1,10}$/.test(id) && Number(id) <= 0xffffffff
    ? ok(id)
    : fail(`invalid vSwitch port ID ${show(String(id))}: expected decimal digits (0-4294967295)`);
}

/** A port group name for a read: checked like any name (names.ts), but need not be in a host list. */
function pgName(name: string): Result<string> {
  const why = checkPortgroupName(name);
  return why ? fail(`invalid port group name ${show(String(name))}: ${why}`) : ok(name);
}

function nic(n: string): Result<string> {
  return isVmnic(n) ? ok(n) : fail(`invalid NIC name ${show(String(n))}: expected vmnic<N>`);
}

function vmNic(vmid: string, key: number, keys: readonly number[]): Result<[string, string]> {
  if (!isVmid(vmid)) return fail(`invalid vim-cmd VM id ${show(String(vmid))}`);
  if (!isDeviceKey(key)) return fail(`invalid device key ${show(String(key))}`);
  if (!keys.includes(key)) return fail(`device ${key} is not a virtual NIC of VM ${vmid} (${keys.length} listed)`);
  return ok([vmid, String(key)]);
}

const map = <T>(r: Result<T>, f: (v: T) => string[]): Result<string[]> => (r.ok ? ok(f(r.value)) : r);

/** The operations that change the host (the rest only read it). */
type ChangeOpName = 'nic-down' | 'nic-up' | 'portgroup-quarantine' | 'portgroup-restore-vlan' | 'vm-nic-disconnect' | 'vm-nic-connect';
type ChangeOp = Extract<EsxOp, { op: ChangeOpName }>;
type ReadOp = Exclude<EsxOp, ChangeOp>;
const CHANGE_OPS: ReadonlySet<string> = new Set<ChangeOpName>(['nic-down', 'nic-up', 'portgroup-quarantine', 'portgroup-restore-vlan', 'vm-nic-disconnect', 'vm-nic-connect']);

/** The argv for one operation, or why not. Pure: no I/O, never throws. */
export function toArgv(op: EsxOp): Result<string[]> {
  return CHANGE_OPS.has(op.op) ? changeArgv(op as ChangeOp) : readArgv(op as ReadOp);
}

/** Reads: counters, inventory, policies. */
function readArgv(op: ReadOp): Result<string[]> {
  switch (op.op) {
    /**
     * Counters of one physical NIC (23 lines, nic-stats.ts).
     * Source: Broadcom KB 341594 `esxcli network nic stats get -n vmnic2`.
     */
    case 'nic-stats':
      return map(nic(op.nic), (n) => ['esxcli', 'network', 'nic', 'stats', 'get', '-n', n]);

    /**
     * Same counters from the VSI node, without esxcli's start-up cost (vsish.ts). -p selects the
     * "Python mode" JSON-like output the parser expects (it prints a deprecation banner).
     * Source: Intel mfd-network-adapter (MIT), ESXiStats.get_pf_stats: `vsish -pe get /net/pNics/<nic>/stats`.
     */
    case 'vsish-pnic-stats':
      return map(nic(op.nic), (n) => ['vsish', '-pe', 'get', `/net/pNics/${n}/stats`]);

    /**
     * Counters of an uplink in ENS (Enhanced Data Path) mode (vsish.ts parseEnsUplinkStats).
     * Source: Intel mfd-network-adapter (MIT), ESXiRss.get_rx_pkts_stats `nsxdp-cli ens uplink stats get -n <nic>`
     * (get_ens_stats uses `--uplink <nic>` with LC_ALL=en_US.UTF-8 in the environment).
     */
    case 'ens-uplink-stats':
      return map(nic(op.nic), (n) => ['nsxdp-cli', 'ens', 'uplink', 'stats', 'get', '-n', n]);

    /** Physical NICs (nic-list.ts). Source: vSphere CLI Concepts and Examples (ESXi 5.0), "List all uplinks". */
    case 'nic-list':
      return ok(['esxcli', 'network', 'nic', 'list']);

    /** Physical NICs, older tool (nic-list.ts parseEsxcfgNics). Source: Intel mfd-network-adapter ESXi owner tests. */
    case 'esxcfg-nics':
      return ok(['esxcfg-nics', '-l']);

    /** Standard vSwitches with uplinks and port groups (vswitch.ts). Source: vSphere CLI Concepts and Examples. */
    case 'vswitch-list':
      return ok(['esxcli', 'network', 'vswitch', 'standard', 'list']);

    /** Standard port groups with VLAN IDs (portgroup.ts). Source: vSphere CLI Concepts and Examples. */
    case 'portgroup-list':
      return ok(['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'list']);

    /**
     * Running VMs with their World IDs and port groups (vm-list.ts). Source: vSphere CLI Concepts and
     * Examples (`esxcli network vm list`); table shape from three public captures (SOURCES.txt).
     */
    case 'vm-list':
      return ok(['esxcli', 'network', 'vm', 'list']);

    /** vSwitch ports of one running VM (vm-port.ts). `-w` takes the World ID from vm-list. */
    case 'vm-port-list':
      return isWorldId(op.worldId)
        ? ok(['esxcli', 'network', 'vm', 'port', 'list', '-w', op.worldId])
        : fail(`invalid World ID ${show(String(op.worldId))}`);

    /**
     * vim-cmd VM ids ("Vmid", NOT the World ID) by name; needed for vm-nic-* (vim.ts parseGetAllVms:
     * rows anchored on "[datastore] path.vmx", since Name and File hold spaces and rows do not line
     * up with the header). Source: public captures in SOURCES.txt; vim-cmd has no VMware reference.
     */
    case 'vim-vm-list':
      return ok(['vim-cmd', 'vmsvc/getallvms']);

    /** Virtual devices of a VM; VirtualEthernetCard entries give the device keys vm-nic-* take (vim.ts parseVmDevices). */
    case 'vim-vm-devices':
      return isVmid(op.vmid) ? ok(['vim-cmd', 'vmsvc/device.getdevices', op.vmid]) : fail(`invalid vim-cmd VM id ${show(String(op.vmid))}`);

    /**
     * Counters of one vSwitch port (port-stats.ts): a vNIC's "Port ID" or an uplink's "Uplink Port
     * ID" from vm-port-list. Source: vSphere CLI reference `esxcli network port stats get
     * --portid|-p`; output shape NOT confirmed by a capture (see port-stats.ts). Digits only.
     */
    case 'port-stats':
      return map(portId(op.portId), (id) => ['esxcli', 'network', 'port', 'stats', 'get', '-p', id]);

    /**
     * Effective security policy of a standard port group (policy-get.ts parseSecurityPolicy).
     * Source: the command as VMware's VDNet test library runs it (`esxcli network vswitch standard
     * portgroup policy security get -p=<pg>`); `-p` is --portgroup-name. A read takes the name
     * without the host list (it is how the list's members are inspected) but still checks it.
     */
    case 'pg-security':
      return map(pgName(op.portgroup), (pg) => ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'security', 'get', '-p', pg]);

    /** Effective teaming of a standard port group (policy-get.ts parseFailoverPolicy). Source: VDNet, as above. */
    case 'pg-failover':
      return map(pgName(op.portgroup), (pg) => ['esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'policy', 'failover', 'get', '-p', pg]);

    /**
     * One advanced option from the closed ADVANCED_PATHS set (advanced.ts parseAdvancedInt).
     * Source: vSphere CLI `esxcli system settings advanced list --option|-o <path>` (a public ESXi
     * 5.0 capture with `--option /VMFS3/EnableBlockDelete`; STIG ESXI-70-000058 for the path).
     */
    case 'advanced-get':
      return (ADVANCED_PATHS as readonly string[]).includes(op.path)
        ? ok(['esxcli', 'system', 'settings', 'advanced', 'list', '-o', op.path])
        : fail(`advanced option ${show(String(op.path))} is not one the agent reads (${ADVANCED_PATHS.join(', ')})`);

  }
}

/** Changes: shut or bring up a NIC, quarantine or restore a port group, cut or reconnect a vNIC. */
function changeArgv(op: ChangeOp): Result<string[]> {
  switch (op.op) {
    /**
     * Administratively shut a physical NIC: every vSwitch teamed on it fails over or loses it.
     * Source: vSphere CLI Concepts and Examples (ESXi 5.0) "Bring down one of the uplink adapters":
     * `esxcli network nic down --nic-name=vmnic0` (-n is the short form, as in KB 341594's stats get).
     */
    case 'nic-down':
      return map(validateVmnic(op.nic, op.hostNics), (n) => ['esxcli', 'network', 'nic', 'down', '-n', n]);

    case 'nic-up':
      return map(validateVmnic(op.nic, op.hostNics), (n) => ['esxcli', 'network', 'nic', 'up', '-n', n]);

    /**
     * Move a whole standard port group onto an isolated VLAN (escalation when the loop is inside
     * a VM on that port group). The VLAN must be 1-4094: 0 is untagged and 4095 trunks all VLANs.
     * Source: vSphere CLI Concepts and Examples: `esxcli network vswitch standard portgroup set
     * -p <pg_name> --vlan-id 4095`; valid IDs from vSphere API HostPortGroupSpec.vlanId. The old
     * VLAN must be journaled first (portgroup list) so portgroup-restore-vlan can undo it.
     */
    case 'portgroup-quarantine':
      if (!isQuarantineVlan(op.vlanId)) return fail(`quarantine VLAN must be 1-4094, got ${show(String(op.vlanId))}`);
      return map(validatePortgroup(op.portgroup, op.hostPortgroups), (pg) => [
        'esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', pg, '--vlan-id', String(op.vlanId),
      ]);

    /** Put back the VLAN recorded before quarantine (0-4095: whatever it was). */
    case 'portgroup-restore-vlan':
      if (!isVlanId(op.vlanId)) return fail(`VLAN must be 0-4095, got ${show(String(op.vlanId))}`);
      return map(validatePortgroup(op.portgroup, op.hostPortgroups), (pg) => [
        'esxcli', 'network', 'vswitch', 'standard', 'portgroup', 'set', '-p', pg, '--vlan-id', String(op.vlanId),
      ]);

    /**
     * Disconnect one virtual NIC of a running VM, the narrowest cut when a VM bridges two vNICs.
     * esxcli has no "vm port disconnect"; the ESXi shell way is vim-cmd's device.connection with
     * the VM id, the device key and 0/1 (false/true). vim-cmd has no public reference from VMware:
     * this form is taken from public scripts (e.g. `vim-cmd vmsvc/device.connection <vmid> 4000 0`
     * to drop a management NIC) and mirrors the documented vSphere API field
     * VirtualDevice.ConnectInfo.connected / vcenter `ethernet disconnect` ("the virtual device is
     * still present ... but from the perspective of the guest ... not connected"). UNVERIFIED on a
     * real host by this project: check the exit status and re-read device.getdevices afterwards.
     */
    case 'vm-nic-disconnect':
      return map(vmNic(op.vmid, op.deviceKey, op.vmNicKeys), ([vmid, key]) => ['vim-cmd', 'vmsvc/device.connection', vmid, key, '0']);

    case 'vm-nic-connect':
      return map(vmNic(op.vmid, op.deviceKey, op.vmNicKeys), ([vmid, key]) => ['vim-cmd', 'vmsvc/device.connection', vmid, key, '1']);
  }
}

/** Every operation name, for tests and listings; a Record so a new op that is not listed fails to compile. */
const OPS: Record<EsxOpName, true> = {
  'nic-stats': true, 'vsish-pnic-stats': true, 'ens-uplink-stats': true, 'nic-list': true, 'esxcfg-nics': true,
  'vswitch-list': true, 'portgroup-list': true, 'vm-list': true, 'vm-port-list': true, 'vim-vm-list': true,
  'vim-vm-devices': true, 'port-stats': true, 'pg-security': true, 'pg-failover': true, 'advanced-get': true, 'nic-down': true, 'nic-up': true, 'portgroup-quarantine': true, 'portgroup-restore-vlan': true,
  'vm-nic-disconnect': true, 'vm-nic-connect': true,
};
export const ESX_OPS = Object.keys(OPS) as EsxOpName[];
