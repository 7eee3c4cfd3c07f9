// The stand-in ESXi lab as pure data: namespaces, bridges, veth pairs, the commands that build
// them, and the nft table that counts broadcast/multicast per port. buildEsxiLab (lab.ts) only
// runs what this file returns.
//
//   ${p}prod eth0 ── swprod ┐
//                           sw0 (${p}sw, the physical switch)
//            swe0 ── vmnic0 ┤ (isolated)                      vSwitch0 (${p}esx)
//            swe1 ── vmnic1 ┘ (isolated)                      ├── vnA0 ── eth0 ┐ vbr (${p}vmA: a VM
//                                                             ├── vnA1 ── eth1 ┘  bridging 2 vNICs)
//                                                             └── vn10 ── eth0 (${p}vm1)
//   vmk0 192.168.254.1/30 (${p}esx, NOT on vSwitch0) ── eth0 192.168.254.2/30 (${p}agent)
//
// Variant mgmt 'inband' (issue 12; as on most real hosts): vmk0's other end, vmk0sw, is a port of
// vSwitch0, and the agent hangs off the physical switch (swagent on sw0), so the agent's SSH
// crosses sw0, an uplink and vSwitch0, the very network a loop storms:
//
//   ${p}agent eth0 192.168.254.2/30 ── swagent (sw0) ... vmnic0/1 ── vSwitch0 ── vmk0sw ── vmk0 192.168.254.1/30
//
// Variant uplinkRate (e.g. '4mbit'): a tbf qdisc on both directions of each uplink (vmnic0/1 in
// ${p}esx, swe0/1 in ${p}sw), so a loop fills the uplinks as a real loop fills a 1/10 GbE link
// (netem is not built on this kernel; tbf is, LAB-FACTS.md). The queue is short (tbfLimit) so
// the backlog drains within a few ms after the loop is cut.
//
// Uplinks are isolated bridge ports: an ESXi vSwitch never forwards uplink to uplink, and a Linux
// bridge does exactly that for isolated ports (they only talk to non-isolated ones). Management
// is out of band: the agent's SSH never crosses vSwitch0, so a storm there cannot cut the agent
// off (a real host's vmk0 usually sits on vSwitch0; see README).
//
// VLANs: this kernel has no CONFIG_VLAN_8021Q, so bridges cannot do vlan_filtering (the kernel
// refuses the attribute, even `vlan_filtering 0`). Port group VLANs are played by membership
// rules in an nft bridge table the stand-in rewrites (standin/esxi_standin/vlan.py); it starts
// empty: every port on VLAN 0.
//
// Variant split (session 20): vmA's second vNIC (vnA1) sits on a second vSwitch, vSwitch1, and
// vmnic1 is that vSwitch's uplink, still into the same physical switch, as a guest with a vNIC on
// each of two port groups/vSwitches has on a real host (the captured fnOS_2: "VM Network" on
// vSwitch0 by vmnic0, "VM Network1" on vSwitch1 by vmnic1). Each vSwitch then has ONE VM port of
// vmA and one uplink, and the loop vmA closes crosses both vSwitches and the switch:
//
//            swe0 ── vmnic0 ─ vSwitch0 ── vnA0 ── eth0 ┐ vbr (${p}vmA)
//                                     └── vn10 ── eth0 (${p}vm1)
//            swe1 ── vmnic1 ─ vSwitch1 ── vnA1 ── eth1 ┘
//
// One uplink per vSwitch also keeps out what a Linux bridge does and ESXi does not: with two
// uplinks, vSwitch0 sends a VM's broadcast out of both, and the switch returns each copy by the
// other (ESXi teaming sends by one uplink and drops its own frames coming back); in a first
// try with vmnic0/vmnic1 on vSwitch0 and a third uplink on vSwitch1, that doubling left vnA1
// sending 125k frames/s against 17k received, judged a flood, not the loop it is.
//
// Quiet-lab rules (LAB-FACTS.md, as in ../topology.ts): IPv6 off before any link
// exists, bridges with stp_state 0 and mcast_snooping 0, no addresses on loop members. The loop
// (vmA's eth0/eth1) stays down until closeLoop().
import { assertIfName, assertNetns, assertPrefix } from '../names.js';

export interface EsxiNamespaces {
  esx: string;
  vmA: string;
  vm1: string;
  sw: string;
  prod: string;
  agent: string;
}

export interface BridgeSpec {
  ns: string;
  name: string;
}

