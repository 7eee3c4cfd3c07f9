// Plain data shared by the pipeline stages. No behaviour lives here.
// sources -> sample -> detect -> breaker -> actions -> journal (see ../shared/DESIGN.md)

export type Role = 'uplink' | 'vm' | 'mgmt' | 'other';
export const ROLES: readonly Role[] = ['uplink', 'vm', 'mgmt', 'other'];

/** Raw counters of one port, filled in place by sources on every tick (no allocation on the hot path). */
export interface Counters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  /** Incoming broadcast frames; NaN when no source can count them for this port. */
  rxBroadcast: number;
  /** Incoming multicast frames; NaN when unknown. */
  rxMulticast: number;
  /**
   * Outgoing broadcast+multicast frames, and of those the ones not from the port's own MAC; NaN
   * unless counted (the packet source counts them on a guest's macvtap/macvlan device only: its
   * transmit is what the guest sends, see native/packet_stats.c).
   */
  txFlood: number;
  txForeign: number;
  /**
   * Frames received that came back: the same bytes received again by this port shortly after
   * (native/packet_stats.c tw_return_seen, among the frames the tripwire reads). A running total;
   * NaN unless the tripwire runs (sources/returns.ts).
   */
  rxReturned: number;
  /** false when a read of this port failed this tick: the sample is dropped, never acted on. */
  ok: boolean;
}

export function emptyCounters(): Counters {
  return { rxPackets: 0, txPackets: 0, rxBytes: 0, rxBroadcast: NaN, rxMulticast: NaN, txFlood: NaN, txForeign: NaN, rxReturned: NaN, ok: false };
}

/** A watched port as discovered on the host. */
export interface PortInfo {
  name: string;
  ifindex: number;
  /** Name of the bridge this port is enslaved to, or null. */
  bridge: string | null;
  /** The bridge learns no MAC on this port (brport/learning 0, or the bridge's ageing_time 0). */
  noLearn?: boolean;
  /** The bridge sends frames back out this port they came in by (brport/hairpin_mode 1). */
  hairpin?: boolean;
  /**
   * STP holds this port listening or blocking (as of the last listing): frames still arrive on it,
   * but the bridge neither learns nor forwards them, so a MAC seen arriving here is no move.
   */
  stpDiscarding?: boolean;
  /**
   * A port of a macvlan forwarding domain (no bridge): a NIC with macvlan/macvtap devices on it,
   * or one of those devices; `bridge` then names the NIC (host/interfaces.ts, macvlanDomainOf).
   */
  macvlan?: boolean;
  /** A tunnel port of an overlay (a VXLAN device enslaved to the bridge), see OverlayInfo. */
  overlay?: OverlayInfo;
}

/**
 * A bridge port that is a VXLAN device (uevent DEVTYPE=vxlan): frames it forwards leave the host
 * encapsulated in UDP through `underlay` (its lower device, the `dev` it was created on; null when
 * none was given and the route decides), which is no port of the bridge and carries every VNI's
 * tunnel: a loop through the overlay is cut at the tunnel port, never at the underlay.
 */
export interface OverlayInfo {
  kind: 'vxlan';
  underlay: string | null;
}

/**
 * Reads some counter fields of local ports (sysfs: packets and bytes; packet: broadcast and
 * multicast). The local TickSource (sources/local.ts) combines them; one file per reader.
 */
export interface CounterReader {
  readonly id: string;
  /** Replace the set of watched ports. Ports that cannot be opened are skipped (reported via log). */
  watch(ports: readonly PortInfo[]): void;
  /**
   * Write this source's fields into out[port] for every watched port present in out.
   * Must not throw for a port that vanished: set counters.ok = false instead.
   */
  read(out: Map<string, Counters>): void;
  /** May resolve later (the packet source's sockets close off the JS thread); stop awaits it. */
  close(): void | Promise<void>;
}

/**
 * What one tick gathers besides each source's rates, filled in place (no allocation per tick).
 */
