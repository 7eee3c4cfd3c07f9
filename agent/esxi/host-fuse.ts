// Pure: what one ESXi host's fuse is armed with, and what its reports mean to the agent. The plan
// is made from what the agent already knows (policy, inventory, the ports it streams); a cut the
// fuse made becomes the ActionResult the agent's own vnic-disconnect would have given, so the
// breaker journals it as a trip and a restore reconnects it exactly as after the agent's own cut.
import type { ActionResult, EsxiHostPolicy, Evidence, Policy, Thresholds } from '../types.js';
import type { EsxInventory } from './inventory.js';
import type { EsxPort } from './ports.js';
import type { StreamItem } from './stream.js';
import { bridgingNics } from './l2.js';
import { esxiHostThresholds } from '../policy/match.js';
import { buildFusePlan, type FusePlan, type FuseVnic } from './fuse/plan.js';
import type { FuseCut } from './fuse/lines.js';

/** The fuse's hold: as the agent's own (holdSamples), at least two samples: one sample never trips. */
export const fuseHold = (t: Pick<Thresholds, 'holdSamples'>): number => Math.min(50, Math.max(2, t.holdSamples));

/**
 * At rest the fuse sends its samples in one write per FUSE_BATCH_MS (every sample still reaches
 * the agent and feeds its rates): the agent's ssh, event loop and detector wake ~10 times a second
 * instead of once per sample. A sample at or over the falling edges below leaves at once, so a
 * storm's first hot sample is not held back. Bounded by staleMs / 4 (a batch is never "late").
 */
export const FUSE_BATCH_MS = 100;

/**
 * While a storm may be starting (an item warm, a port's hold running) the fuse samples every
 * FUSE_BURST_MS instead of fuseSampleMs (fuse v5): its `hold` hot samples then take 10 ms, not 30.
 * At rest nothing is warm: the rest period and its cost are unchanged.
 */
export const FUSE_BURST_MS = 5;

/** Who the journal names for a cut the fuse made on `host`. */
export const fuseBy = (host: string): string => `fuse@${host}`;

/**
 * The plan for the items the session streams (their order is the fuse's sample order). Throws
 * when no plan can be made (the shell loop streams instead, and status says why).
 */
export function fusePlanFor(policy: Policy, host: EsxiHostPolicy, inv: EsxInventory | null, ports: readonly EsxPort[], items: readonly StreamItem[]): FusePlan {
  if (!inv) throw new Error('no inventory read yet');
  const byId = new Map(ports.filter((p) => p.kind === 'port').map((p) => [p.id, p]));
  // A VM one of whose vNICs is watched as its guest's peer can bridge through the switch (ports.ts).
  const peerVms = new Set(ports.filter((p) => p.watched === 'guest-peer').map((p) => p.vm));
  const vnics: FuseVnic[] = [];
  for (const it of items) {
    if (it.kind !== 'port') continue;
    const p = byId.get(it.id);
    if (!p) throw new Error(`port ${it.id} streamed but not watched`);
    const vm = inv.vms.find((v) => v.name === p.vm);
    const nic = vm?.nics.find((n) => n.mac === p.mac);
    const vmid = vm?.vmid && /^\d{1,9}$/.test(vm.vmid) ? Number(vm.vmid) : null;
    vnics.push({
      port: p.name,
      portId: it.id,
      portset: nic?.vswitch ?? (p.bridge ?? '').slice(host.name.length + 1),
      portgroup: p.portgroup ?? '',
      vmid,
      key: nic?.deviceKey ?? null,
      bridgingVm: vm ? bridgingNics(inv, vm).length > 0 || peerVms.has(vm.name) : false,
    });
  }
  const t = esxiHostThresholds(policy, host);
  const r = buildFusePlan({
    sampleMs: host.fuseSampleMs,
    leaseMs: host.fuseLeaseMs,
    pps: t.floodPps,
    hold: fuseHold(t),
    minHotPorts: 2,
    // Time for a cut to show in the counters before the next one (the cut itself is awaited).
    settleMs: Math.max(100, 10 * host.fuseSampleMs),
    // The fuse cuts vNICs only: a host whose policy does not allow that gets a fuse that reports.
    budget: host.actions.includes('vnic-disconnect') ? host.fuseBudget : 0,
    dryRun: host.fuse === 'stream' || policy.dryRun,
    batchMs: Math.min(FUSE_BATCH_MS, Math.floor(host.staleMs / 4)),
    burstMs: Math.min(FUSE_BURST_MS, host.fuseSampleMs),
    ...warmRates(t, ports),
    vmnics: items.filter((i) => i.kind === 'nic').map((i) => i.id),
    vnics,
    vmkPortIds: [],
    protectedPortgroups: host.protectedPortgroups,
  });
  if (!r.ok) throw new Error(r.error);
  return r.plan;
}

/**
 * The lowest falling edges of the host's watched ports (its thresholds where a port has none): a
 * port at these rates is one the detector may be about to judge, so such a sample is not batched.
 * For total rx (drivers without a broadcast counter) the edge is rxPps scaled as clearPps is.
 */
