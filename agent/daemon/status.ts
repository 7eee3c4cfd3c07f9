import type { JournalEvent, PortInfo, Policy, PortPolicy, PortRates } from '../types.js';
import type { StatusAnswer, PortStatusRow } from '../control/protocol.js';
import { portStates, type BreakerState } from '../breaker/state.js';
import type { EsxHost } from '../esxi/host.js';
import type { LocalSource } from '../sources/local.js';
import type { SchedulerStats } from './scheduler.js';
import type { PolicyInForce } from './reload.js';
import type { Reachability } from './reachability.js';
import type { JournalHealth } from '../journal/journal.js';

// The answer to `status`, built on request from what each part keeps (never on the hot path).

export interface StatusDeps {
  policy: PolicyInForce;
  scheduler: Readonly<SchedulerStats>;
  now(): number;
  sourceIds(): string[];
  broadcastCounting: boolean;
  reachability: Pick<Reachability, 'status'>;
  local: Pick<LocalSource, 'infos' | 'lastRates'>;
  esxHosts: readonly EsxHost[];
  ports(): ReadonlyMap<string, PortPolicy>;
  breaker(): BreakerState;
  recent(): readonly JournalEvent[];
  journal(): JournalHealth;
}

export function buildStatus(d: StatusDeps): StatusAnswer {
  const policy: Policy = d.policy.current();
  const pstates = portStates(d.breaker());
  const byPort = new Map(pstates.map((p) => [p.port, p] as const));
  // Each port's latest event, in one pass (the events are oldest first).
  const lastEventOf = new Map(d.recent().map((e) => [e.port, e.event] as const));
  const ports = d.ports();
  const s = d.scheduler;
  const row = (p: PortInfo): PortStatusRow => {
    const pp = ports.get(p.name);
    const st = byPort.get(p.name);
    const r = d.local.lastRates(p.name) ?? esxShown(d.esxHosts, p.name);
    if (pp?.observed) return { port: p.name, bridge: p.bridge, role: undefined, protected: undefined, state: 'forwarding', observed: true, ...rates(r), lastEvent: null };
    return {
      port: p.name,
      bridge: p.bridge,
      role: pp?.role,
      protected: pp?.protected,
      state: st?.state ?? 'forwarding',
      ...(st?.untilMs !== undefined ? { heldUntil: new Date(st.untilMs).toISOString() } : {}),
      ...(st?.recoveryTries !== undefined ? { recoveryTries: st.recoveryTries } : {}),
      ...rates(r),
      lastEvent: lastEventOf.get(p.name) ?? null,
    };
  };
  return {
    policy: { file: policy.file, hash: policy.hash, dryRun: policy.dryRun, ...d.policy.info() },
    health: {
      ticks: s.ticks,
      ticksPerSec: Math.round(s.ticksPerSec * 10) / 10,
      periodMs: s.periodMs,
      lastTickAgeMs: (d.now() - s.lastTickAt) / 1e6,
      maxLagMs: s.maxLagMs,
      lateTicks: s.lateTicks,
      sources: d.sourceIds(),
      broadcastCounting: d.broadcastCounting,
      reachability: d.reachability.status(),
      journal: journalStatus(d.journal()),
      stalls: { count: s.stalls, longestMs: Math.round(s.longestStallMs) },
    },
    ...(d.esxHosts.length > 0 ? { esxi: d.esxHosts.map((h) => h.status()) } : {}),
    ports: [...d.local.infos(), ...esxiInfos(d.esxHosts)].map(row),
  };
}

function rates(r: Pick<PortRates, 'rxPps' | 'txPps' | 'floodPps' | 'valid'> | undefined): Pick<PortStatusRow, 'rxPps' | 'floodPps' | 'txPps'> {
  return {
    rxPps: r && r.valid ? Math.round(r.rxPps) : null,
    floodPps: r && r.valid && Number.isFinite(r.floodPps) ? Math.round(r.floodPps) : null,
    txPps: r && r.valid ? Math.round(r.txPps) : null,
  };
}

function journalStatus(h: JournalHealth): StatusAnswer['health']['journal'] {
  return { state: h.failing ? 'failing' : 'ok', error: h.error, since: h.since, pending: h.pending, dropped: h.dropped };
}

/** An ESXi port's last valid rates, in the shape status reads (valid: they were, when measured). */
function esxShown(hosts: readonly EsxHost[], port: string): Pick<PortRates, 'rxPps' | 'txPps' | 'floodPps' | 'valid'> | undefined {
  for (const h of hosts) {
    if (!h.ports().has(port) && !h.shownRates().has(port)) continue;
    const r = h.live() ? h.shownRates().get(port) : undefined; // a stale host shows no rates, not old ones
    return r ? { ...r, valid: true } : undefined;
  }
  return undefined;
}

/** ESXi ports in the shape of local ones, for status (bridge = `<host>/<vSwitch>`). */
function esxiInfos(hosts: readonly EsxHost[]): PortInfo[] {
  const out: PortInfo[] = [];
  for (const h of hosts) for (const r of h.rates()) out.push({ name: r.port, ifindex: 0, bridge: r.bridge });
  for (const h of hosts) for (const n of h.ports().keys()) if (!out.some((o) => o.name === n)) out.push({ name: n, ifindex: 0, bridge: null });
  return out;
}
