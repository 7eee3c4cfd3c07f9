// Active loop probe: one uniquely tagged broadcast out of every watched port, then watch where
// they come back. The I/O edge of the preflight; the meaning of arrivals is analyze.ts (pure).
//
// Order of events, and why it is safe:
//   1. open the tap: one AF_PACKET socket, ETH_P_ALL on every interface, BPF accepting only
//      incoming frames of the probe ethertype (native/packet_stats.c probeOpen);
//   2. install `table netdev stormbreaker_probe` (nft.ts): every interface of the namespace
//      drops probe-ethertype frames at ingress; if nft fails, nothing is sent;
//   3. send one 60-byte probe per port, all at once (a few µs each), then collect;
//   4. keep the drop rule until no probe frame has arrived for quietMs, then delete the table
//      (finally), close the tap (finally).
//
// Checked on this kernel (6.18) in the esx lab, not just read in dev.c: with the drop rule on
// vmA2, a probe sent on vmA1 came back through the guest's bridge and was (a) received by the
// ETH_P_ALL tap on vmA2 (pkt_type BROADCAST), (b) counted once by the nft drop rule, and (c) not
// forwarded by the bridge (tx_packets of the other bridge ports unchanged). A socket bound to the
// probe ethertype itself on vmA2 received nothing: protocol-specific handlers (ptype_base) run
// after the ingress hook and the bridge's rx_handler, which is why the tap must be ETH_P_ALL.
// That is the order in __netif_receive_skb_core: ptype_all taps -> tc ingress -> nft netdev
// ingress -> rx_handler (bridge) -> ptype_base.
//
// What the probe cannot protect: a loop that does not come back through any interface of this
// namespace (entirely in the switches beyond) would carry our one frame around like any other
// broadcast the host sends at go-live; we report it if it reaches us again (loop-beyond-port).
import { readFileSync } from 'node:fs';
import { listInterfaces, isAdminUp } from '../host/interfaces.js';
import { resolvePorts } from '../policy/match.js';
import { loadPacketAddon } from '../sources/packet.js';
import type { Policy } from '../types.js';
import { analyzeProbe, tallyArrivals, type Arrival, type ProbePortInfo, type SentProbe } from './analyze.js';
import type { CheckReport } from './findings.js';
import { buildProbeFrame, newNonce, parseProbeFrame, PROBE_ETHERTYPE, randomProbeMac } from './frame.js';
import { toPortState } from './netstate.js';
import { onInterrupt } from './interrupt.js';
import { installProbeTable, removeProbeTable, removeProbeTableSync, runNft, type NftRunner } from './nft.js';

/** The probe's part of the native addon (build/Release/packet_stats.node). */
export interface ProbeAddon {
  probeOpen(ethertype: number, rcvbufBytes: number): number;
  probeSend(fd: number, ifindex: number, frame: Buffer): number;
  probeRecv(fd: number, max: number): Array<{ ifindex: number; pktType: number; frame: Buffer }>;
  /** Frames the tap's filter matched since open (received or dropped for lack of buffer). */
  read(fd: number): number;
  close(fd: number): void;
}

export class PreflightError extends Error {
  constructor(
    readonly code: 'E_PROBE_UNAVAILABLE' | 'E_PROBE_NFT' | 'E_PROBE_CLEANUP' | 'E_GUARD',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PreflightError';
  }
}

export function loadProbeAddon(): ProbeAddon {
  const a = loadPacketAddon();
  if ('error' in a) throw new PreflightError('E_PROBE_UNAVAILABLE', `loop probe unavailable: ${a.error} (npm run build:native)`);
  const p = a as unknown as Partial<ProbeAddon>;
  if (typeof p.probeOpen !== 'function' || typeof p.probeSend !== 'function' || typeof p.probeRecv !== 'function') {
    throw new PreflightError('E_PROBE_UNAVAILABLE', 'loop probe unavailable: the native addon predates probeOpen/probeSend/probeRecv (npm run build:native)');
  }
  return p as ProbeAddon;
}

