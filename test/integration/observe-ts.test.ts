// The kernel-timed lab observer (scripts/lab/observe-ts.c) on real namespaces: a bridge in one
// namespace, its ports' veth peers in another, frames sent from the peer q0 into port p0.
// (1) It counts exactly the frames p0 received (its rx_packets) and none that p1 only sent, each
// stamped between its sender's first and last send calls. (2) A reader stopped
// (SIGSTOP) while the traffic ends still reports the last frame within 1 ms of the sender's own
// time, where the polling observer (observe.mjs) stopped the same way sees it only after SIGCONT.
// (3) When its ring is too small for a flood it says so: frames + ring drops = rx_packets, and a
// drop window lies inside the flood.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countAt, SETTLE_FRAMES, stormStats, type CounterSeries } from '../../scripts/lab/analyze.js';
import { labAsset } from '../../scripts/lab/assets.js';
import { readLinkStats, statsDelta } from '../../scripts/lab/counters.js';
import { ns, run } from '../../scripts/lab/exec.js';
import { startJsonProc } from '../../scripts/lab/jsonproc.js';
import { kernelObserverPath, startObserver } from '../../scripts/lab/observer.js';
import { buildHostOnly, listNamespaces, teardownLab, type HostOnlyLab } from '../../scripts/lab/topology.js';
import { floodSender } from '../../scripts/lab/traffic.js';

const PREFIX = 'sbob15-';
const MS = 1e6;
const now = (): number => Number(process.hrtime.bigint());
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let lab: HostOnlyLab;
let vms = '';

interface Sent {
  sent: number;
  t_first_ns: number;
  t_last_ns: number;
}

/** count frames from q0 at pps (send.py: paced, t_first before the first send, t_last after the last). */
async function send(count: number, pps: number): Promise<Sent> {
  const { stdout } = await run(ns(vms, ['python3', labAsset('send.py'), 'q0', '--count', String(count), '--pps', String(pps)]), { timeoutMs: 15_000 });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '') as Sent;
}

function one(s: Record<string, CounterSeries>, iface: string): CounterSeries {
  const x = s[iface];
  if (!x) throw new Error(`no series for ${iface}`);
  return x;
}

beforeAll(async () => {
  lab = await buildHostOnly(PREFIX, 2, { peersNs: true });
  vms = lab.ns.vms!;
  await sleep(200);
}, 60_000);

afterAll(async () => {
  await teardownLab(PREFIX);
  expect(await listNamespaces(PREFIX)).toEqual([]);
});