export function warmRates(host: Thresholds, ports: readonly EsxPort[]): { warmPps: number; warmRxPps: number } {
  let warmPps = host.clearPps;
  let warmRxPps = (host.rxPps * host.clearPps) / host.floodPps;
  for (const p of ports) {
    const t = p.policy.thresholds;
    warmPps = Math.min(warmPps, t.clearPps);
    warmRxPps = Math.min(warmRxPps, (t.rxPps * t.clearPps) / t.floodPps);
  }
  return { warmPps: Math.max(1, warmPps), warmRxPps: Math.max(1, Math.round(warmRxPps)) };
}

/** What the agent saw of a fuse's cut, for the journal and `why`: the fuse judged on the host. */
export interface FuseSeen {
  /** Monotonic ns when the agent heard of the cut, less the cut call's time: when the fuse decided, if the report was not delayed. */
  tNs: number;
  policyHash: string;
  /** The plan's signature: rate and consecutive samples. */
  pps: number;
  hold: number;
  /** The agent's last rates of the hot ports (names), when it had them. */
  window: Evidence['window'];
  /** Hot port IDs as the agent names them. */
  hotNames: string[];
}

/**
 * A cut the fuse made, as the result of the agent's own vnic-disconnect (null: not a cut, or not
 * a port of this host). `target` is what a restore needs: `<vm> key <device key>`.
 */
export function fuseCutResult(host: string, cut: FuseCut, replayed: boolean, inv: EsxInventory | null, seen?: FuseSeen): ActionResult | null {
  if (cut.outcome !== 'cut' || !cut.port.startsWith(`${host}/vnic-`) || !cut.argv) return null;
  const [, , vmid, key] = cut.argv;
  const vm = inv?.vms.find((v) => v.vmid === vmid)?.name ?? inv?.vimVms?.find((v) => v.vmid === vmid)?.name;
  return {
    kind: 'link-down',
    port: cut.port,
    ok: true,
    via: 'esxi-fuse',
    argv: [...cut.argv],
    durationMs: cut.ms ?? 0,
    attempts: 1,
    // The fuse checked the command's exit status; the agent reads the vNIC's state at its next
    // inventory refresh, which it makes at once.
    verified: false,
    esxi: { host, action: 'vnic-disconnect', target: `${vm ?? `vmid ${vmid}`} key ${key}` },
    origin: {
      by: fuseBy(host),
      id: cut.id,
      reason: `cut by the fuse on ${host}${cut.hot.length ? ` (hot ports ${cut.hot.join(', ')})` : ''}${replayed ? ', while the agent was not connected' : ''}`,
      fuse: { instance: cut.instance, version: cut.version, hostTimeUs: cut.tUs, wallMs: cut.wallMs },
      ...(seen ? { evidence: fuseEvidence(host, cut, replayed, seen) } : {}),
    },
  };
}

/**
 * The cut of a fuse that ended between its `cutting` and its result (replayed by the next fuse,
 * fuse v6), as a trip: only for a vNIC the host's inventory shows disconnected (the caller checks).
 */
export function fuseEndedMidCut(host: string, cut: FuseCut, inv: EsxInventory | null, seen?: FuseSeen): ActionResult | null {
  const r = fuseCutResult(host, { ...cut, outcome: 'cut' }, true, inv, seen);
  if (!r?.origin) return r;
  const reason = `cut by the fuse on ${host}${cut.hot.length ? ` (hot ports ${cut.hot.join(', ')})` : ''}, which ended before its call's result; the host shows the vNIC disconnected`;
  return { ...r, durationMs: 0, origin: { ...r.origin, reason } };
}

function fuseEvidence(host: string, cut: FuseCut, replayed: boolean, s: FuseSeen): Evidence {
  const hot = s.hotNames.length ? s.hotNames.join(', ') : cut.hot.join(', ');
  return {
    tNs: s.tNs,
    window: s.window,
    thresholds: { pps: s.pps, holdSamples: s.hold, minHotPorts: 2 },
    clues: [
      `judged on ${host} by its fuse: ${hot} each received >= ${s.pps} broadcast+multicast frames/s for ${s.hold} samples in a row`,
      replayed ? 'reported when the agent reconnected: the cut was made while the agent could not hear the host' : `the cut call took ${cut.ms ?? '?'} ms on the host${cut.spawnMs !== undefined ? ` (${cut.spawnMs} ms of it starting it)` : ''}`,
    ],
    rule: -1,
    policyHash: s.policyHash,
  };
}

/** One line for a report that is not a cut (refused, dry-run, failed), for the journal. */
export function fuseReportReason(host: string, cut: FuseCut): string {
  switch (cut.outcome) {
    case 'refused':
      return `the fuse on ${host} refused to cut ${cut.port}: ${cut.why ?? 'no reason given'}`;
    case 'dry-run':
      return `the fuse on ${host} would cut ${cut.port} (dry run; hot ports ${cut.hot.join(', ')})`;
    case 'cutting':
      return `the fuse on ${host} started cutting ${cut.port} and ended before its result; the host showed the vNIC connected when the agent reconnected: nothing tripped`;
    case 'failed':
      return `the fuse on ${host} failed to cut ${cut.port}: exit ${String(cut.rc)} after ${String(cut.ms)} ms`;
    default:
      return `the fuse on ${host} cut ${cut.port}`;
  }
}
