import type { Logger } from '../log.js';
import type { FdbMove, JoinCause, PortInfo, PortPolicy, PortRates, Policy, TickFrame, TickSource } from '../types.js';
import { bridgeMembers, listInterfaceNames, listInterfaces, masterOf, readCarrierUps } from '../host/interfaces.js';
import { resolvePorts } from '../policy/match.js';
import { observedNames, observedPort } from '../policy/observed.js';
import type { LocalSource } from '../sources/local.js';
import { createLinkMonitor, type LinkMonitor } from '../sources/links.js';
import { portPolicyOf, withOverlay } from '../policy/port-policy.js';
import type { KeptPortFiles } from '../host/port-files.js';

// The watched set: every TickSource in one registry (the local host, each ESXi host, the FDB
// monitor, and whatever comes next), merged into what the detector and the breaker read. The
// merge runs only when a source's ports, rates array or freshness changed; a tick that changes
// nothing allocates nothing.

export interface WatchedPorts {
  /** Every watched port, local and remote: the breaker and operators act on these. */
  all(): ReadonlyMap<string, PortPolicy>;
  /** The ports the detector may judge now (a stale ESXi host's are left out). */
  judged(): ReadonlyMap<string, PortPolicy>;
  /** Every source's rates, in registry order (the tick's `ports`). */
  rates(): readonly PortRates[];
  /** Every source measures into its rates and the frame; then the merge is checked. */
  collect(f: TickFrame): void;
  /** After the detector: no remote block counts twice. */
  consume(): void;
  add(s: TickSource): void;
  remove(s: TickSource): void;
  sources(): readonly TickSource[];
  /** Rebuild the merged views now (a source said its ports changed). */
  merge(): void;
}

interface Seen {
  ports: ReadonlyMap<string, PortPolicy> | null;
  rates: readonly PortRates[] | null;
  fresh: boolean;
}

/** afterCollect: called after each source's collect in a tick, before the next source's (see enslavedSinceListed). */
export function createWatchedPorts(now: () => number, afterCollect?: (s: TickSource, f: TickFrame) => void): WatchedPorts {
  const list: TickSource[] = [];
  const seen: Seen[] = [];
  let all: ReadonlyMap<string, PortPolicy> = new Map();
  let judged: ReadonlyMap<string, PortPolicy> = all;
  let rates: readonly PortRates[] = [];

  function merge(): void {
    const t = now();
    const withPorts: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      seen[i] = { ports: s.ports(), rates: s.rates(), fresh: s.fresh(t) };
      if (s.ports().size > 0 || s.rates().length > 0) withPorts.push(i);
    }
    // One fresh source (a host without ESXi): its own map and array, no copies.
    if (withPorts.length <= 1) {
      const s = withPorts.length ? seen[withPorts[0]!]! : null;
      all = s?.ports ?? new Map();
      judged = s && s.fresh ? all : new Map();
      rates = s?.rates ?? [];
      return;
    }
    const a = new Map<string, PortPolicy>();
    const j = new Map<string, PortPolicy>();
    const r: PortRates[] = [];
    for (const i of withPorts) {
      const s = seen[i]!;
      for (const [n, pp] of s.ports!) {
        a.set(n, pp);
        if (s.fresh) j.set(n, pp);
      }
      r.push(...s.rates!);
    }
    all = a;
    judged = j;
    rates = r;
  }

  return {
    all: () => all,
    judged: () => judged,
    rates: () => rates,
    collect(f) {
      for (let i = 0; i < list.length; i++) {
        list[i]!.collect(f);
        afterCollect?.(list[i]!, f);
      }
      for (let i = 0; i < list.length; i++) {
        const s = list[i]!;
        const was = seen[i]!;
        if (s.ports() !== was.ports || s.rates() !== was.rates || s.fresh(f.tNs) !== was.fresh) return merge();
      }
    },
    consume() {
      for (let i = 0; i < list.length; i++) list[i]!.consume();
    },
    add(s) {
      list.push(s);
      seen.push({ ports: null, rates: null, fresh: false });
      merge();
    },
    remove(s) {
      const i = list.indexOf(s);
      if (i < 0) return;
      list.splice(i, 1);
      seen.splice(i, 1);
      merge();
    },
    sources: () => list,
    merge,
  };
}

