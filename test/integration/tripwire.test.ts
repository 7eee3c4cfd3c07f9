import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The native tripwire against real frames in a namespace: it wakes the JS thread once per arm,
// on the first burst of minFrames frames within windowNs, and never for frames slower than that
// (ordinary broadcast chatter costs the agent's thread nothing).
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

class Probe {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: Array<(line: string) => void> = [];
  private readonly stderr: string[] = [];
  constructor() {
    this.child = spawn('ip', ['netns', 'exec', NS, process.execPath, PROBE, ADDON], { stdio: 'pipe' });
    createInterface({ input: this.child.stdout }).on('line', (line) => this.pending.shift()?.(line));
    this.child.stderr.on('data', (d: Buffer) => this.stderr.push(d.toString()));
  }
  async send(cmd: object): Promise<{ ok: boolean; fired?: number; moves?: Array<number | string> | 'none'; error?: string }> {
    const line = new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`probe timeout; stderr: ${this.stderr.join('')}`)), 10_000);
      this.pending.push((l) => (clearTimeout(timer), res(l)));
    });
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const r = JSON.parse(await line) as { ok: boolean; fired?: number; moves?: Array<number | string> | 'none'; error?: string };
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
});
