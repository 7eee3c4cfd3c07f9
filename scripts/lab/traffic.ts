// Inject frames into the lab with send.py (AF_PACKET, run inside the namespace).
import { run, ns } from './exec.js';
import { labAsset } from './assets.js';
import { assertIfName } from './names.js';
import type { Lab, LabNamespaces } from './topology.js';

export type FrameKind = 'broadcast' | 'multicast' | 'unicast' | 'arp';

export interface InjectOptions {
  /** Frames to send (<= 5,000,000). */
  count?: number;
  /** Paced rate; as fast as possible when absent. */
  pps?: number;
  /** Seconds (<= 10). */
  duration?: number;
  kind?: FrameKind;
  srcMac?: string;
  randomSrc?: boolean;
  payloadTag?: string;
}

export interface InjectResult {
  sent: number;
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
  if (o.randomSrc) a.push('--random-src');
  if (o.payloadTag) a.push('--payload-tag', o.payloadTag);
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
  const r = JSON.parse(line) as { sent: number; t_first_ns: number; t_last_ns: number };
  return { sent: r.sent, tFirstNs: r.t_first_ns, tLastNs: r.t_last_ns };
}