export interface TickFrame {
  /** Monotonic time of this tick, ns. */
  tNs: number;
  /** MAC moves since the previous tick (the FDB source sets it; empty otherwise). */
  fdbMoves: readonly FdbMove[];
  /** Ports on which the FDB monitor has seen the bridge learn a MAC (the FDB source sets it; absent otherwise). */
  fdbPorts?: ReadonlySet<string>;
  /** Bridges on which the FDB monitor has seen learning on any port (the FDB source sets it; absent otherwise). */
  fdbBridges?: ReadonlySet<string>;
  /** A port's flood rate reached its falling edge: sample at the active rate. */
  warm: boolean;
}

/**
 * One source of what the tick judges, local or remote: the host's own ports, one ESXi host,
 * the FDB monitor (the model: node_exporter's Collector, one file per collector). `collect` is
 * the one call on the hot path; the rest change only when the source's ports do.
 */
export interface TickSource {
  readonly id: string;
  /** The ports it measures, with their policies: the same Map object until they change. */
  ports(): ReadonlyMap<string, PortPolicy>;
  /** One PortRates per port, filled in place: the same array until ports() changes. */
  rates(): readonly PortRates[];
  /** May its ports be judged at tNs? (An ESXi host whose counters stopped may not.) */
  fresh(tNs: number): boolean;
  /** Measure up to f.tNs (into rates() and f); called once per tick. */
  collect(f: TickFrame): void;
  /** The detector has seen this tick's rates (a remote block must not count twice). */
  consume(): void;
  close(): void | Promise<void>;
}

/** Per-port rates over one sampling interval, computed from measured monotonic time deltas. */
export interface PortRates {
  port: string;
  bridge: string | null;
  /** Interval length in ms this rate was measured over. */
  dtMs: number;
  rxPps: number;
  txPps: number;
  rxBps: number;
  /** Broadcast + multicast rx pps ("flood" traffic); NaN when unknown. */
  floodPps: number;
  bcastPps: number;
  /**
   * Broadcast + multicast tx pps, where a source counts it (ESXi vmnics); absent or NaN when
   * unknown. Judged only on uplinks: a flood leaving the host whose source no watched port shows.
   */
  txFloodPps?: number;
  /**
   * Of txFloodPps, the frames whose source MAC is not the port's own: what a guest FORWARDS by its
   * macvtap (a bridge inside it). NaN unless counted (a guest's macvtap/macvlan device only).
   */
  txFwdPps?: number;
  /**
   * Frames per second received that came back (Counters.rxReturned): a frame circling a ring
   * arrives again unchanged. NaN unless counted (the tripwire runs).
   */
  rxRetPps?: number;
  /** false when the counters reset/wrapped or a read failed: no rate for this interval. */
  valid: boolean;
  /**
   * The bridge learns no MAC on this port (PortInfo.noLearn, as of the last port listing): a loop
   * through it flaps no MAC, and one circling unknown unicast moves no flood counter either.
   */
  noLearn?: boolean;
  /** The port is in hairpin mode (PortInfo.hairpin): a loop can circle through it alone. */
  hairpin?: boolean;
  /** The port is of a macvlan forwarding domain (PortInfo.macvlan): `bridge` names its NIC. */
  macvlan?: boolean;
  /**
   * The port is a VM's port (a vNIC) on an ESXi standard vSwitch (`bridge`). Such a vSwitch never
   * sends a frame received by one uplink out of another (split horizon), so a loop through it
   * crosses a guest that forwards between two vNICs (detect/signature.ts, ESXI_EXCHANGE_MS).
   */
  esxiVm?: boolean;
  /**
   * The port's bridge is an ESXi vSwitch with a watched VM port (esxiVm), set where the ESXi source
   * lists its ports: only there does the detector look at what VM ports send (esxiVmSends), so a
   * storm on a Linux bridge never walks the ports for it.
   */
  vmSwitch?: boolean;
  /**
   * ESXi VM ports only: which VM the vNIC belongs to, `<host>/world <World ID>` (esxcli network vm
   * list), or `<host>/vm <name>` where the World ID is not known; '' or absent elsewhere. Two
   * member ports with the same id are one guest forwarding between its own vNICs: a loop through
   * it, not a VM's exchange with the world (detect/signature.ts guestPeer).
   */
  esxiVmId?: string;
  /** The VM's name (inventory), for the verdict's words only. */
  esxiVmName?: string;
}

