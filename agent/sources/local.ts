import type { CounterReader, Counters, PortInfo, PortPolicy, PortRates, TickFrame, TickSource } from '../types.js';
import { emptyCounters } from '../types.js';
import { blankRates, computeRates } from '../sample/rates.js';

// The host's own watched ports as one TickSource: the counter readers (sysfs, packet) fill one
// Counters per port in place, and each tick turns the last two into rates. Maps and arrays are
// rebuilt only when the set of ports changes; a tick allocates nothing.

export interface LocalSource extends TickSource {
  /**
   * Watch these ports (listed on the host, `policies` resolved by the policy). Readers are told
   * every time (they reopen ports that failed or were recreated); the per-port state is rebuilt
   * only when the list changed, and then what was added and removed is returned.
   */
  watch(next: readonly PortInfo[], policies: ReadonlyMap<string, PortPolicy>): { added: string[]; removed: string[] } | null;
  /** The watched ports as listed on the host, in order. */
  infos(): readonly PortInfo[];
  /** A port's latest rates (valid or not), for status. */
  lastRates(port: string): PortRates | undefined;
  /**
   * The last collect found flood traffic on a port listed without a bridge: it may have been
   * enslaved since the last listing (a loop closed by plugging it in), see daemon/ports.ts.
   */
  unbridgedWarm(): boolean;
  /** Bridged ports the last collect found carrying flood traffic (the same array, refilled each collect). */
  hotPorts(): readonly string[];
}

const NO_PORTS: ReadonlyMap<string, PortPolicy> = new Map();

export function createLocalSource(readers: readonly CounterReader[], startNs: number): LocalSource {
  let policies: ReadonlyMap<string, PortPolicy> = NO_PORTS;
  let infos: PortInfo[] = [];
  let prev = new Map<string, Counters>();
  let cur = new Map<string, Counters>();
  let rates: PortRates[] = [];
  const lastRates = new Map<string, PortRates>();
  let lastT = startNs;
  let unbridgedWarm = false;
  const hotPorts: string[] = [];

  return {
    id: 'local',
    ports: () => policies,
    rates: () => rates,
    fresh: () => true,
    infos: () => infos,
    lastRates: (port) => lastRates.get(port),
    unbridgedWarm: () => unbridgedWarm,
    hotPorts: () => hotPorts,

    watch(next, resolved) {
      const changed =
        next.length !== infos.length ||
        next.some((p, i) => p.name !== infos[i]!.name || p.bridge !== infos[i]!.bridge || p.ifindex !== infos[i]!.ifindex);
      policies = resolved;
      for (const r of readers) r.watch(next);
      if (!changed) {
        // The bridge's view of a port (learning, hairpin, STP state) can change without a
        // relisting change. The listed objects keep their identity (consumers key on it).
        for (let i = 0; i < next.length; i++) {
          portModes(rates[i]!, next[i]!);
          infos[i]!.stpDiscarding = next[i]!.stpDiscarding;
        }
        return null;
      }
      const added = next.filter((p) => !prev.has(p.name)).map((p) => p.name);
      const removed = infos.filter((p) => !resolved.has(p.name)).map((p) => p.name);
      infos = next.slice();
      const np = new Map<string, Counters>();
      const nc = new Map<string, Counters>();
      for (const p of infos) {
        np.set(p.name, prev.get(p.name) ?? emptyCounters());
        nc.set(p.name, cur.get(p.name) ?? emptyCounters());
      }
      prev = np;
      cur = nc;
      rates = infos.map((p) => {
        const r = lastRates.get(p.name) ?? blankRates(p.name, p.bridge, NaN);
        // A port enslaved since: the rates already taken this tick count for its bridge now.
        r.bridge = p.bridge;
        portModes(r, p);
        return r;
      });
      for (const r of rates) lastRates.set(r.port, r);
      return { added, removed };
    },

    collect(f: TickFrame): void {
      const t = f.tNs;
      const dt = t - lastT;
      lastT = t;
      unbridgedWarm = false;
      hotPorts.length = 0;
      for (const c of cur.values()) c.ok = true;
      for (const r of readers) r.read(cur);
      // Every read and store below runs on every tick, idle or not: a property access that only a
      // warm port reached had no type feedback in an idle agent, and its first storm deoptimised
      // collect there (lab, --trace-deopt, session 16).
      let warm = false;
      for (let i = 0; i < infos.length; i++) {
        const p = infos[i]!;
        const bridge = p.bridge;
        const r = computeRates(prev.get(p.name)!, cur.get(p.name)!, dt, p.name, bridge, rates[i]!);
        const th = policies.get(p.name)?.thresholds;
        // Only flood traffic warms the sampler: a busy uplink's unicast must not keep it at 1 ms.
        // A guest's macvtap: also what its guest sends (txFloodPps, NaN elsewhere): its flood
        // reaches no counter of its own NIC's domain but that transmit.
        const hot = th !== undefined && r.valid && ((Number.isFinite(r.floodPps) ? r.floodPps : r.rxPps * (th.clearPps / th.floodPps)) >= th.clearPps || r.txFloodPps! >= th.clearPps);
        warm ||= hot;
        if (hot && bridge === null) unbridgedWarm = true;
        if (hot && bridge !== null) hotPorts.push(p.name);
      }
      f.warm ||= warm;
      const swap = prev;
      prev = cur;
      cur = swap;
    },

    consume(): void {},

    async close(): Promise<void> {
      await Promise.all(readers.map((r) => r.close()));
    },
  };
}

/** The listing's learning and hairpin modes and macvlan domain onto the port's rates (the detector reads them there). */
function portModes(r: PortRates, p: PortInfo): void {
  r.noLearn = p.noLearn === true;
  r.hairpin = p.hairpin === true;
  r.macvlan = p.macvlan === true;
}