export interface VethSpec {
  ns: string;
  name: string;
  master?: string;
  /** Bridge port isolated (uplinks of vSwitch0). */
  isolated?: boolean;
  /** Address with prefix length, e.g. 192.168.254.1/30. */
  addr?: string;
  peerNs: string;
  peer: string;
  peerMaster?: string;
  peerMac?: string;
  peerAddr?: string;
  /** Peer stays down at build (loop members: closeLoop brings them up). */
  peerDown?: boolean;
}

export interface VmNicPlan {
  vm: 'vmA' | 'vm1';
  /** The vSwitch (Linux bridge in ${p}esx) its host-side veth is a port of. */
  vswitch: 'vSwitch0' | 'vSwitch1';
  /** Host-side veth on vSwitch0 (what esxcli/vim-cmd act on). */
  dev: string;
  /** Guest-side interface in the VM namespace. */
  guestIf: string;
  mac: string;
  /** vim-cmd device key. */
  key: number;
  portId: number;
  type: 'VirtualVmxnet3' | 'VirtualE1000';
}

export interface EsxiLabPlan {
  prefix: string;
  ns: EsxiNamespaces;
  namespaces: string[];
  bridges: BridgeSpec[];
  veths: VethSpec[];
  /** The Linux bridge that plays vSwitch0. */
  bridge: 'vSwitch0';
  uplinks: ['vmnic0', 'vmnic1'];
  /** Variant split: vnA1 and vmnic1 on vSwitch1 (null: one vSwitch, both uplinks on vSwitch0). */
  split: { bridge: 'vSwitch1'; uplink: 'vmnic1' } | null;
  vmNics: VmNicPlan[];
  loop: { ns: string; bridge: 'vbr'; ports: ['eth0', 'eth1'] };
  mgmt: { dev: 'vmk0'; esxIp: string; agentIp: string; prefixLen: 30; agentIf: 'eth0' };
  /** Ports whose broadcast/multicast nft counts, per direction. */
  countedPorts: string[];
  /** 'oob': vmk0 on its own pair (default); 'inband': vmk0 a port of vSwitch0, agent on sw0. */
  mgmtMode: MgmtMode;
  /** tbf rate on every uplink direction (tc syntax, e.g. '4mbit'); null = not shaped. */
  uplinkRate: string | null;
}

export type MgmtMode = 'oob' | 'inband';

export interface PlanOptions {
  mgmt?: MgmtMode;
  /** tc rate, e.g. '4mbit' (digits and a tc unit). */
  uplinkRate?: string;
  /** vmA's second vNIC on a second vSwitch with its own uplink (see the file comment). */
  split?: boolean;
}

/** tbf queue per shaped uplink direction: 6 kB drains in ~12 ms at 4 Mbit/s. */
export const TBF_LIMIT = '6kb';
export const TBF_BURST = '6kb';
const RATE_RE = /^[1-9][0-9]{0,5}(kbit|mbit|gbit)$/;

export const NFT_TABLE = 'stormbreaker_standin';
export const NFT_VLAN_TABLE = 'stormbreaker_vlan';
export const MGMT_ESX_IP = '192.168.254.1';
export const MGMT_AGENT_IP = '192.168.254.2';
/** First VM port ID: 0x2000008, the range ESXi gives VM ports on vSwitch0. */
export const FIRST_VM_PORT_ID = 33554440;
/** vnA1's port ID on vSwitch1 (split): 0x4000008, the next portset's range. */
export const SPLIT_VM_PORT_ID = 67108872;

