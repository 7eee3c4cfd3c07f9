// Inject frames into the lab with send.py (AF_PACKET, run inside the namespace), or flood at full
// speed with the C sender (flood.c).
import { spawn } from 'node:child_process';
import { run, ns } from './exec.js';
import { labAsset, labBinary } from './assets.js';
import { assertIfName } from './names.js';
import type { Lab, LabNamespaces } from './topology.js';

/** ipv6mc: an IPv6 Neighbor Advertisement to ff02::1 (33:33:00:00:00:01), send.py only. */
export type FrameKind = 'broadcast' | 'multicast' | 'unicast' | 'arp' | 'ipv6mc';
/** What the C flood sender can send. */
export type FloodKind = Exclude<FrameKind, 'arp' | 'ipv6mc'>;

export interface InjectOptions {
  /** Frames to send (<= 5,000,000). */
  count?: number;
  /** Paced rate; as fast as possible when absent. */
  pps?: number;
  /** Seconds (<= 10). */
  duration?: number;
  kind?: FrameKind;
  srcMac?: string;
  /** kind 'unicast' only: this destination (e.g. a MAC the bridges forgot) instead of one nobody owns. */
  dstMac?: string;
  randomSrc?: boolean;
  payloadTag?: string;
  /** Frame length without FCS (60..9000; 60 when absent). */
  size?: number;
  /** An 802.1Q tag with this VLAN id. */
  vlan?: number;
  /** With pps: a live feed. Frames more than 5 ms late are dropped, never sent in a catch-up burst
   * above pps (a python stalled on a busy machine otherwise sends its backlog at full speed). */
  live?: boolean;
}

export interface InjectResult {
  sent: number;
  /** live: frames dropped as too late (absent otherwise). */
  droppedLate?: number;
  /** CLOCK_MONOTONIC ns (same clock as process.hrtime.bigint()) just before the first send. */
  tFirstNs: number;
  tLastNs: number;
}

/** Pure: send.py's argument list. */
export function sendArgs(iface: string, o: InjectOptions): string[] {
  const a = [assertIfName(iface)];
  if (o.count !== undefined) a.push('--count', String(o.count));
  if (o.pps !== undefined) a.push('--pps', String(o.pps));
  if (o.duration !== undefined) a.push('--duration', String(o.duration));
  if (o.kind) a.push('--kind', o.kind);
  if (o.srcMac) a.push('--src-mac', o.srcMac);
  if (o.dstMac) a.push('--dst-mac', o.dstMac);
  if (o.randomSrc) a.push('--random-src');
  if (o.payloadTag) a.push('--payload-tag', o.payloadTag);
  if (o.size !== undefined) a.push('--size', String(o.size));
  if (o.vlan !== undefined) a.push('--vlan', String(o.vlan));
  if (o.live) a.push('--live');
  if (o.count === undefined && o.duration === undefined) a.push('--count', '1');
  return a;
}

/**
 * Resolve a namespace given as a role ('vm1') or a full name; only namespaces of this lab are
 * accepted, so traffic cannot be aimed anywhere else.
 */
export function labNetns(lab: Pick<Lab, 'prefix'> & { ns: Partial<LabNamespaces> }, nsName: string): string {
  const byRole = (lab.ns as Record<string, string | undefined>)[nsName];
  if (byRole) return byRole;
  if (nsName.startsWith(lab.prefix) && Object.values(lab.ns).includes(nsName)) return nsName;
  throw new Error(`namespace ${JSON.stringify(nsName)} is not part of lab ${lab.prefix}`);
}

export async function inject(
  lab: Pick<Lab, 'prefix'> & { ns: Partial<LabNamespaces> },
  nsName: string,
  iface: string,
  opts: InjectOptions = {},
): Promise<InjectResult> {
  const netns = labNetns(lab, nsName);
  const seconds = Math.min(opts.duration ?? 10, 10);
  const argv = ns(netns, ['python3', labAsset('send.py'), ...sendArgs(iface, opts)]);
  const { stdout } = await run(argv, { timeoutMs: seconds * 1000 + 5000 });
  const line = stdout.trim().split('\n').pop() ?? '';
  const r = JSON.parse(line) as { sent: number; dropped_late?: number; t_first_ns: number; t_last_ns: number };
  return { sent: r.sent, droppedLate: r.dropped_late ?? 0, tFirstNs: r.t_first_ns, tLastNs: r.t_last_ns };
}

/** Path of the compiled C flood sender (scripts/lab/flood.c, built by scripts/setup.sh into dist/scripts/lab/). */
export function floodSender(): string {
  return labBinary('flood');
}

/** Pure: the flood sender's argument list (seconds <= 10; frames <= 20,000,000). */
export function floodArgs(iface: string, o: { duration: number; count?: number; kind?: FloodKind }): string[] {
  if (!(o.duration > 0 && o.duration <= 10)) throw new Error(`flood duration must be in (0, 10] s, got ${o.duration}`);
  const a = [assertIfName(iface), '--duration', String(o.duration)];
  if (o.count !== undefined) a.push('--count', String(o.count));
  if (o.kind) a.push('--kind', o.kind);
  return a;
}

/**
 * A full-speed flood from `iface` in a namespace of the lab (the C sender: sendmmsg on an
 * AF_PACKET socket, hundreds of kframes/s where send.py reaches ~55-70k). Killed after its
 * duration + 5 s whatever happens; the sender also stops itself at its deadline.
 */