/** A MAC address seen moving between ports of one bridge (bridge monitor fdb). */
export interface FdbMove {
  tNs: number;
  bridge: string | null;
  mac: string;
  port: string;
}

export interface Tick {
  /** Monotonic time of the end of this interval, ns. */
  tNs: number;
  ports: readonly PortRates[];
  /** MAC moves observed since the previous tick. */
  fdbMoves: readonly FdbMove[];
  /**
   * Ports whose bridge's learning the FDB monitor sees (a MAC learned on them since it started):
   * a loop through them shows as flapping MACs, so rx ≈ tx without a flap is no loop there.
   * Absent: no port has an FDB view (fdb off, ESXi).
   */
  fdbPorts?: ReadonlySet<string>;
  /**
   * Bridges the FDB monitor has seen learn on any port since it started: a port of such a bridge
   * that learns (not noLearn) has an FDB view too, though none of its MACs was learned since.
   */
  fdbBridges?: ReadonlySet<string>;
}

export interface Thresholds {
  /** Broadcast+multicast rx pps above which a port is hot (rising edge). */
  floodPps: number;
  /** Flood pps below which a hot port is cool again (falling edge, < floodPps). */
  clearPps: number;
  /** Total rx pps that makes a port hot when no broadcast counter exists for it. */
  rxPps: number;
  /** Minimum share of rx that must be broadcast/multicast for a flood to count (0..1). */
  broadcastShare: number;
  /** Consecutive hot samples before a verdict. */
  holdSamples: number;
  /**
   * A single-source flood (no loop clues) must also stay hot this long before its port is shut.
   * A flood does not amplify itself the way a loop does, and legitimate bursts do cross the
   * rate for a millisecond or two (an ARP scan sends 39 requests 26 us apart).
   */
  floodHoldMs: number;
  /** A port's own baseline (EWMA of flood pps) times this factor also has to be exceeded. */
  baselineFactor: number;
}

/**
 * Automatic recovery of a tripped port (issue 3 item 5). `manual`: only an operator brings it
 * back. `auto`: after cooldownMs the breaker brings the link up for probeMs; a verdict touching
 * the port in that time shuts it again at once, and the next cooldown is cooldownMs * backoff^N
 * after N failed probes, until maxTries failed probes leave it to a human.
 */
export type RecoveryMode = 'manual' | 'auto';
export interface Recovery {
  mode: RecoveryMode;
  cooldownMs: number;
  probeMs: number;
  backoff: number;
  maxTries: number;
}

export interface PortPolicy {
  name: string;
  role: Role;
  protected: boolean;
  /** Lower ranks are shut first among loop members (from breaker.shutOrder, then rule order). */
  shutRank: number;
  thresholds: Thresholds;
  /** Which policy rule matched (index in ports[], or -1 for defaults), for the evidence. */
  rule: number;
  dryRun: boolean;
  /** Resolved recovery for this port; absent means manual (policies built without the loader). */
  recovery?: Recovery;
  /**
   * Settle after shutting this port, when longer than breaker.settleMs: a port sampled every
   * 100 ms over SSH (ESXi) shows the effect of its shut only a few samples later.
   */
  settleMs?: number;
  /**
   * A port no rule names, on a bridge with a watched port: its counters are read so a loop that
   * closes through it is seen, but nothing is ever done to it (protected, shutRank Infinity).
   */
  observed?: true;
  /**
   * Monotonic ns (the tick's clock) when the agent saw this port join its bridge: enslaved, or
   * appearing already enslaved, after the agent's first look at the host. Absent for a port that
   * was a member when the agent started, or one the agent cannot see join (ESXi). The breaker
   * cuts a recent joiner first among members of one shutOrder role (breaker/state.ts).
   */
  joinedNs?: number;
  /**
   * How it joined, for the trip's reason: 'bridge' (enslaved, or appeared enslaved) or 'carrier'
   * (already in the bridge, its carrier came up: a cable plugged in). Absent: 'bridge'.
   */
  joinedBy?: JoinCause;
  /**
   * A carrier-up found at a loop verdict (not by a listing): it came up after this (the listing
   * that last read its count) and before joinedNs; when, in between, is not known.
   */
  joinedAfterNs?: number;
  /**
   * The port is an overlay's tunnel port (PortInfo.overlay, as of the last listing). Within one
   * shutOrder role, and after a recent joiner, the breaker cuts a tunnel port before a physical
   * one of the same loop (breaker/state.ts candidates).
   */
  overlay?: OverlayInfo;
}