describe('kernel-timed observer (observe-ts)', () => {
  it('counts what rx_packets counts on p0, nothing p1 only sent, the first and last frames inside the sender\'s send calls', async () => {
    const before = await readLinkStats(lab.ns.host);
    const obs = await startObserver(lab.ns.host, ['p0', 'p1'], 5000, { kind: 'kernel' });
    const sent = await send(400, 4000); // 250 us apart
    await sleep(50);
    const s = await obs.stop();
    const d = statsDelta(before, await readLinkStats(lab.ns.host), ['p0', 'p1']);
    const p0 = one(s, 'p0');
    const p1 = one(s, 'p1');
    expect(sent.sent).toBe(400);
    expect(d.p0!.rx).toBe(400);
    expect(d.p1).toEqual({ rx: 0, tx: 400 }); // the bridge flooded them out of p1
    expect(p0).toMatchObject({ clock: 'kernel', drops: 0 });
    expect(p1.c[p1.c.length - 1]).toBe(0);
    const st = stormStats(p0, sent.t_first_ns, 20, SETTLE_FRAMES); // python may pause > 20 ms on a busy machine
    expect(st.framesLeaked).toBe(400);
    // Stamped when veth queued the frame (inside the send call): after the sender's first
    // timestamp, before its last (50 us: the realtime->monotonic conversion, ~30 ns here).
    expect(st.firstFrameNs! - sent.t_first_ns).toBeGreaterThanOrEqual(0);
    expect(st.firstFrameNs! - sent.t_first_ns).toBeLessThan(2 * MS);
    expect(st.quietAtNs! - sent.t_last_ns).toBeLessThan(0.05 * MS);
    expect(st.quietAtNs! - sent.t_last_ns).toBeGreaterThan(-2 * MS);
  });

  it('a reader stopped while the traffic ends still times its last frame within 1 ms; the polling observer cannot', async () => {
    const k = await startObserver(lab.ns.host, ['p0'], 5000, { kind: 'kernel' });
    const p = await startObserver(lab.ns.host, ['p0'], 5000, { kind: 'poll' });
    let tStop = 0;
    let tCont = 0;
    let sent: Sent;
    try {
      const sending = send(4000, 20_000); // >= 200 ms of traffic, after python's start
      await sleep(100);
      tStop = now();
      process.kill(k.pid!, 'SIGSTOP');
      process.kill(p.pid!, 'SIGSTOP');
      sent = await sending;
      await sleep(50);
    } finally {
      tCont = now();
      for (const pid of [k.pid, p.pid]) if (pid) process.kill(pid, 'SIGCONT');
    }
    await sleep(50);
    const ks = one(await k.stop(), 'p0');
    const ps = one(await p.stop(), 'p0');
    expect(sent.sent).toBe(4000);
    // The readers were stopped when the last frame came, and for >= 50 ms after it.
    expect(sent.t_last_ns).toBeGreaterThan(tStop);
    expect(tCont - sent.t_last_ns).toBeGreaterThanOrEqual(50 * MS);
    const kst = stormStats(ks, sent.t_first_ns, 20, SETTLE_FRAMES);
    expect(ks.drops).toBe(0);
    expect(kst.framesLeaked).toBe(4000);
    expect(kst.quietAtNs! - sent.t_last_ns).toBeLessThan(0.05 * MS);
    expect(sent.t_last_ns - kst.quietAtNs!).toBeLessThan(1 * MS);
    // Its bracket is exact: the frame before the last one, or 1 ns before it.
    expect(kst.quietAtNs! - kst.quietAfterNs!).toBeLessThan(0.1 * MS);
    // The poller saw the final count only once it ran again, and its bracket spans the stop.
    const pst = stormStats(ps, sent.t_first_ns, 20, SETTLE_FRAMES);
    expect(pst.framesLeaked).toBe(4000);
    expect(pst.quietAtNs!).toBeGreaterThanOrEqual(tCont);
    expect(pst.quietAtNs! - pst.quietAfterNs!).toBeGreaterThan(50 * MS);
  });

  it('a ring too small for a stopped reader reports its drops: frames + drops = rx_packets, inside the flood', async () => {
    const before = await readLinkStats(lab.ns.host);
    const argv = ns(lab.ns.host, [kernelObserverPath(), '--ifaces', 'p0', '--duration-ms', '5000', '--ring-mb', '1']);
    const obs = await startJsonProc<{ tNs: number }, Record<string, CounterSeries & { frames: number; afterEnd: number }>>(argv, 'observe-ts', 10_000);
    let flood: Sent;
    try {
      process.kill(obs.pid!, 'SIGSTOP');
      const { stdout } = await run(ns(vms, [floodSender(), 'q0', '--duration', '0.5']), { timeoutMs: 10_000 });
      flood = JSON.parse(stdout.trim()) as Sent;
    } finally {
      process.kill(obs.pid!, 'SIGCONT');
    }
    await sleep(50);
    const s = (await obs.stop()).p0!;
    const d = statsDelta(before, await readLinkStats(lab.ns.host), ['p0']);
    // A 1 MB ring (8 blocks) holds ~9,000 small frames; the flood sends tens of thousands or more.
    expect(flood.sent).toBeGreaterThan(20_000);
    expect(s.drops!).toBeGreaterThan(0);
    expect(s.frames + s.drops! + s.afterEnd).toBe(d.p0!.rx);
    expect(countAt(s, Infinity)).toBe(s.frames);
    const inFlood = (s.dropWindows ?? []).filter(([a, b]) => b >= flood.t_first_ns && a <= flood.t_last_ns + 50 * MS);
    expect(inFlood.reduce((n, w) => n + w[2], 0)).toBe(s.drops);
  });
});
