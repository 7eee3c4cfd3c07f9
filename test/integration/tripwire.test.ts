import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The native tripwire against real frames in a namespace: it wakes the JS thread once per arm,
// on the first burst of minFrames frames within windowNs, and never for frames slower than that
// (ordinary broadcast chatter costs the agent's thread nothing). Its evidence (the frames a trip
// saves) holds a storm's first frames, also when the storm was cut before it froze by rate.
//
//   q0 ==veth== p0        (inside NS, IPv6 off, no addresses; frames sent on q0 arrive on p0)

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ADDON = join(ROOT, 'build/Release/packet_stats.node');
const SENDER = join(ROOT, 'test/helpers/send-frames.py');
const PROBE = join(ROOT, 'test/helpers/tripwire-probe.mjs');
const NS = `sbn-ttw${process.pid % 100000}`;

const run = promisify(execFile);
const sh = (file: string, ...args: string[]) => run(file, args, { timeout: 20_000 });
const nsx = (...argv: string[]) => sh('ip', 'netns', 'exec', NS, ...argv);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply {
  ok: boolean;
  fired?: number;
  moves?: Array<number | string> | 'none';
  watched?: number;
  frozen?: boolean;
  onset?: Record<string, number>;
  rest?: Record<string, number>;
  error?: string;
}

class Probe {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: Array<(line: string) => void> = [];
  private readonly stderr: string[] = [];
  constructor(netns = NS, priority = 0) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, PROBE, ADDON, String(priority)], { stdio: 'pipe' });
    createInterface({ input: this.child.stdout }).on('line', (line) => this.pending.shift()?.(line));
    this.child.stderr.on('data', (d: Buffer) => this.stderr.push(d.toString()));
  }
  async send(cmd: object): Promise<Reply> {
    const line = new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`probe timeout; stderr: ${this.stderr.join('')}`)), 20_000);
      this.pending.push((l) => (clearTimeout(timer), res(l)));
    });
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const r = JSON.parse(await line) as Reply;
    if (!r.ok) throw new Error(r.error);
    return r;
  }
  async fired(): Promise<number> {
    return (await this.send({ op: 'fired' })).fired!;
  }
  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Broadcast frames out of q0: `burst` back to back, then gapMs, until n are sent. */
const send = (n: number, burst: number, gapMs: number) => nsx('python3', SENDER, 'q0', '--broadcast', String(n), '--burst', String(burst), '--gap-ms', String(gapMs));

/** Send those frames, give the thread 100 ms, and return how often it has fired so far. */
async function firedAfter(probe: Probe, n: number, burst: number, gapMs: number): Promise<number> {
  await send(n, burst, gapMs);
  await sleep(100);
  return probe.fired();
}

