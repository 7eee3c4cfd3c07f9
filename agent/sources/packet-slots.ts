// The JS side of the addon's counter thread (native/counter_thread.c): which socket sits in
// which slot of the shared memory, and a torn-read-proof read of one slot. The thread reads
// PACKET_STATISTICS (whose unlock runs the CPU's pending NET_RX softirq: during a storm, the
// storm) so the tick does not; the tick kicks a sweep, reads sysfs meanwhile, then waits for the
// sweep at most a bounded time and takes whatever is published, each value with the monotonic
// time it was read at, so rates stay true even when a sweep lags (agent/sample/rates.ts).

/** The addon's counter-thread API (a subset of PacketAddon). */
export interface CounterThreadAddon {
  countersStart(slots: number): CounterThreadHandle;
  countersBuffer(h: CounterThreadHandle): ArrayBuffer;
  /** Put fd (opened by the addon) in slot, or forget the slot (fd -1); returns once no sweep reads the old fd. */
  countersWatch(h: CounterThreadHandle, slot: number, fd: number): void;
  /** Ask for a sweep of every slot; returns the sweep's id. */
  countersKick(h: CounterThreadHandle): number;
  /** Wait until sweep `id` is published, at most maxUs; false on timeout. */
  countersWait(h: CounterThreadHandle, id: number, maxUs: number): boolean;
  /** SCHED_FIFO at prio for the counter thread (reset on fork). Throws without CAP_SYS_NICE. */
  countersRealtime(h: CounterThreadHandle, prio: number): void;
  countersStop(h: CounterThreadHandle): void;
}

/** Opaque native handle. */
export type CounterThreadHandle = { readonly __counters: unique symbol };

/** One slot as last read: running total, monotonic ns of the read, errno (0 = fine). */
export interface SlotValue {
  total: number;
  readNs: number;
  err: number;
}

/** 32 bytes per slot: int32 seq, int32 err, f64 total, f64 readNs (native/counter_thread.c). */
const I32_PER_SLOT = 8;
const F64_PER_SLOT = 4;
/** A slot is rewritten in tens of ns; a read that keeps colliding gives up and keeps the last value. */
const MAX_TRIES = 8;

export interface SlotView {
  /**
   * Copy slot i into out when a consistent value is there (seq even and unchanged across the
   * read); returns false and leaves out alone otherwise (the caller keeps its last value).
   */
  read(i: number, out: SlotValue): boolean;
}

export function slotView(buffer: ArrayBuffer): SlotView {
  const i32 = new Int32Array(buffer);
  const f64 = new Float64Array(buffer);
  return {
    read(i, out) {
      const s = i * I32_PER_SLOT;
      const d = i * F64_PER_SLOT;
      for (let k = 0; k < MAX_TRIES; k++) {
        const seq1 = Atomics.load(i32, s);
        if ((seq1 & 1) !== 0) continue; // being written
        const err = i32[s + 1]!;
        const total = f64[d + 1]!;
        const readNs = f64[d + 2]!;
        if (Atomics.load(i32, s) !== seq1) continue; // rewritten while we read: torn
        out.total = total;
        out.readNs = readNs;
        out.err = err;
        return true;
      }
      return false;
    },
  };
}

/** Free slot numbers, lowest first. */
export interface SlotPool {
  take(): number;
  give(i: number): void;
}

export function slotPool(size: number): SlotPool {
  const free: number[] = [];
  for (let i = size - 1; i >= 0; i--) free.push(i);
  return {
    take: () => free.pop() ?? -1,
    give: (i) => void free.push(i),
  };
}
