// ESXi preflight lint: one host's virtual network (an EsxInventory, read over SSH by the esxi
// layer) checked for set-ups that make or hide loops, before the breaker is switched on. Pure:
// plain data in, findings out; tested with inventories built from the captured and reconstructed
// outputs in test/fixtures/esxcli/.
//
// Rules (ids are stable; scripts match on them):
//   esxi-guest-bpdu-not-blocked       /Net/BlockGuestBPDU is 0: one guest that sends BPDUs can get
//                                     every uplink of the host err-disabled by BPDU guard upstream
//                                     (STIG ESXI-70-000058)                             warning
//   esxi-promisc-forged-multi-uplink  a port group that allows promiscuous mode AND forged transmits
//                                     with more than one active uplink: what nested ESXi labs use;
//                                     the promiscuous guest receives the frames flooded in by one
//                                     uplink and sends them back out, forged, through the others  error
//   esxi-vm-two-vnics-same-l2         a VM with two connected vNICs in one L2 domain (same port
//                                     group, or same vSwitch and VLAN, or a VLAN 4095 trunk beside
//                                     any VLAN of that vSwitch): a guest that bridges them closes
//                                     a loop through the vSwitch                          error
//
// What the inventory does not know is never read as safe: a policy or setting that was not read
// becomes a note naming what was not checked.
import type { EsxInventory, EsxPortgroup, EsxVm, EsxVmNic } from '../esxi/inventory.js';
import { l2OfNic, sharedL2Groups, TRUNK_VLAN, type L2 } from '../esxi/l2.js';
import type { CheckReport, Finding } from './findings.js';


const q = (s: string): string => `"${s}"`;

export function lintEsxi(inv: EsxInventory): CheckReport {
  const findings: Finding[] = [];
  const notes: string[] = [];
  const port = (x: string): string => `${inv.host}/${x}`;

  guestBpdu(inv, port, findings, notes);
  for (const pg of inv.portgroups) promiscForged(inv, pg, port, findings, notes);
  for (const vm of inv.vms) vnicsSameL2(inv, vm, port, findings, notes);
  return { findings, notes };
}

type PortName = (x: string) => string;

// --- esxi-guest-bpdu-not-blocked -----------------------------------------------------------------

function guestBpdu(inv: EsxInventory, port: PortName, findings: Finding[], notes: string[]): void {
  if (inv.blockGuestBpdu === null) {
    notes.push(`${inv.host}: /Net/BlockGuestBPDU was not read; the guest BPDU filter was not checked`);
    return;
  }
  if (inv.blockGuestBpdu) return;
  const uplinks = [...new Set(inv.vswitches.flatMap((v) => v.uplinks))].sort(cmpNic);
  findings.push({
    rule: 'esxi-guest-bpdu-not-blocked',
    severity: 'warning',
    ports: uplinks.length > 0 ? uplinks.map(port) : [inv.host],
    what:
      `${inv.host} passes BPDUs sent by guests (/Net/BlockGuestBPDU = 0): one VM that bridges or runs STP ` +
      `can make a physical switch with BPDU guard shut the host's uplinks${uplinks.length > 0 ? ` (${uplinks.join(', ')})` : ''}, ` +
      'cutting every VM and the management network off at once',
    fix:
      'esxcli system settings advanced set -o /Net/BlockGuestBPDU -i 1 (first make sure no VM ' +
      'legitimately needs to send BPDUs, and reject forged transmits on the port groups of any VM that bridges)',
    evidence: { host: inv.host, blockGuestBpdu: false, uplinks },
  });
}

// --- esxi-promisc-forged-multi-uplink ------------------------------------------------------------

function promiscForged(inv: EsxInventory, pg: EsxPortgroup, port: PortName, findings: Finding[], notes: string[]): void {
  const where = port(pg.name);
  if (pg.security === null) {
    notes.push(
      `${where}: security policy not read${pg.unusable ? ` (${pg.unusable})` : ''}; promiscuous + forged-transmit loop check not done`,
    );
    return;
  }
  const { allowPromiscuous, allowForgedTransmits } = pg.security;
  if (!allowPromiscuous || !allowForgedTransmits) return;
  if (pg.failover === null) {
    const sw = inv.vswitches.find((v) => v.name === pg.vswitch);
    const n = sw ? sw.uplinks.length : null;
    notes.push(
      `${where}: allows promiscuous mode and forged transmits, but its teaming was not read` +
        (n === null ? '' : ` (vSwitch ${pg.vswitch} has ${n} uplink${n === 1 ? '' : 's'})`) +
        '; the multi-uplink loop check was not done',
    );
    return;
  }
  const active = pg.failover.activeUplinks;
  if (active.length <= 1) return;
  const [keep, ...rest] = [...active];
  findings.push({
    rule: 'esxi-promisc-forged-multi-uplink',
    severity: 'error',
    ports: [where, ...[...active].sort(cmpNic).map(port)],
    what:
      `port group ${q(pg.name)} (vSwitch ${pg.vswitch}, VLAN ${pg.vlanId}) allows promiscuous mode and forged transmits ` +
      `and has ${active.length} active uplinks (${active.join(', ')}): a promiscuous guest (nested ESXi, a software bridge) ` +
      'receives what one uplink floods in and sends it back out through another, so the physical network sees its own ' +
      'frames return and MAC addresses flap; with broadcast this is a loop',
    fix:
      `keep one active uplink and make the others standby: esxcli network vswitch standard portgroup policy failover set ` +
      `-p ${q(pg.name)} --active-uplinks ${keep} --standby-uplinks ${rest.join(',')}; or, if the guests do not need it, ` +
      `esxcli network vswitch standard portgroup policy security set -p ${q(pg.name)} --allow-promiscuous false`,
    evidence: {
      host: inv.host,
      portgroup: pg.name,
      vswitch: pg.vswitch,
      vlanId: pg.vlanId,
      security: pg.security,
      activeUplinks: active,
      standbyUplinks: pg.failover.standbyUplinks,
    },
  });
}