export interface HostPort extends ProbePortInfo {
  adminUp: boolean;
  operUp: boolean;
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Every interface of this namespace but lo, with bridge, STP state, admin/oper state and role. */
export function readHostPorts(policy: Policy, root = '/sys/class/net'): HostPort[] {
  const infos = listInterfaces(root).filter((i) => i.name !== 'lo');
  const roles = resolvePorts(policy, infos.map((i) => i.name));
  return infos.map((i) => {
    const state = readTrim(`${root}/${i.name}/brport/state`);
    const oper = readTrim(`${root}/${i.name}/operstate`);
    const carrier = readTrim(`${root}/${i.name}/carrier`);
    return {
      name: i.name,
      ifindex: i.ifindex,
      bridge: i.bridge,
      portState: state === null ? null : toPortState(Number(state)),
      watched: roles.has(i.name),
      role: roles.get(i.name)?.role ?? null,
      adminUp: isAdminUp(i.name, root) === true,
      // carrier reads EINVAL while the link is admin-down; "unknown" operstate is a driver without carrier reporting.
      operUp: carrier === '1' && oper !== 'down' && oper !== 'lowerlayerdown',
    };
  });
}

export interface CollectOptions {
  /** Collect at least this long after the last probe left. */
  windowMs: number;
  /** ...and until no probe frame has arrived for this long. */
  quietMs: number;
  /** Hard stop after the last send, even if frames keep arriving (a loop beyond the host). */
  maxMs: number;
  pollMs: number;
}

export const DEFAULT_COLLECT: CollectOptions = { windowMs: 200, quietMs: 100, maxMs: 1500, pollMs: 5 };

export interface CollectResult {
  sent: SentProbe[];
  /** Ports a send failed on (errno code), e.g. ENETDOWN. */
  sendErrors: Array<{ port: string; code: string }>;
  arrivals: Arrival[];
  framesSeen: number;
  /** Frames the tap matched but could not queue (receive buffer full): a sign of a storm. */
  tapDrops: number;
  sendMs: number;
  collectMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nowMs = (): number => performance.now();
const RCVBUF = 8 << 20;

/** Open the tap. Before nft and before any send, so no arrival can be missed. */
export function openTap(addon: ProbeAddon): number {
  try {
    return addon.probeOpen(PROBE_ETHERTYPE, RCVBUF);
  } catch (err) {
    throw new PreflightError('E_PROBE_UNAVAILABLE', `cannot open the probe tap: ${(err as Error).message}`, { cause: err });
  }
}

/** Send one probe out of each of `from`, then collect arrivals on every interface. */
export async function sendAndCollect(
  addon: ProbeAddon,
  fd: number,
  ports: readonly HostPort[],
  from: readonly string[],
  opts: CollectOptions = DEFAULT_COLLECT,
): Promise<CollectResult> {
  const byIndex = new Map(ports.map((p) => [p.ifindex, p.name]));
  const byName = new Map(ports.map((p) => [p.name, p]));
  const src = randomProbeMac();
  const sent: SentProbe[] = [];
  const sendErrors: CollectResult['sendErrors'] = [];
  const frames: Array<{ nonce: string; port: string }> = [];
  const matched0 = addon.read(fd);

  const drain = (): number => {
    let n = 0;
    for (;;) {
      const got = addon.probeRecv(fd, 4096);
      for (const g of got) {
        const nonce = parseProbeFrame(g.frame);
        if (nonce === null) continue;
        frames.push({ nonce, port: byIndex.get(g.ifindex) ?? `if#${g.ifindex}` });
        n++;
      }
      if (got.length < 4096) return n;
    }
  };

  const t0 = nowMs();
  for (const name of from) {
    const p = byName.get(name);
    if (!p) {
      sendErrors.push({ port: name, code: 'ENODEV' });
      continue;
    }
    const nonce = newNonce();
    try {
      addon.probeSend(fd, p.ifindex, buildProbeFrame(src, nonce));
      sent.push({ port: name, nonce: nonce.toString('hex') });
    } catch (err) {
      sendErrors.push({ port: name, code: String((err as NodeJS.ErrnoException).code ?? 'EIO') });
    }
  }
  const tSent = nowMs();
  let lastSeen = tSent;
  for (;;) {
    if (drain() > 0) lastSeen = nowMs();
    const t = nowMs();
    if (t - tSent >= opts.maxMs) break;
    if (t - tSent >= opts.windowMs && t - lastSeen >= opts.quietMs) break;
    await sleep(opts.pollMs);
  }
  drain();
  const matched = addon.read(fd) - matched0;
  return {
    sent,
    sendErrors,
    arrivals: tallyArrivals(frames),
    framesSeen: frames.length,
    tapDrops: Math.max(0, matched - frames.length),
    sendMs: tSent - t0,
    collectMs: nowMs() - tSent,
  };
}

export interface ProbeOptions {
  policy: Policy;
  /** Send only from these ports (default: every watched port that is up with carrier). */
  from?: readonly string[];
  collect?: Partial<CollectOptions>;
  addon?: ProbeAddon;
  nft?: NftRunner;
  sysRoot?: string;
}

export interface ProbeRun {
  report: CheckReport;
  ports: HostPort[];
  result: CollectResult | null;
  /** X -> Y reachability seen (analyze.ts); empty when nothing was probed. */
  paths: Array<{ from: string; to: string; count: number }>;
}

/**
 * The whole probe: tap, drop table, send, collect, cleanup, analysis. Throws PreflightError when
 * it cannot run safely (no addon, nft refused the table): then nothing was sent.
 */
export async function runProbe(opts: ProbeOptions): Promise<ProbeRun> {
  const t0 = nowMs();
  const ports = readHostPorts(opts.policy, opts.sysRoot);
  const watched = ports.filter((p) => p.watched);
  const notes: string[] = [];
  const from = opts.from ? [...opts.from] : watched.filter((p) => p.adminUp && p.operUp).map((p) => p.name);
  for (const p of watched) {
    if (from.includes(p.name)) continue;
    notes.push(`${p.name} is ${!p.adminUp ? 'down' : 'up without carrier'}: not probed (guard-up checks a port before it comes up)`);
  }
  if (from.length === 0) {
    notes.push('no watched port is up: nothing to probe');
    return { report: { findings: [], notes, stats: { probe: { framesSent: 0, totalMs: nowMs() - t0 } } }, ports, result: null, paths: [] };
  }
  const addon = opts.addon ?? loadProbeAddon();
  const nft = opts.nft ?? runNft;
  const collect = { ...DEFAULT_COLLECT, ...opts.collect };
  const fd = openTap(addon);
  let result: CollectResult;
  const timing: Record<string, number> = {};
  // Only a table we created is ours to delete (a busy one belongs to another run).
  let installed = false;
  const release = onInterrupt(() => {
    if (installed) removeProbeTableSync();
  });
  try {
    const tNft = nowMs();
    try {
      await installProbeTable({ dropProbeOn: ports.map((p) => p.name) }, nft);
      installed = true;
    } catch (err) {
      throw new PreflightError('E_PROBE_NFT', `cannot install the probe's drop rule, so no probe was sent: ${(err as Error).message}`, { cause: err });
    }
    timing.nftInstallMs = nowMs() - tNft;
    try {
      result = await sendAndCollect(addon, fd, ports, from, collect);
    } finally {
      const tRm = nowMs();
      try {
        await removeProbeTable(nft);
        installed = false;
      } catch (err) {
        // Left behind, it only drops our own ethertype, but the next run refuses until it is gone.
        throw new PreflightError('E_PROBE_CLEANUP', `could not delete table netdev stormbreaker_probe (nft delete table netdev stormbreaker_probe): ${(err as Error).message}`, { cause: err });
      }
      timing.nftRemoveMs = nowMs() - tRm;
    }
  } finally {
    release();
    addon.close(fd);
  }
  for (const e of result.sendErrors) notes.push(`sending the probe on ${e.port} failed (${e.code}): not probed`);
  const analysis = analyzeProbe(ports, result.sent, result.arrivals);
  if (analysis.foreign > 0) notes.push(`${analysis.foreign} probe frame(s) from another run or host were seen and ignored`);
  if (result.tapDrops > 0) notes.push(`the tap dropped ${result.tapDrops} probe frame(s) for lack of buffer: probe frames are circling somewhere`);
  return {
    report: {
      findings: analysis.findings,
      notes: [...notes, ...analysis.notes],
      stats: {
        probe: {
          portsProbed: result.sent.length,
          framesSent: result.sent.length,
          framesSeen: result.framesSeen,
          tapDrops: result.tapDrops,
          paths: analysis.paths,
          sendMs: round(result.sendMs),
          collectMs: round(result.collectMs),
          nftInstallMs: round(timing.nftInstallMs ?? 0),
          nftRemoveMs: round(timing.nftRemoveMs ?? 0),
          totalMs: round(nowMs() - t0),
        },
      },
    },
    ports,
    result,
    paths: analysis.paths,
  };
}

const round = (x: number): number => Math.round(x * 100) / 100;