export async function flood(
  lab: Pick<Lab, 'prefix'> & { ns: Partial<LabNamespaces> },
  nsName: string,
  iface: string,
  opts: { duration: number; count?: number; kind?: FloodKind },
): Promise<InjectResult> {
  const argv = ns(labNetns(lab, nsName), [floodSender(), ...floodArgs(iface, opts)]);
  const { stdout } = await run(argv, { timeoutMs: opts.duration * 1000 + 5000 });
  const r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { sent: number; t_first_ns: number; t_last_ns: number };
  return { sent: r.sent, tFirstNs: r.t_first_ns, tLastNs: r.t_last_ns };
}

export interface ArmedInject {
  /** Send now; resolves with the result (tFirstNs: when the frame left). */
  fire(): Promise<InjectResult>;
  /** Send nothing and end the sender (every exit path of a test calls it; harmless after fire). */
  disarm(): void;
}

/**
 * A sender started ahead and waiting, socket open, for fire(): the frame leaves within a pipe
 * wake-up instead of `ip netns exec` + a python start (300-600 ms with a core busy), so a frame
 * aimed at a window (a recovery probe's probeMs) lands in it whatever the machine's load. The
 * sender is killed after timeoutMs whatever happens.
 */
export function armInject(lab: Pick<Lab, 'prefix'> & { ns: Partial<LabNamespaces> }, nsName: string, iface: string, opts: InjectOptions = {}, timeoutMs = 30_000): Promise<ArmedInject> {
  const argv = ns(labNetns(lab, nsName), ['python3', labAsset('send.py'), ...sendArgs(iface, opts), '--armed']);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let out = '';
  let err = '';
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      lines.push(out.slice(0, nl));
      out = out.slice(nl + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => child.once('close', () => (clearTimeout(killer), r(), waiters.splice(0).forEach((w) => w()))));
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`send.py --armed ended: ${err.trim() || 'no output'}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return lines.shift()!;
  };
  return nextLine().then(
    (ready) => {
      if (!(JSON.parse(ready) as { ready?: boolean }).ready) throw new Error(`send.py --armed: ${ready}`);
      return {
        async fire() {
          child.stdin.write('go\n');
          const r = JSON.parse(await nextLine()) as { sent: number; t_first_ns: number; t_last_ns: number };
          await exited;
          return { sent: r.sent, tFirstNs: r.t_first_ns, tLastNs: r.t_last_ns };
        },
        disarm() {
          child.stdin.end();
          setTimeout(() => child.kill('SIGKILL'), 2000).unref();
        },
      };
    },
    (e: unknown) => {
      child.kill('SIGKILL');
      throw e;
    },
  );
}

export type WaveMode = 'dhcp-clients' | 'dhcp-server' | 'rarp' | 'garp';

export interface WaveOptions {
  /** dhcp-clients: clients booting at once; rarp/garp: MACs announced (<= 65536). */
  n?: number;
  /** The whole wave is spread over this long. */
  spreadMs?: number;
  /** dhcp-clients: the wave again this many times, retryMs apart. */
  retries?: number;
  retryMs?: number;
  /** rarp/garp: announcements per MAC. */
  repeat?: number;
  /** dhcp-server: seconds to answer for (<= 10). */
  duration?: number;
  /** dhcp-server: send the queued OFFERs together every this many ms (a busy server's bursts). */
  batchMs?: number;
  /** dhcp-server with batchMs: a burst's rate, frames/s (absent: as fast as it can). */
  burstPps?: number;
  /** First 3 bytes of the wave's MACs (the rest is the index). */
  macPrefix?: string;
}

export interface WaveResult {
  sent?: number;
  seen?: number;
  answered?: number;
  /** dhcp-server with batchMs: bursts sent. */
  batches?: number;
  tFirstNs: number;
  tLastNs: number;
}

/** Pure: waves.py's argument list. */
export function waveArgs(iface: string, mode: WaveMode, o: WaveOptions): string[] {
  const a = [assertIfName(iface), mode];
  if (o.n !== undefined) a.push(mode === 'dhcp-clients' ? '--clients' : '--macs', String(o.n));
  if (o.spreadMs !== undefined) a.push('--spread-ms', String(o.spreadMs));
  if (o.retries !== undefined) a.push('--retries', String(o.retries));
  if (o.retryMs !== undefined) a.push('--retry-ms', String(o.retryMs));
  if (o.repeat !== undefined) a.push('--repeat', String(o.repeat));
  if (o.duration !== undefined) a.push('--duration', String(o.duration));
  if (o.batchMs !== undefined) a.push('--batch-ms', String(o.batchMs));
  if (o.burstPps !== undefined) a.push('--burst-pps', String(o.burstPps));
  if (o.macPrefix !== undefined) a.push('--mac-prefix', o.macPrefix);
  return a;
}

/** Legitimate traffic from many MACs (scripts/lab/waves.py) inside one namespace of the lab. */
export async function wave(
  lab: Pick<Lab, 'prefix'> & { ns: Partial<LabNamespaces> },
  nsName: string,
  iface: string,
  mode: WaveMode,
  opts: WaveOptions = {},
): Promise<WaveResult> {
  const netns = labNetns(lab, nsName);
  const argv = ns(netns, ['python3', labAsset('waves.py'), ...waveArgs(iface, mode, opts)]);
  const { stdout } = await run(argv, { timeoutMs: 25_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { sent?: number; seen?: number; answered?: number; batches?: number; t_first_ns: number; t_last_ns: number };
  return {
    ...(r.sent !== undefined ? { sent: r.sent } : {}),
    ...(r.seen !== undefined ? { seen: r.seen, answered: r.answered ?? 0, batches: r.batches ?? 0 } : {}),
    tFirstNs: r.t_first_ns,
    tLastNs: r.t_last_ns,
  };
}