describe('tripwire (native thread, real frames)', () => {
  let probe: Probe | null = null;

  beforeAll(async () => {
    await sh('ip', 'netns', 'delete', NS).catch(() => undefined);
    await sh('ip', 'netns', 'add', NS);
    await nsx('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    await nsx('ip', 'link', 'add', 'q0', 'type', 'veth', 'peer', 'name', 'p0');
    await nsx('ip', 'link', 'set', 'q0', 'up');
    await nsx('ip', 'link', 'set', 'p0', 'up');
    probe = new Probe();
    await probe.fired(); // started
  }, 30_000);

  afterAll(async () => {
    if (probe) await probe.send({ op: 'close' }).catch(() => probe?.kill());
    await sh('ip', 'netns', 'delete', NS).catch(() => undefined);
  });

  it('does not fire for frames slower than the burst asks (chatter), however many', async () => {
    await probe!.send({ op: 'arm', minFrames: 5, windowNs: 1e6 });
    // One frame every 15 ms: 4 frames per 60 ms, never 5 within 1 ms.
    expect(await firedAfter(probe!, 12, 1, 15)).toBe(0);
  });

  it('fires once on the first burst of minFrames within windowNs, then stays quiet until armed again', async () => {
    await probe!.send({ op: 'arm', minFrames: 5, windowNs: 1e6 });
    expect(await firedAfter(probe!, 40, 40, 0)).toBe(1);
    expect(await firedAfter(probe!, 40, 40, 0)).toBe(1);
    await probe!.send({ op: 'arm', minFrames: 5, windowNs: 1e6 });
    expect(await firedAfter(probe!, 40, 40, 0)).toBe(2);
  });

  it('armed for one frame, the first frame fires', async () => {
    await probe!.send({ op: 'arm', minFrames: 1, windowNs: 0 });
    expect(await firedAfter(probe!, 1, 1, 0)).toBe(3);
  });

  it('reports a source MAC arriving on another interface than its last frame (a move), once per change, with its time', async () => {
    // q1 ==veth== p1 with q1 given q0's address: frames from q1 arrive on p1 from the same MAC.
    const mac = (await nsx('cat', '/sys/class/net/q0/address')).stdout.trim();
    await nsx('ip', 'link', 'add', 'q1', 'type', 'veth', 'peer', 'name', 'p1');
    await nsx('ip', 'link', 'set', 'q1', 'address', mac);
    await nsx('ip', 'link', 'set', 'q1', 'up');
    await nsx('ip', 'link', 'set', 'p1', 'up');
    const ifindex = async (dev: string) => Number((await nsx('cat', `/sys/class/net/${dev}/ifindex`)).stdout.trim());
    const [p0, p1] = [await ifindex('p0'), await ifindex('p1')];
    await probe!.send({ op: 'moves' }); // whatever came before
    const before = Number(process.hrtime.bigint());
    await nsx('python3', SENDER, 'q1', '--broadcast', '3', '--burst', '1', '--gap-ms', '2');
    await nsx('python3', SENDER, 'q1', '--broadcast', '2', '--burst', '1', '--gap-ms', '2');
    await nsx('python3', SENDER, 'q0', '--broadcast', '2', '--burst', '1', '--gap-ms', '2');
    await sleep(50);
    const moves = (await probe!.send({ op: 'moves' })).moves as Array<number | string>;
    // p0 (its last frames, from the tests above) -> p1 -> p0: two moves, not one per frame.
    expect(moves.filter((_, i) => i % 3 !== 0)).toEqual([p1, mac, p0, mac]);
    const t = moves.filter((_, i) => i % 3 === 0) as number[];
    expect(t[0]!).toBeGreaterThan(before);
    expect(t[1]!).toBeGreaterThan(t[0]!);
    expect(t[1]!).toBeLessThan(Number(process.hrtime.bigint()));
    expect((await probe!.send({ op: 'moves' })).moves).toBe('none'); // undefined when none: no array per tick
  });

  it('a trip holds the evidence as it is: a storm cut before its rate froze the head keeps its frames when a burst floods after the cut', async () => {
    // q2 ==veth== p2: the burst without a hold; q4 ==veth== p4: the burst after the hold; both told
    // apart from the storm's frames (from q0) by interface. q3 ==veth== p3: a frame every 20 ms
    // throughout (chatter), so that the sender's start between storm and burst is no 100 ms
    // silence (which ends a flood: tripwire_ring.h).
    for (const [q, p] of [['q2', 'p2'], ['q3', 'p3'], ['q4', 'p4']] as const) {
      await nsx('ip', 'link', 'add', q, 'type', 'veth', 'peer', 'name', p);
      await nsx('ip', 'link', 'set', q, 'up');
      await nsx('ip', 'link', 'set', p, 'up');
    }
    const chatter = nsx('python3', SENDER, 'q3', '--broadcast', '300', '--burst', '1', '--gap-ms', '20'); // ~6 s: past the whole case
    await sleep(300); // its python is up
    const ifindex = async (dev: string) => String((await nsx('cat', `/sys/class/net/${dev}/ifindex`)).stdout.trim());
    const [p0, p2, p4] = [await ifindex('p0'), await ifindex('p2'), await ifindex('p4')];
    await probe!.send({ op: 'frames' }); // whatever came before
    const storm = () => nsx('python3', SENDER, 'q0', '--broadcast', '60', '--burst', '1', '--gap-ms', '2'); // ~500/s: never freezes the head
    const burst = (q: string) => nsx('python3', SENDER, q, '--broadcast', '3000', '--burst', '10', '--gap-ms', '1'); // ~10k/s for ~0.3 s
    // Without a hold (the old capture, taken up to 60 ms after the trip): the burst rolled the
    // storm's frames out of the head (and froze it by its rate where the reader kept up with it:
    // not always with a core busy, a clean-clone run read too few within 50 ms).
    await storm();
    await burst('q2');
    await sleep(50);
    const old = await probe!.send({ op: 'frames' });
    expect((old.onset![p0] ?? 0) + (old.rest![p0] ?? 0)).toBe(0);
    expect((old.onset![p2] ?? 0) + (old.rest![p2] ?? 0)).toBeGreaterThanOrEqual(200);
    // Held at the trip: the storm's frames are the onset, the burst after it goes to the tail.
    // Frames from before the storm may share the onset: where the first burst's rate did not
    // freeze the head, or the flood ended before that capture (no trip took it), the head rolled
    // on and a take does not empty a rolling head (session 19's flaky failure: 167-180 of p2's
    // frames in the held onset, reproduced every time with 300 ms before that take).
    await storm();
    expect((await probe!.send({ op: 'hold' })).frozen).toBe(true);
    await burst('q4');
    await sleep(50);
    const held = await probe!.send({ op: 'frames' });
    console.log(`[tripwire hold] by interface (storm p${p0}, bursts p${p2} p${p4}): without a hold ${JSON.stringify(old)}; held ${JSON.stringify(held)}`);
    expect(held.onset![p0]).toBeGreaterThanOrEqual(55);
    expect(held.onset![p4] ?? 0).toBe(0);
    expect(held.rest![p4]).toBeGreaterThan(0);
    await chatter;
  });
});

// The unknown-unicast watch against a real loop at CPU speed (session 19): a host bridge whose
// two uplinks learn nothing, both into one switch bridge, one unknown-unicast frame circling.
//
//   v0 ==veth== hv ─ brh ─ hp1 ==veth== sp1 ─ brs
//                      └── hp2 ==veth== sp2 ──┘      (hp1, hp2: learning off; NS2, IPv6 off)
//
// The watch must keep reporting the frame's source MAC moving between hp1 and hp2 while the loop
// runs, not only at its onset: a flap verdict needs 3 moves within 50 ms, and the agent judges
// it on the first tick that has them. Reading one frame per pause from an always-full tiny
// queue, the old thread saw the same uplink read after read (the bench's kvm-nolearn storms went
// quiet 15-124 ms late, 1-5 of 6 a run): here 2-4 moves at the onset, then gaps of tens of ms.
const NS2 = `sbn-tuw${process.pid % 100000}`;
const ns2 = (...argv: string[]) => sh('ip', 'netns', 'exec', NS2, ...argv);
/** The longest wait for a move while the loop circles: a flap's 3 moves in well under a sample burst. */
const MAX_MOVE_GAP_MS = 10;
const LOOP_MS = 300;

describe('unknown-unicast watch (native thread, a real loop through learning-off ports)', () => {
  let probe: Probe | null = null;

  beforeAll(async () => {
    await sh('ip', 'netns', 'delete', NS2).catch(() => undefined);
    await sh('ip', 'netns', 'add', NS2);
    await ns2('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    for (const br of ['brh', 'brs']) await ns2('ip', 'link', 'add', br, 'type', 'bridge', 'stp_state', '0');
    const pairs: Array<[string, string, string | null, string | null]> = [
      ['v0', 'hv', null, 'brh'],
      ['hp1', 'sp1', 'brh', 'brs'],
      ['hp2', 'sp2', 'brh', 'brs'],
    ];
    for (const [a, b, ma, mb] of pairs) {
      await ns2('ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      if (ma) await ns2('ip', 'link', 'set', a, 'master', ma);
      if (mb) await ns2('ip', 'link', 'set', b, 'master', mb);
    }
    for (const p of ['hp1', 'hp2']) await ns2('bridge', 'link', 'set', 'dev', p, 'learning', 'off');
    for (const d of ['brs', 'sp1', 'sp2', 'hp1', 'brh', 'hv', 'v0']) await ns2('ip', 'link', 'set', d, 'up');
    probe = new Probe(NS2, 10);
    await probe.fired(); // started
  }, 30_000);

  afterAll(async () => {
    await ns2('ip', 'link', 'set', 'hp2', 'down').catch(() => undefined);
    if (probe) await probe.send({ op: 'close' }).catch(() => probe?.kill());
    await sh('ip', 'netns', 'delete', NS2).catch(() => undefined);
  });

  it(`reports the circling frame's source MAC moving between the uplinks all through the loop (no gap over ${MAX_MOVE_GAP_MS} ms)`, async () => {
    const ifindex = async (dev: string) => Number((await ns2('cat', `/sys/class/net/${dev}/ifindex`)).stdout.trim());
    const [hp1, hp2] = [await ifindex('hp1'), await ifindex('hp2')];
    const mac = (await ns2('cat', '/sys/class/net/v0/address')).stdout.trim();
    expect((await probe!.send({ op: 'unicast', ifindexes: [hp1, hp2] })).watched).toBe(2);
    await ns2('ip', 'link', 'set', 'hp2', 'up'); // the loop is closed from here on
    let moves: Array<number | string>;
    try {
      // Long enough past the frame that a slow python start (over 350 ms with the machine busy:
      // 'last at 252 ms' in 2 of 7 runs with 400) still leaves LOOP_MS of loop to judge.
      const collected = probe!.send({ op: 'collect', ms: LOOP_MS + 1500 });
      await sleep(50);
      await ns2('python3', SENDER, 'v0', '--unicast', '1');
      moves = (await collected).moves as Array<number | string>;
    } finally {
      await ns2('ip', 'link', 'set', 'hp2', 'down'); // the loop opened
    }
    // The circling frame's moves between the uplinks (the broadcast tripwire's moves, which share
    // the ring, are any interface's; the agent keeps only moves between ports of one bridge).
    const t: number[] = [];
    const other: string[] = [];
    for (let i = 0; i + 2 < moves.length; i += 3) {
      if ((moves[i + 1] === hp1 || moves[i + 1] === hp2) && moves[i + 2] === mac) t.push(moves[i] as number);
      else other.push(`${String(moves[i + 1])}:${String(moves[i + 2])}`);
    }
    // The loop ran from the frame on; the collect ended before it was opened. Judged over its first LOOP_MS.
    expect(t.length).toBeGreaterThanOrEqual(3);
    const inLoop = t.filter((x) => x - t[0]! <= LOOP_MS * 1e6);
    let gap = 0;
    for (let i = 1; i < inLoop.length; i++) gap = Math.max(gap, inLoop[i]! - inLoop[i - 1]!);
    const last = inLoop[inLoop.length - 1]!;
    console.log(`[tripwire unicast loop] (hp1 ${hp1}, hp2 ${hp2}; other moves: ${[...new Set(other)].join(' ') || 'none'}) ${t.length} moves, ${inLoop.length} in the first ${LOOP_MS} ms, longest gap ${(gap / 1e6).toFixed(2)} ms, last at ${((last - t[0]!) / 1e6).toFixed(1)} ms`);
    expect(gap / 1e6).toBeLessThan(MAX_MOVE_GAP_MS);
    // Moves until the end of the window, not only at the onset.
    expect((last - t[0]!) / 1e6).toBeGreaterThan(LOOP_MS - MAX_MOVE_GAP_MS);
  }, 30_000);
});
