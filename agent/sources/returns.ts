import { emptyCounters, type CounterReader, type Counters, type PortInfo } from '../types.js';

// Frames that came back, per port, as a counter (Counters.rxReturned): the tripwire's native
// thread notes each frame it reads that the same port received before, unchanged, within 100 ms
// (native/packet_stats.c tw_return_seen) and hands the counts over per interface. A frame
// circling a loop returns; a frame a guest bridging two separate LANs forwards never does, and by
// rates alone the two look alike (the detector's ring rule, detect/signature.ts). Totals are kept
// here by ifindex; a port's total restarts at 0 when it is watched anew (a new interface).

/** read: the tripwire's returns since the last call ([ifindex, count, ...]), undefined for none or no tripwire (then NaN). */
export function createReturnsReader(read: () => ReadonlyArray<number> | undefined, running: () => boolean): CounterReader {
  // Parallel arrays, walked by index: read() allocates nothing.
  let names: string[] = [];
  let ifindexes: number[] = [];
  let totals: number[] = [];

  return {
    id: 'returns',

    watch(ports: readonly PortInfo[]): void {
      const old = new Map<string, { ifindex: number; total: number }>();
      for (let i = 0; i < names.length; i++) old.set(names[i]!, { ifindex: ifindexes[i]!, total: totals[i]! });
      names = ports.map((p) => p.name);
      ifindexes = ports.map((p) => p.ifindex);
      totals = ports.map((p) => {
        const o = old.get(p.name);
        return o !== undefined && o.ifindex === p.ifindex ? o.total : 0;
      });
    },

    read(out: Map<string, Counters>): void {
      const on = running();
      const got = on ? read() : undefined;
      if (got !== undefined) {
        for (let k = 0; k + 1 < got.length; k += 2) {
          const i = ifindexes.indexOf(got[k]!);
          if (i >= 0) totals[i]! += got[k + 1]!;
        }
      }
      for (let i = 0; i < names.length; i++) {
        const c = out.get(names[i]!);
        if (c !== undefined) c.rxReturned = on ? totals[i]! : NaN;
      }
    },

    close(): void {},
  };
}

/**
 * Runs the reader over returns of two throwaway ports at start: at rest the tripwire hands over
 * none, so the loop that adds them would first run (interpreted) in the first storm. Returns the
 * total it counted (the test's check that the adding path ran).
 */
export function warmUpReturns(reads = 200): number {
  const ports: PortInfo[] = [
    { name: 'warm-ret-a', ifindex: -1, bridge: null },
    { name: 'warm-ret-b', ifindex: -2, bridge: null },
  ];
  const batch = [-1, 3, -2, 4, -3, 1];
  const r = createReturnsReader(() => batch, () => true);
  r.watch(ports);
  const out = new Map<string, Counters>(ports.map((p) => [p.name, emptyCounters()]));
  for (let i = 0; i < reads; i++) r.read(out);
  return (out.get('warm-ret-a')!.rxReturned ?? 0) + (out.get('warm-ret-b')!.rxReturned ?? 0);
}