/** What made a port a joiner (PortPolicy.joinedBy). */
export type JoinCause = 'bridge' | 'carrier';

export interface Policy {
  version: 1;
  /** Where it came from and its content hash (sha256, hex, first 12 chars), journaled with every event. */
  file: string;
  hash: string;
  sampling: {
    /** Sample period while everything is quiet. */
    idleMs: number;
    /** Sample period while any port is warm or a verdict is pending. */
    activeMs: number;
    /** How long to stay at the active rate after the last warm sample. */
    activeHoldMs: number;
    /**
     * SCHED_FIFO priority (1-99) for the sampling thread and the tripwire thread; 0 keeps normal
     * scheduling. A storm pegs a core in softirq; at normal priority the agent is starved exactly
     * when it matters (measured in the lab: verdicts delayed by 10-30 ms).
     */
    realtimePriority: number;
  };
  defaults: Thresholds;
  /** Port selection rules in file order; first match wins. `match` is a name or a glob (* ?). */
  ports: Array<{
    match: string;
    role: Role;
    protected: boolean;
    thresholds: Partial<Thresholds>;
    dryRun?: boolean;
    /** What the rule wrote under `recovery` (over the top-level `recovery`). */
    recovery?: Partial<Recovery>;
    /** 1-based line of the rule in its file, for messages. */
    line: number;
  }>;
  breaker: {
    /** At most this many automatic shuts within windowMs. */
    maxShuts: number;
    windowMs: number;
    /** After a shut, wait this long before judging whether the storm persists. */
    settleMs: number;
    /** Role order for choosing which loop member to shut first. */
    shutOrder: Role[];
    /** Shut the source of a single-port flood that is not a loop (never uplinks unless listed). */
    floodShutRoles: Role[];
  };
  actions: {
    /** Timeout per host command, ms. */
    timeoutMs: number;
    retries: number;
  };
  fdb: { enabled: boolean };
  dryRun: boolean;
  /**
   * Top-level `recovery`: the default of every rule, except that uplink and mgmt rules stay
   * manual unless the rule itself writes `mode: auto`. Absent in policies built without the loader
   * (= manual everywhere).
   */
  recovery?: Recovery;
  /**
   * Top-level `reachability` (issue 5 item 7): after every successful automatic link-down the
   * agent sends ICMP echoes to `target` (the management gateway); no reply within tries x
   * timeoutMs means the action cut the management path, and it is undone. Absent = off.
   */
  reachability?: Reachability;
  /**
   * Top-level `metrics`: serve Prometheus text on this loopback address. Absent = off (unless
   * `run --metrics` is given, which wins). Read at start only.
   */
  metrics?: { host: string; port: number };
  /**
   * Top-level `notify`: where trips, restores, escalations and failed actions are sent. Absent =
   * off (unless `run --webhook` / `--hook-argv` is given, which win). Read at start only.
   */
  notify?: Notify;
  /**
   * Top-level `esxi` (issue 4): ESXi hosts watched and acted on over SSH from this Linux host.
   * Absent = none. Read at start only (a reload that changes it is refused with a message).
   */
  esxi?: EsxiPolicy;
}

/** What the agent may do to an ESXi host, smallest scope first (policy `esxi.hosts[].actions`). */
export type EsxiActionKind = 'vnic-disconnect' | 'portgroup-quarantine' | 'nic-down';
export const ESXI_ACTION_KINDS: readonly EsxiActionKind[] = ['vnic-disconnect', 'portgroup-quarantine', 'nic-down'];
export type EsxiCounterPath = 'vsish' | 'esxcli';
/**
 * The on-host fuse (issue 12): `armed` streams counters from the host's own Python and cuts a loop
 * by itself; `stream` streams the same way and cuts nothing (reports what it would cut); `off` uses
 * the shell loop only. Where the fuse cannot arm (no Python, no vmware.vsi, refused), the shell
 * loop is the fallback, said in status and the journal.
 */