/** Pure: the lab's layout for a prefix. */
export function esxiLabPlan(prefix: string, opts: PlanOptions = {}): EsxiLabPlan {
  assertPrefix(prefix);
  const mgmtMode = opts.mgmt ?? 'oob';
  if (mgmtMode !== 'oob' && mgmtMode !== 'inband') throw new Error(`bad mgmt mode ${JSON.stringify(mgmtMode)}`);
  if (opts.uplinkRate !== undefined && !RATE_RE.test(opts.uplinkRate)) throw new Error(`bad uplink rate ${JSON.stringify(opts.uplinkRate)}`);
  const ns: EsxiNamespaces = {
    esx: `${prefix}esx`,
    vmA: `${prefix}vmA`,
    vm1: `${prefix}vm1`,
    sw: `${prefix}sw`,
    prod: `${prefix}prod`,
    agent: `${prefix}agent`,
  };
  const namespaces = Object.values(ns);
  for (const n of namespaces) assertNetns(n);
  // VMware's OUI for generated vNIC MACs (00:0c:29), as in the captures.
  const split = opts.split === true ? ({ bridge: 'vSwitch1', uplink: 'vmnic1' } as const) : null;
  const vmNics: VmNicPlan[] = [
    { vm: 'vmA', vswitch: 'vSwitch0', dev: 'vnA0', guestIf: 'eth0', mac: '00:0c:29:5b:a0:00', key: 4000, portId: FIRST_VM_PORT_ID, type: 'VirtualVmxnet3' },
    // On vSwitch1 (split) a port of that vSwitch's range, as ESXi numbers ports per portset.
    { vm: 'vmA', vswitch: split ? 'vSwitch1' : 'vSwitch0', dev: 'vnA1', guestIf: 'eth1', mac: '00:0c:29:5b:a0:01', key: 4001, portId: split ? SPLIT_VM_PORT_ID : FIRST_VM_PORT_ID + 1, type: 'VirtualVmxnet3' },
    { vm: 'vm1', vswitch: 'vSwitch0', dev: 'vn10', guestIf: 'eth0', mac: '00:0c:29:5b:10:00', key: 4000, portId: FIRST_VM_PORT_ID + 2, type: 'VirtualE1000' },
  ];
  const bridges: BridgeSpec[] = [
    { ns: ns.sw, name: 'sw0' },
    { ns: ns.esx, name: 'vSwitch0' },
    ...(split ? [{ ns: ns.esx, name: split.bridge }] : []),
    { ns: ns.vmA, name: 'vbr' },
  ];
  const veths: VethSpec[] = [
    { ns: ns.prod, name: 'eth0', peerNs: ns.sw, peer: 'swprod', peerMaster: 'sw0' },
    { ns: ns.esx, name: 'vmnic0', master: 'vSwitch0', isolated: true, peerNs: ns.sw, peer: 'swe0', peerMaster: 'sw0' },
    { ns: ns.esx, name: 'vmnic1', master: split ? split.bridge : 'vSwitch0', isolated: true, peerNs: ns.sw, peer: 'swe1', peerMaster: 'sw0' },
    ...vmNics.map(
      (n): VethSpec => ({
        ns: ns.esx,
        name: n.dev,
        master: n.vswitch,
        peerNs: n.vm === 'vmA' ? ns.vmA : ns.vm1,
        peer: n.guestIf,
        peerMac: n.mac,
        ...(n.vm === 'vmA' ? { peerMaster: 'vbr', peerDown: true } : {}),
      }),
    ),
    ...(mgmtMode === 'oob'
      ? [{ ns: ns.esx, name: 'vmk0', addr: `${MGMT_ESX_IP}/30`, peerNs: ns.agent, peer: 'eth0', peerAddr: `${MGMT_AGENT_IP}/30` }]
      : [
          { ns: ns.esx, name: 'vmk0', addr: `${MGMT_ESX_IP}/30`, peerNs: ns.esx, peer: 'vmk0sw', peerMaster: 'vSwitch0' },
          { ns: ns.agent, name: 'eth0', addr: `${MGMT_AGENT_IP}/30`, peerNs: ns.sw, peer: 'swagent', peerMaster: 'sw0' },
        ]),
  ];
  for (const v of veths) (assertIfName(v.name), assertIfName(v.peer));
  return {
    prefix,
    ns,
    namespaces,
    bridges,
    veths,
    bridge: 'vSwitch0',
    uplinks: ['vmnic0', 'vmnic1'],
    split,
    vmNics,
    loop: { ns: ns.vmA, bridge: 'vbr', ports: ['eth0', 'eth1'] },
    mgmt: { dev: 'vmk0', esxIp: MGMT_ESX_IP, agentIp: MGMT_AGENT_IP, prefixLen: 30, agentIf: 'eth0' },
    countedPorts: ['vmnic0', 'vmnic1', ...vmNics.map((n) => n.dev), 'vmk0'],
    mgmtMode,
    uplinkRate: opts.uplinkRate ?? null,
  };
}

