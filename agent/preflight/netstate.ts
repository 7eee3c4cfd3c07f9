// The host's L2 layout as plain data, parsed from iproute2's JSON. Pure: text in, data out; the
// commands are run by lint.ts. Real captured outputs live in test/fixtures/preflight/.
//
// Parse defensively: iproute2 6.1 prints `[{},{},...]` for `ip -j link show type bond` on a host
// without bonds (one empty object per filtered-out link), and `bridge -j link show` resolves a
// veth's peer ifindex in the *local* namespace, so its `link` field can name the wrong device
// (measured in the esx lab: up1's peer is sw1 in another namespace, bridge printed "vmA1").
// We therefore take peers only from `ip -d` (link_index + link_netnsid) and ignore `link`.
import { isValidIfName } from '../host/names.js';

/** Bridge port state as the kernel reports it (`bridge link`, info_slave_data.state). */
export type PortState = 'disabled' | 'listening' | 'learning' | 'forwarding' | 'blocking' | 'unknown';

export interface LinkState {
  name: string;
  ifindex: number;
  /** linkinfo.info_kind: 'bridge', 'veth', 'bond', 'openvswitch', 'vlan', ... ; null for a plain NIC. */
  kind: string | null;
  /** The device this one is enslaved to (bridge or bond), or null. */
  master: string | null;
  /** info_slave_kind: 'bridge', 'bond', 'openvswitch' ... when enslaved. */
  slaveKind: string | null;
  adminUp: boolean;
  /** Carrier and operstate up (a veth whose peer is down is admin-up but not oper-up). */
  operUp: boolean;
  /** veth (or similar) peer living in another namespace: its ifindex there and the netnsid. */
  peer: { ifindex: number; netnsid: number } | null;
  /** For kind bridge: 0 off, 1 kernel STP, 2 user-space STP. */
  stpState: number | null;
  /** For bridge ports: STP state and BPDU guard (from `bridge -d link`, else from ip -d). */
  portState: PortState | null;
  bpduGuard: boolean | null;
}

export interface NetnsId {
  nsid: number;
  /** Named (`ip netns add`) namespaces only; others are null and cannot be inspected. */
  name: string | null;
}

type Row = Record<string, unknown>;

function rows(json: string, what: string): Row[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    throw new Error(`${what}: output is not JSON`, { cause: err });
  }
  if (!Array.isArray(v)) throw new Error(`${what}: expected a JSON array`);
  return v.filter((r): r is Row => r !== null && typeof r === 'object' && !Array.isArray(r));
}

const obj = (v: unknown): Row => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Row) : {});
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

const PORT_STATES: readonly PortState[] = ['disabled', 'listening', 'learning', 'forwarding', 'blocking'];

export function toPortState(v: unknown): PortState | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return (PORT_STATES as readonly string[]).includes(v) ? (v as PortState) : 'unknown';
  // sysfs brport/state and older iproute2 print the number (br_private.h BR_STATE_*).
  if (typeof v === 'number') return PORT_STATES[v] ?? 'unknown';
  return 'unknown';
}

/** Parse `ip -j -d link show`. Links with names that cannot be interface names are skipped. */
export function parseIpLinks(json: string): LinkState[] {
  const out: LinkState[] = [];
  for (const r of rows(json, 'ip -j -d link show')) {
    const name = str(r['ifname']);
    const ifindex = num(r['ifindex']);
    if (name === null || ifindex === null || !isValidIfName(name)) continue;
    const flags = Array.isArray(r['flags']) ? (r['flags'] as unknown[]) : [];
    const li = obj(r['linkinfo']);
    const kind = str(li['info_kind']);
    const slave = obj(li['info_slave_data']);
    const data = obj(li['info_data']);
    const linkIndex = num(r['link_index']);
    const netnsid = num(r['link_netnsid']);
    const operstate = str(r['operstate']);
    out.push({
      name,
      ifindex,
      kind,
      master: str(r['master']),
      slaveKind: str(li['info_slave_kind']),
      adminUp: flags.includes('UP'),
      // UNKNOWN is what drivers without carrier reporting say (tun, dummy): treat LOWER_UP as truth.
      operUp: flags.includes('LOWER_UP') && operstate !== 'DOWN' && operstate !== 'LOWERLAYERDOWN',
      peer: linkIndex !== null && netnsid !== null && netnsid >= 0 ? { ifindex: linkIndex, netnsid } : null,
      stpState: kind === 'bridge' ? (num(data['stp_state']) ?? 0) : null,
      portState: str(li['info_slave_kind']) === 'bridge' ? toPortState(slave['state']) : null,
      bpduGuard: str(li['info_slave_kind']) === 'bridge' && typeof slave['guard'] === 'boolean' ? (slave['guard'] as boolean) : null,
    });
  }
  return out;
}

export interface BridgePortInfo {
  name: string;
  master: string | null;
  state: PortState | null;
  bpduGuard: boolean | null;
}

/** Parse `bridge -j -d link show` (one row per bridge port). */
export function parseBridgeLinks(json: string): BridgePortInfo[] {
  const out: BridgePortInfo[] = [];
  for (const r of rows(json, 'bridge -j -d link show')) {
    const name = str(r['ifname']);
    if (name === null || !isValidIfName(name)) continue;
    out.push({
      name,
      master: str(r['master']),
      state: toPortState(r['state']),
      bpduGuard: typeof r['guard'] === 'boolean' ? (r['guard'] as boolean) : null,
    });
  }
  return out;
}

/** Names of bond devices from `ip -j -d link show type bond` (empty objects skipped). */
export function parseBonds(json: string): string[] {
  return rows(json, 'ip -j -d link show type bond')
    .map((r) => str(r['ifname']))
    .filter((n): n is string => n !== null && isValidIfName(n));
}

/** `ip -j netns list-id`: netnsids seen from this namespace and their names when named. */
export function parseNetnsIds(json: string): NetnsId[] {
  // An empty namespace list prints nothing at all, not `[]`.
  if (json.trim() === '') return [];
  return rows(json, 'ip -j netns list-id')
    .map((r) => ({ nsid: num(r['nsid']), name: str(r['name']) }))
    .filter((x): x is { nsid: number; name: string | null } => x.nsid !== null)
    .map((x) => ({ nsid: x.nsid, name: x.name !== null && /^[A-Za-z0-9_.-]{1,64}$/.test(x.name) ? x.name : null }));
}

/**
 * `bridge -d link` is the authority for port state and BPDU guard (it is what an operator reads);
 * ip -d fills in when a port is missing there. Returns new objects.
 */
export function mergeBridgeInfo(links: readonly LinkState[], ports: readonly BridgePortInfo[]): LinkState[] {
  const byName = new Map(ports.map((p) => [p.name, p]));
  return links.map((l) => {
    const p = byName.get(l.name);
    if (!p) return { ...l };
    return { ...l, portState: p.state ?? l.portState, bpduGuard: p.bpduGuard ?? l.bpduGuard };
  });
}
