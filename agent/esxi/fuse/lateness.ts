// Pure: how late a fuse sample reaches the agent, from the host's own timestamp. A sample read on
// time but delivered late (the local ssh starved, the socket buffered during a stall) carries old
// numbers: judging it would act on stale data. The host's clock is not the agent's, so the offset
// between them is learned: its minimum is the fastest delivery seen, and a sample's lateness is its
// offset above that. The minimum is allowed to rise 1 ms per second, so clock drift between the
// hosts (tens of ppm) never makes fresh samples look late, while a real backlog (a second or more)
// does.

export interface Lateness {
  /** ms this sample arrived later than the fastest delivery seen (>= 0). */
  of(hostUs: number, recvNs: number): number;
  /**
   * When a sample was read, on the agent's monotonic clock: its host time plus the fastest
   * delivery's offset (after of() has seen it). Rates are measured between these, not between
   * arrivals: samples that arrive together (a batch, a delayed read) were still read apart.
   */
  readAt(hostUs: number): number;
  reset(): void;
}

const RISE_PER_NS = 1e-3;

export function lateness(): Lateness {
  let minOffsetNs = Infinity;
  let lastRecvNs = 0;
  return {
    of(hostUs, recvNs) {
      const offset = recvNs - hostUs * 1e3;
      if (minOffsetNs !== Infinity) minOffsetNs += Math.max(0, recvNs - lastRecvNs) * RISE_PER_NS;
      lastRecvNs = recvNs;
      if (offset < minOffsetNs) minOffsetNs = offset;
      return (offset - minOffsetNs) / 1e6;
    },
    readAt: (hostUs) => hostUs * 1e3 + minOffsetNs,
    reset() {
      minOffsetNs = Infinity;
      lastRecvNs = 0;
    },
  };
}