const link = (netns: string, dev: string, ...what: string[]): string[] => ['ip', '-n', netns, 'link', 'set', 'dev', dev, ...what];
const sysctl = (netns: string, key: string): string[] => ['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=1`];

/** Pure: the commands that build the plan, in order. */
export function esxiPlanCommands(plan: EsxiLabPlan): string[][] {
  const cmds: string[][] = [];
  for (const n of plan.namespaces) cmds.push(['ip', 'netns', 'add', n]);
  for (const n of plan.namespaces) {
    cmds.push(sysctl(n, 'net.ipv6.conf.all.disable_ipv6'), sysctl(n, 'net.ipv6.conf.default.disable_ipv6'));
  }
  for (const b of plan.bridges) {
    cmds.push(['ip', '-n', b.ns, 'link', 'add', 'name', b.name, 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0']);
  }
  for (const v of plan.veths) {
    cmds.push(['ip', '-n', v.ns, 'link', 'add', 'name', v.name, 'type', 'veth', 'peer', 'name', v.peer, 'netns', v.peerNs]);
    if (v.peerMac) cmds.push(link(v.peerNs, v.peer, 'address', v.peerMac));
    if (v.master) cmds.push(link(v.ns, v.name, 'master', v.master));
    if (v.isolated) cmds.push(['bridge', '-n', v.ns, 'link', 'set', 'dev', v.name, 'isolated', 'on']);
    if (v.peerMaster) cmds.push(link(v.peerNs, v.peer, 'master', v.peerMaster));
    // Management addresses sit on a point-to-point pair off every bridge; without IFF_MULTICAST
    // they send no IGMP reports either.
    if (v.addr) cmds.push(link(v.ns, v.name, 'multicast', 'off'), ['ip', '-n', v.ns, 'addr', 'add', v.addr, 'dev', v.name]);
    if (v.peerAddr) cmds.push(link(v.peerNs, v.peer, 'multicast', 'off'), ['ip', '-n', v.peerNs, 'addr', 'add', v.peerAddr, 'dev', v.peer]);
  }
  for (const n of plan.namespaces) cmds.push(link(n, 'lo', 'up'));
  for (const b of plan.bridges) cmds.push(link(b.ns, b.name, 'up'));
  for (const v of plan.veths) {
    if (!v.peerDown) cmds.push(link(v.peerNs, v.peer, 'up'));
    cmds.push(link(v.ns, v.name, 'up'));
  }
  if (plan.uplinkRate) {
    const shaped: Array<[string, string]> = [[plan.ns.esx, 'vmnic0'], [plan.ns.esx, 'vmnic1'], [plan.ns.sw, 'swe0'], [plan.ns.sw, 'swe1']];
    for (const [n, dev] of shaped) {
      cmds.push(['tc', '-n', n, 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', plan.uplinkRate, 'burst', TBF_BURST, 'limit', TBF_LIMIT]);
    }
  }
  return cmds;
}

/** Names of the four nft counters of one port (the stand-ins read these; see host.py). */
export function counterNames(dev: string): { rxBc: string; rxMc: string; txBc: string; txMc: string } {
  assertIfName(dev);
  return { rxBc: `${dev}_rx_bc`, rxMc: `${dev}_rx_mc`, txBc: `${dev}_tx_bc`, txMc: `${dev}_tx_mc` };
}

/**
 * Pure: an `nft -f` script for the esx namespace. Per port, an ingress chain counts frames the
 * port receives and an egress chain frames it sends (netdev egress hooks, kernel >= 5.16, sees
 * bridge-forwarded frames because the bridge transmits through dev_queue_xmit). Broadcast is
 * counted and accepted first, so the multicast counter (group bit set) excludes broadcast.
 * Policy accept everywhere: the table counts, it never filters.
 *
 * Plus the (empty) bridge table whose forward chain the stand-in fills with VLAN membership
 * rules (vlan.py).
 */
export function nftScript(ports: readonly string[]): string {
  const lines = [`table netdev ${NFT_TABLE} {`];
  for (const p of ports) {
    const c = counterNames(p);
    for (const name of [c.rxBc, c.rxMc, c.txBc, c.txMc]) lines.push(`  counter ${name} { }`);
  }
  for (const p of ports) {
    const c = counterNames(p);
    for (const [dir, hook, bc, mc] of [['in', 'ingress', c.rxBc, c.rxMc], ['out', 'egress', c.txBc, c.txMc]] as const) {
      lines.push(
        `  chain ${p}_${dir} {`,
        `    type filter hook ${hook} device "${p}" priority 0; policy accept;`,
        `    ether daddr ff:ff:ff:ff:ff:ff counter name ${bc} accept`,
        `    ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 counter name ${mc}`,
        '  }',
      );
    }
  }
  lines.push('}', `table bridge ${NFT_VLAN_TABLE} {`, '  chain forward {', '    type filter hook forward priority 0; policy accept;', '  }', '}');
  return `${lines.join('\n')}\n`;
}