export type EsxiFuseMode = 'armed' | 'stream' | 'off';
export const ESXI_FUSE_MODES: readonly EsxiFuseMode[] = ['armed', 'stream', 'off'];

export interface EsxiVmnicPolicy {
  /** vmnic<N>; the agent's port name is `<host>/<name>`. */
  name: string;
  role: Role;
  protected: boolean;
}

export interface EsxiHostPolicy {
  /** Short name, [a-z0-9-]{1,32}: the prefix of every port name of this host (`esx1/vmnic0`). */
  name: string;
  /** IPv4 address of the host's management interface (no DNS: it may be what the storm cut). */
  address: string;
  port: number;
  user: string;
  /** Absolute path of the private key (key authentication only). */
  identityFile: string;
  /** Absolute path of a known_hosts file holding this host's key (strict checking, never TOFU). */
  knownHostsFile: string;
  /** One counter block is requested this often. */
  sampleMs: number;
  /** No block for this long = stale: the host's ports are not judged and nothing is done on them. */
  staleMs: number;
  connectTimeoutMs: number;
  /** Per remote command (reads and actions). */
  commandTimeoutMs: number;
  counters: EsxiCounterPath;
  fuse: EsxiFuseMode;
  /** The fuse reads counters this often on the host (5-100 ms). */
  fuseSampleMs: number;
  /** The fuse keeps protecting this long after the agent's connection is gone, then exits. */
  fuseLeaseMs: number;
  /** Most vNICs the fuse cuts by itself per arming (0: it only reports). */
  fuseBudget: number;
  vmnics: EsxiVmnicPolicy[];
  /** VM ports on these port groups are watched (role vm, one port per vNIC, named by MAC). */
  portgroups: string[];
  /** Port groups never quarantined and whose VM ports are never disconnected (vmkernel, management). */
  protectedPortgroups: string[];
  /**
   * Also watch the vNICs of every VM that has two vNICs in one L2 (same port group, or same
   * vSwitch and VLAN), whatever their port group: such a guest can close a loop, and it is cut
   * best at its vNIC. Default true.
   */
  watchBridgingVms: boolean;
  /** Which actions may be used, smallest scope first; a kind not listed is never used. */
  actions: EsxiActionKind[];
  /** VLAN a quarantined port group is moved to (1-4094); required when portgroup-quarantine is listed. */
  quarantineVlan: number | null;
  /** Over the policy's `defaults` for every port of this host (samples are slower than local ones). */
  thresholds: Partial<Thresholds>;
  /** 1-based line of the host entry in its file, for messages. */
  line: number;
}

export interface EsxiPolicy {
  hosts: EsxiHostPolicy[];
}

export interface Notify {
  /** http(s) URL the event JSON is POSTed to. */
  webhook?: string;
  /** A hook run without a shell, the event JSON on stdin. At least one of webhook / hookArgv is set. */
  hookArgv?: string[];
  /** Per try, ms. */
  timeoutMs: number;
  /** Tries per event, including the first. */
  tries: number;
}

export interface Reachability {
  /** IPv4 address, dotted quad. */
  target: string;
  /** Wait per echo, ms. */
  timeoutMs: number;
  /** Echoes sent before the target counts as unreachable. */
  tries: number;
}

export interface Evidence {
  tNs: number;
  /**
   * Last few rate samples of the ports involved, newest last. dtMs: the sample's own interval
   * (it ends at tMs); absent in records written before it was kept.
   */
  window: Array<{ port: string; tMs: number; dtMs?: number; rxPps: number; txPps: number; floodPps: number }>;
  thresholds: Record<string, number>;
  clues: string[];
  rule: number;
  policyHash: string;
}