/**
 * List the host's interfaces, resolve them against the policy, hand them to the local source
 * and re-merge (every second, on a link change, and at once after a reload). A changed set is
 * logged. `joins` (createJoinWatch) stamps ports that joined a bridge with the time it saw them.
 * `files` keeps the ports' mode files open across listings; those of ports no longer listed close.
 */
export function rescanLocal(
  local: LocalSource,
  policy: Policy,
  watched: WatchedPorts,
  log: Logger,
  listed?: (infos: readonly PortInfo[]) => void,
  joins?: { watch: JoinWatch; now: () => number },
  files?: KeptPortFiles,
): void {
  const names = listInterfaceNames();
  const named = resolvePorts(policy, names);
  const infos = listInterfaces(undefined, (name) => named.has(name), files);
  // The unnamed ports of every bridge a watched port is on: read, never acted on (policy/observed.ts).
  const extra = observedNames(infos, named, (b) => bridgeMembers(b));
  let resolved: ReadonlyMap<string, PortPolicy> = named;
  if (extra.length > 0) {
    const all = new Map(named);
    for (const n of extra) all.set(n, observedPort(policy, n));
    resolved = all;
    const more = new Set(extra);
    infos.push(...listInterfaces(undefined, (name) => more.has(name), files));
    infos.sort((a, b) => a.name.localeCompare(b.name));
  }
  resolved = withOverlays(resolved, infos);
  if (joins) resolved = withJoins(resolved, joins.watch(infos, names, joins.now()));
  files?.retain(new Set(infos.map((p) => p.name)));
  const changed = local.watch(infos, resolved);
  watched.merge();
  // Every rescan, not only on a change: a port's learning mode changes without one.
  listed?.(infos);
  if (!changed) return;
  const list = local.infos().filter((p) => named.has(p.name)).map((p) => ({ port: p.name, bridge: p.bridge, role: named.get(p.name)?.role }));
  const observed = local.infos().filter((p) => !named.has(p.name)).map((p) => ({ port: p.name, bridge: p.bridge }));
  log.info({ component: 'ports', watched: list, ...(observed.length > 0 ? { observedNotNamed: observed } : {}), ...changed }, 'watched ports changed');
}

/**
 * A watched port listed without a bridge that now has one: enslaved since the last listing. Asked
 * inside a tick when such a port carries flood traffic (LocalSource.unbridgedWarm), or when the
 * FDB source brought moves (`bridge monitor fdb` names the bridge itself, so a flap through the
 * new port could be judged, and its cut chosen, before the port is listed on it): a loop closed
 * by plugging a port into a bridge storms from the enslave on, and the link monitor's line (a
 * normal-priority `ip` process, starved by the storm's softirq and anything else busy) came up
 * to ~90 ms later with a core busy (lab, kvm-hotplug); until the rescan the port's rates count
 * for no bridge and the loop has one member. One readlink per such port (~5 µs).
 */
export function enslavedSinceListed(infos: readonly PortInfo[], master: (name: string) => string | null = masterOf): boolean {
  for (let i = 0; i < infos.length; i++) {
    const p = infos[i]!;
    if (p.bridge === null && master(p.name) !== null) return true;
  }
  return false;
}

/**
 * Do this tick's moves name a port listed without a bridge? Only such a move can tell of a port
 * enslaved since the listing (`bridge monitor fdb` prints the new port with its master); moves on
 * bridged ports, every tick of an ordinary loop storm, asked a readlink of every unbridged port
 * for nothing. The unbridged names are kept per listing (infos() hands out a new array on change).
 */