// --- esxi-vm-two-vnics-same-l2 -------------------------------------------------------------------

function vnicsSameL2(inv: EsxInventory, vm: EsxVm, port: PortName, findings: Finding[], notes: string[]): void {
  // A vNIC known to be disconnected carries nothing; one whose state was not read might.
  const live = vm.nics.filter((n) => n.connected !== false);
  if (live.length < 2) return;
  const l2 = live.map((n) => l2OfNic(inv, n));
  const unknown = [...new Set(l2.filter((x) => x.vlanId === null).map((x) => x.portgroup))];
  if (unknown.length > 0) {
    notes.push(
      `${port(vm.name)}: port group${unknown.length === 1 ? '' : 's'} ${unknown.map(q).join(', ')} not in the host's port group list; ` +
        'its vNICs were compared by port group name only (VLAN unknown)',
    );
  }
  // Every group of two or more vNICs sharing an L2 domain is one finding.
  for (const idx of sharedL2Groups(l2)) {
    const nics = idx.map((i) => live[i]!);
    const pgs = [...new Set(idx.map((i) => l2[i]!.portgroup))].sort();
    const vlans = [...new Set(idx.map((i) => l2[i]!.vlanId))];
    const unread = nics.filter((n) => n.connected === null).length;
    const trunk = vlans.includes(TRUNK_VLAN) && vlans.length > 1;
    findings.push({
      rule: 'esxi-vm-two-vnics-same-l2',
      severity: 'error',
      ports: [port(vm.name), ...pgs.map(port)],
      what:
        `VM ${q(vm.name)} has ${nics.length} connected vNICs in one L2 domain (${describe(nics, l2, idx)})` +
        `${trunk ? '; VLAN 4095 trunks every VLAN of the vSwitch to the guest' : ''}: if the guest bridges them ` +
        '(a Linux bridge, a Windows network bridge, a virtual firewall in transparent mode, nested ESXi) the vSwitch ' +
        `and the guest form a loop and every broadcast circles at line rate` +
        (unread > 0 ? ` (connection state of ${unread} vNIC${unread === 1 ? '' : 's'} not read; counted as connected)` : ''),
      fix: vmFix(vm, nics),
      evidence: {
        host: inv.host,
        vm: vm.name,
        vmid: vm.vmid,
        worldId: vm.worldId,
        vnics: nics.map((n, k) => ({ mac: n.mac, portgroup: n.portgroup, vswitch: n.vswitch, vlanId: l2[idx[k]!]!.vlanId, deviceKey: n.deviceKey, portId: n.portId, connected: n.connected })),
      },
    });
  }
}

function describe(nics: readonly EsxVmNic[], l2: readonly L2[], idx: readonly number[]): string {
  return nics
    .map((n, k) => {
      const v = l2[idx[k]!]!.vlanId;
      return `${n.mac} on ${q(n.portgroup)} ${n.vswitch}${v === null ? '' : ` VLAN ${v}`}`;
    })
    .join(', ');
}

function vmFix(vm: EsxVm, nics: readonly EsxVmNic[]): string {
  const extra = nics.slice(1);
  const keys = extra.map((n) => n.deviceKey);
  const cmd =
    vm.vmid !== null && keys.every((k) => k !== null)
      ? keys.map((k) => `vim-cmd vmsvc/device.connection ${vm.vmid} ${k} 0`).join('; ')
      : `vim-cmd vmsvc/device.connection <vmid> <device key> 0 for ${extra.map((n) => n.mac).join(', ')} (ids from vim-cmd vmsvc/getallvms and vmsvc/device.getdevices)`;
  return (
    `keep one vNIC per L2 domain: disconnect the others (${cmd}) or move them to a port group on another VLAN; ` +
    'if the guest must bridge, run STP in the guest (with /Net/BlockGuestBPDU = 1 the physical switches never see its BPDUs, ' +
    'so the guest\'s own STP and this agent are then the only loop breakers)'
  );
}

/** vmnic2 before vmnic10. */
function cmpNic(a: string, b: string): number {
  const na = Number(/[0-9]+$/.exec(a)?.[0] ?? NaN);
  const nb = Number(/[0-9]+$/.exec(b)?.[0] ?? NaN);
  return Number.isFinite(na) && Number.isFinite(nb) && na !== nb ? na - nb : a < b ? -1 : a > b ? 1 : 0;
}