export type Verdict =
  | {
      kind: 'loop';
      bridge: string | null;
      members: string[];
      evidence: Evidence;
      /** A loop through an ESXi guest: its member vNICs (on any of the host's vSwitches) are of this one VM. */
      guest?: { vm: string; ports: string[] };
      /**
       * Every other port of the bridge was read just now and takes in none of the kind of frames
       * that circle (detector's onlyWaysIn): the members are all of the loop's ways back into
       * the bridge. Absent where that cannot be known (a macvlan domain, an ESXi vSwitch, a
       * member in hairpin mode, a port not read lately).
       */
      onlyWaysIn?: true;
    }
  | { kind: 'flood'; port: string; evidence: Evidence }
  /** An uplink transmits a flood while no watched port of its bridge is hot: reported, never acted on. */
  | { kind: 'egress'; port: string; evidence: Evidence };

export type ActionKind = 'link-down' | 'link-up';

export interface ActionRequest {
  kind: ActionKind;
  port: string;
  reason: string;
}

export interface ActionResult {
  kind: ActionKind;
  port: string;
  ok: boolean;
  /** How the action was carried out ("sysfs-flags", "netlink-brport-state" or the argv that ran). */
  via: string;
  argv?: string[];
  durationMs: number;
  attempts: number;
  error?: string;
  /** Was the port verified to be in the requested state afterwards? */
  verified: boolean;
  /**
   * link-down of a bridge port stopped by its bridge state (via netlink-brport-state): when
   * forwarding stopped (monotonic ns, the daemon's clock; escalation judges samples after it),
   * that time from the action's start, and the route of the admin-down that followed.
   */
  stoppedNs?: number;
  forwardingStoppedMs?: number;
  adminDownVia?: string;
  /** How long the admin-down waited, after the stop, for the loop to settle (ms). */
  adminDownDeferredMs?: number;
  /**
   * 'stopped': an intermediate result of a bridge port's link-down: forwarding stopped (bridge
   * state disabled, read back), admin-down still to come. The final result (no stage) follows.
   */
  stage?: 'stopped';
  /** Why the fast route was not taken (e.g. the kernel refused the bridge state: EBUSY). */
  fallback?: string;
  /** ESXi ports: what was done on the host, and what its undo needs (journaled with the trip). */
  esxi?: EsxiActionRecord;
  /**
   * Carried out by someone other than the agent's executor and reported after the fact (the ESXi
   * fuse): who, why, and the reporter's id for the event (acknowledged once journaled).
   */
  origin?: { by: string; id: string; reason: string; fuse?: { instance: string; version: number; hostTimeUs: number; wallMs: number }; evidence?: Evidence };
}

export interface EsxiActionRecord {
  host: string;
  action: EsxiActionKind | 'vnic-connect' | 'portgroup-restore' | 'nic-up';
  /** vmnic, port group name, or `<vm name> key <device key>`. */
  target: string;
  /** Port group VLAN before a quarantine, for restore. */
  previousVlan?: number;
}

/** One journal line. Extra fields are allowed; these are the contract. */
export interface JournalEvent {
  ts: string;
  event:
    | 'trip'
    // Written before a link-down reaches the kernel: a trip that a kill cannot lose.
    | 'trip-intent'
    // The agent was not running for longer than expected (SIGSTOP, a VM pause, a swap storm).
    | 'stall'
    | 'would-trip'
    | 'restore'
    | 'reassert'
    | 'action-failed'
    | 'start'
    | 'stop'
    | 'flood-observed'
    // A reported condition (flood-observed, would-trip) not seen for 2 s: when it ended, how long it lasted.
    | 'ended'
    | 'escalate'
    // Operators' control: a policy reload (accepted or rejected whole), and holds.
    | 'reload'
    | 'reload-failed'
    | 'hold'
    | 'release'
    | 'hold-expired'
    // Automatic recovery: a link-up probe of a tripped port, and the end of its tries.
    | 'probe'
    | 'recovery-exhausted'
    // Reachability: a link-down that cut the management path is undone; the target's own state.
    | 'undo'
    | 'reachability-down'
    | 'reachability-up'
    // The ESXi fuse (issue 12): armed (with its program's hash), fell back to the shell loop,
    // ended; and what it reported that was not a cut (refused, dry-run, failed).
    | 'fuse'
    // Evidence: the storm's frames saved after an automatic trip (a pcapng named in `capture`).
    | 'capture';
  port: string;
  reason: string;
  policyHash?: string;
  evidence?: Evidence;
  action?: ActionResult;
  [k: string]: unknown;
}