export function createUnbridgedMoves(): (moves: readonly FdbMove[], infos: readonly PortInfo[]) => boolean {
  let listed: readonly PortInfo[] | null = null;
  let unbridged: ReadonlySet<string> = new Set();
  return (moves, infos) => {
    if (moves.length === 0) return false;
    if (infos !== listed) {
      listed = infos;
      unbridged = new Set(infos.filter((p) => p.bridge === null).map((p) => p.name));
    }
    if (unbridged.size === 0) return false;
    for (let i = 0; i < moves.length; i++) if (unbridged.has(moves[i]!.port)) return true;
    return false;
  };
}

/** Ports with their overlay kind (PortPolicy.overlay) from the listing; the map itself when no port is a tunnel. */
export function withOverlays(ports: ReadonlyMap<string, PortPolicy>, infos: readonly PortInfo[]): ReadonlyMap<string, PortPolicy> {
  let out: Map<string, PortPolicy> | null = null;
  for (const p of infos) {
    const pp = ports.get(p.name);
    if (p.overlay === undefined || pp === undefined) continue;
    (out ??= new Map(ports)).set(p.name, withOverlay(pp, p.overlay));
  }
  return out ?? ports;
}

/** Ports with their join (PortPolicy.joinedNs, joinedBy) set; the map itself when none joined. */
function withJoins(ports: ReadonlyMap<string, PortPolicy>, joined: ReadonlyMap<string, Join>): ReadonlyMap<string, PortPolicy> {
  if (joined.size === 0) return ports;
  const out = new Map(ports);
  for (const [n, j] of joined) {
    const pp = out.get(n);
    if (pp) out.set(n, portPolicyOf(pp, { joinedNs: j.atNs, joinedBy: j.by, joinedAfterNs: j.afterNs }));
  }
  return out;
}

/** When the agent saw a port join its bridge (monotonic ns), and how. */
export interface Join {
  atNs: number;
  by: JoinCause;
  /** Found at a verdict: it happened after this listing's time, before atNs (PortPolicy.joinedAfterNs). */
  afterNs?: number;
}

/** Says which listed ports joined a bridge, and when; see createJoinWatch. */
export interface JoinWatch {
  (infos: readonly PortInfo[], hostNames: readonly string[], tNs: number): ReadonlyMap<string, Join>;
  /**
   * At a loop verdict on `bridge`, before the breaker picks whom to cut: reads the carrier count
   * of each of the verdict's `members` listed on it (every listed port of the bridge when not
   * given), and a port whose count rose since its listing joined at tNs (by carrier). The listing
   * that would see the rise is started by the link monitor's line, from a normal-priority `ip`
   * child that the storm itself can hold back tens of ms, past the verdict; the breaker would then
   * cut by name (the old uplink). A port read within CARRIER_FRESH_MS (carrierOfHot) is not read
   * again. Returns every join, as a listing would, when one was stamped; null otherwise.
   */
  carrierAtVerdict(bridge: string, tNs: number, members?: readonly string[]): ReadonlyMap<string, Join> | null;
  /**
   * The same read for bridged ports that carry flood frames (LocalSource.hotPorts), before any
   * verdict: a loop that a carrier-up closed turns its members hot a sample or more before the
   * verdict, and the read then costs nothing on the way from verdict to cut. (Under a storm each
   * sysfs open+read took 0.1-0.5 ms: the check at the verdict cost 0.3-1.5 ms of the first cut,
   * and 0.2-0.4 ms of every escalation tick; lab trace, session 17.) The verdict's check still
   * runs for members no hot read covered (a unicast loop turns nothing hot).
   */
  carrierOfHot(names: readonly string[], tNs: number): ReadonlyMap<string, Join> | null;
}

/**
 * A port's carrier count read at a verdict or while hot is not read again this soon: a second
 * cable plugged in within it, on a bridge already storming, is found by the listing (the link
 * monitor's rescan, or the 1 s one) rather than by the verdict.
 */
