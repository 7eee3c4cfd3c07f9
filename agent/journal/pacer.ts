// A byte budget shared by everything that reads the journal back for clients (`events`): at most
// bytesPerSec on average across all of them, after a first burst. The agent's event loop runs
// SCHED_FIFO, so unpaced work for a client is real-time work: four clients looping `events`
// on a 9 MB journal kept one core busy at real-time priority and starved every ordinary process
// on it (the lab's own helpers took seconds to spawn). Paced, reading back costs a bounded share
// of a core whatever the clients do; they wait longer instead.

export interface Pacer {
  /** Resolves once `bytes` more may be read (at once while within the burst). */
  take(bytes: number): Promise<void>;
}

export interface PacerClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: PacerClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms).unref()),
};

/**
 * A shared pacer: takes are granted in order of arrival against one schedule, so N readers share
 * bytesPerSec between them rather than getting it each.
 */
export function createPacer(bytesPerSec: number, burstBytes: number, clock: PacerClock = realClock): Pacer {
  const msPerByte = 1000 / bytesPerSec;
  const burstMs = burstBytes * msPerByte;
  /** When the bytes granted so far have been "paid for" at the rate (ms, clock time). */
  let paidUntil = -Infinity;
  return {
    async take(bytes: number): Promise<void> {
      const now = clock.now();
      // Idle time earns at most the burst back.
      paidUntil = Math.max(paidUntil, now - burstMs) + bytes * msPerByte;
      const wait = paidUntil - now;
      if (wait >= 1) await clock.sleep(wait);
    },
  };
}