export const CARRIER_FRESH_MS = 10;

interface Member {
  name: string;
  bridge: string | null;
  join: Join | null;
  /** The kernel's carrier-up count at this listing (null: unknown). */
  carrierUps: number | null;
  /** When a verdict or a hot read last read carrierUps (a listing does not count; see CARRIER_FRESH_MS). */
  checkedNs: number;
}

/**
 * Remembers each listed (watched) interface's bridge, by ifindex, and when the agent saw it join
 * one: enslaved while the agent runs (its bridge changed to a bridge), a new interface that
 * appears already enslaved (created, recreated under a watched name, or plugged in), or an
 * enslaved port whose carrier came up again (a cable plugged into a NIC that sat in the bridge
 * without link: the commonest way to close a loop by hand; `carrierUps` reads the kernel's count
 * of carrier-up transitions, and a rise since the last listing is a join). A rename
 * keeps what its interface had. A name that was on the host at the previous listing but not
 * watched (a reload named it) has no known history: not a joiner; nor is anything on the first
 * call (there before the agent). Returns every port still on the bridge it joined, with the time
 * (the breaker decides what is recent: breaker/state.ts RECENT_JOIN_MS). Pure apart from its own
 * maps, which hold only listed interfaces and the host's names, and the injected carrier reader.
 */
export function createJoinWatch(carrierUps: (name: string, ifindex: number) => number | null = (name) => readCarrierUps(name)): JoinWatch {
  let host: ReadonlySet<string> | null = null; // every name on the host at the previous listing
  let seen = new Map<number, Member>();
  let watchedNames: ReadonlySet<string> = new Set();
  let listedNs = -Infinity;
  const joined = new Map<string, Join>();
  const watch = (infos: readonly PortInfo[], hostNames: readonly string[], tNs: number): ReadonlyMap<string, Join> => {
    const next = new Map<number, Member>();
    joined.clear();
    for (const p of infos) {
      const was = seen.get(p.ifindex);
      let join: Join | null = null;
      const ups = p.bridge !== null ? carrierUps(p.name, p.ifindex) : null;
      if (p.bridge !== null) {
        if (was !== undefined) {
          if (was.bridge !== p.bridge) join = { atNs: tNs, by: 'bridge' };
          else if (carrierRose(was.carrierUps, ups)) join = { atNs: tNs, by: 'carrier' };
          else join = was.join;
        } else if (host !== null && (watchedNames.has(p.name) || !host.has(p.name))) join = { atNs: tNs, by: 'bridge' }; // recreated, or new on the host
      }
      next.set(p.ifindex, { name: p.name, bridge: p.bridge, join, carrierUps: ups, checkedNs: -Infinity });
      if (join !== null) joined.set(p.name, join);
    }
    seen = next;
    listedNs = tNs;
    watchedNames = new Set(infos.map((p) => p.name));
    host = new Set(hostNames);
    return joined;
  };
  /** Read the carrier count of the listed members `want` picks, unless read within CARRIER_FRESH_MS; stamp a rise. */
  const check = (tNs: number, want: (m: Member) => boolean): ReadonlyMap<string, Join> | null => {
    // A walk over the listing (a few ports; only on a verdict or while ports are hot): no index to keep in step.
    let rose = false;
    for (const [ifindex, m] of seen) {
      if (m.bridge === null || !want(m)) continue;
      if (tNs >= m.checkedNs && tNs - m.checkedNs < CARRIER_FRESH_MS * 1e6) continue;
      m.checkedNs = tNs;
      const ups = carrierUps(m.name, ifindex);
      if (!carrierRose(m.carrierUps, ups)) continue;
      // Stored, so the next listing sees no second rise and keeps this join (and its time).
      m.carrierUps = ups;
      m.join = { atNs: tNs, by: 'carrier', afterNs: listedNs };
      joined.set(m.name, m.join);
      rose = true;
    }
    return rose ? joined : null;
  };
  const carrierAtVerdict = (bridge: string, tNs: number, members?: readonly string[]): ReadonlyMap<string, Join> | null =>
    check(tNs, (m) => m.bridge === bridge && (members === undefined || members.includes(m.name)));
  const carrierOfHot = (names: readonly string[], tNs: number): ReadonlyMap<string, Join> | null =>
    names.length === 0 ? null : check(tNs, (m) => names.includes(m.name));
  return Object.assign(watch, { carrierAtVerdict, carrierOfHot });
}

/**
 * The tick's atLoopVerdict for this host's bridges (daemon/tick.ts), and `hot` for the watched
 * registry's afterCollect (LocalSource.hotPorts): a carrier-up the listing has not seen yet is
 * stamped on the local source's ports and the registry merged again, so the breaker's step in
 * this very tick reads the join. The listing itself is not redone (no readdir; the counter
 * readers keep their open files): only the ports' policies change.
 */
export function carrierJoinChecks(local: LocalSource, merge: () => void, watch: JoinWatch, log: Logger): {
  atVerdict(bridge: string, tNs: number, members?: readonly string[]): void;
  hot(tNs: number): void;
} {
  const stamp = (what: string, read: () => ReadonlyMap<string, Join> | null): void => {
    try {
      const joined = read();
      if (joined === null) return;
      local.watch(local.infos(), withJoins(local.ports(), joined));
      merge();
    } catch (err) {
      // The breaker must still run on this verdict: it cuts by shut order, as without the check.
      log.error({ component: 'ports', err: (err as Error).message }, `carrier check ${what} failed`);
    }
  };
  return {
    atVerdict: (bridge, tNs, members) => stamp('at a loop verdict', () => watch.carrierAtVerdict(bridge, tNs, members)),
    hot(tNs) {
      const names = local.hotPorts();
      if (names.length > 0) stamp('on hot ports', () => watch.carrierOfHot(names, tNs));
    },
  };
}

/** Did the carrier come up since the last listing (both counts known and the count rose)? */
function carrierRose(before: number | null, now: number | null): boolean {
  return before !== null && now !== null && now > before;
}

export interface Rename {
  ifindex: number;
  from: string;
  to: string;
}

/**
 * Remembers each listed port's name by ifindex and says which came back under a new name (an
 * `ip link set p1 name p1x` while the agent runs). Pure apart from its own map, bounded.
 */
export function createRenameWatch(max = 4096): (infos: readonly PortInfo[]) => Rename[] {
  const known = new Map<number, string>();
  return (infos) => {
    const out: Rename[] = [];
    for (const p of infos) {
      const was = known.get(p.ifindex);
      if (was !== undefined && was !== p.name) out.push({ ifindex: p.ifindex, from: was, to: p.name });
      if (was !== p.name) {
        if (known.size >= max && was === undefined) known.clear();
        known.set(p.ifindex, p.name);
      }
    }
    return out;
  };
}

/** The lowest falling edge of any watched port: below it, nothing is worth a fast look. */
export function lowestClearPps(ports: ReadonlyMap<string, PortPolicy>): number {
  let m = Infinity;
  for (const pp of ports.values()) m = Math.min(m, pp.thresholds.clearPps);
  return Number.isFinite(m) ? m : 0;
}

/**
 * A port plugged in (or enslaved, or recreated) at runtime is watched from the kernel's link
 * notification (`ip -o monitor link`), not at the next 1 s rescan (issue 11); the rescan stays as
 * the safety net should the monitor die.
 */
export function followLinkChanges(rescan: () => void, log: Logger, stopped: () => boolean): LinkMonitor {
  return createLinkMonitor({
    onChange: () => {
      if (stopped()) return;
      try {
        rescan();
      } catch (err) {
        log.error({ component: 'ports', err: (err as Error).message }, 'rescan on link change failed');
      }
    },
    warn: (o, m) => log.warn({ component: 'links', ...o }, m),
  });
}
