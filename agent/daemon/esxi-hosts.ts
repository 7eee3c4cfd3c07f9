import type { Logger } from '../log.js';
import type { ActionResult, JournalEvent, Policy } from '../types.js';
import { startEsxHost, type EsxHost } from '../esxi/host.js';
import { fuseReportReason } from '../esxi/host-fuse.js';
import { executeEsxiAction } from '../actions/esxi.js';
import { esxiKind } from './esxi-kind.js';
import type { PortKind } from './port-kinds.js';

// The policy's ESXi hosts, each a TickSource and a port kind: their ports join the same detector
// and breaker as local ones. Read once at start (a reload keeps the hosts it started with).
// Each host's fuse reports here: a cut goes to the breaker as an action result (journaled as a
// trip, then acknowledged to the fuse), anything else straight to the journal.

export interface EsxiHostsDeps {
  log: Logger;
  /** A host's ports or liveness changed: rebuild the watched set. */
  portsChanged(): void;
  /** A block of counters arrived: judge it now, not at the next idle tick. */
  ratesArrived(): void;
  /** A fresh inventory of this kind's host was read: cut again what was undone there. */
  inventoryRead(kind: PortKind): void;
  /** A cut made on a host by its fuse: to the breaker, as the result of a link-down. */
  cutReported(r: ActionResult): void;
  record(e: JournalEvent): void;
  /** Every event recorded from now on; returns the unsubscribe. */
  onRecord(fn: (e: JournalEvent) => void): () => void;
  /** The journal as read at start: fuse events it already holds are not journaled twice. */
  replayed: readonly JournalEvent[];
}

export function startEsxiHosts(policy: Policy, d: EsxiHostsDeps): Array<{ host: EsxHost; kind: PortKind }> {
  const out: Array<{ host: EsxHost; kind: PortKind }> = [];
  const log = d.log;
  const acks = fuseAcks(d);
  for (const hp of policy.esxi?.hosts ?? []) {
    let kind: PortKind | null = null;
    let host: EsxHost | null = null;
    host = startEsxHost(policy, hp, policy.actions.retries, {
      onPortsChanged: () => {
        d.portsChanged();
        log.info({ component: 'esxi', host: hp.name, ports: [...(host?.ports().keys() ?? [])], live: host?.live() }, 'ESXi ports changed');
      },
      onRates: d.ratesArrived,
      onInventory: () => kind && d.inventoryRead(kind),
      onFuseReport(r) {
        // Already journaled (its ack was lost with a connection): a later fuse replays it; ack only.
        if (acks.journaled(r.cut.id)) return r.ack();
        if (r.result) return acks.cut(r.result, r.ack, !r.taken);
        const reason = `${fuseReportReason(r.host, r.cut)}${r.undone ? ' while the agent was not connected; the host shows the vNIC connected again since, so it is not tripped again' : ''}`;
        d.record({ ts: new Date().toISOString(), event: 'fuse', port: r.cut.port, reason, host: r.host, fuse: r.cut, replayed: r.replayed });
        r.ack();
      },
      onFuseState(h, state, why, program) {
        if (state === 'starting') return;
        const said = state === 'armed' ? why : state === 'not-armed' ? `the fuse could not arm on ${h}: ${why}; the shell loop streams the counters instead` : `the fuse on ${h} ended: ${why}`;
        d.record({ ts: new Date().toISOString(), event: 'fuse', port: '', reason: said, host: h, state, ...(program ? { fuseVersion: program.version, fuseSha256: program.sha256 } : {}) });
      },
      act: executeEsxiAction,
      log: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m), error: (o, m) => log.error(o, m) },
      ...(process.env.STORMBREAKER_SSH ? { ssh: process.env.STORMBREAKER_SSH } : {}),
    });
    kind = esxiKind(host, hp);
    out.push({ host, kind });
  }
  return out;
}

/**
 * A fuse's cut is acknowledged (the fuse forgets it, and no later fuse replays it) only once the
 * journal has its trip: the breaker journals it on its next step, after cutReported.
 */
function fuseAcks(d: EsxiHostsDeps) {
  const pending = new Map<string, () => void>();
  /** Fuse event ids the journal holds (bounded: the newest MAX_JOURNALED). */
  const journaled = new Set<string>();
  const remember = (e: JournalEvent): string | undefined => {
    const id = fuseIdOf(e);
    if (id === undefined) return undefined;
    journaled.add(id);
    if (journaled.size > MAX_JOURNALED) journaled.delete(journaled.values().next().value!);
    return id;
  };
  for (const e of d.replayed) remember(e);
  d.onRecord((e) => {
    const id = remember(e);
    const ack = id === undefined ? undefined : pending.get(id);
    if (!ack || (e.event !== 'trip' && e.event !== 'action-failed')) return;
    pending.delete(id!);
    ack();
  });
  return {
    journaled: (id: string): boolean => journaled.has(id),
    /** `report`: to the breaker here; false when the agent's own link-down returns it. */
    cut(result: ActionResult, ack: () => void, report: boolean): void {
      pending.set(result.origin!.id, ack);
      if (report) d.cutReported(result);
    },
  };
}

const MAX_JOURNALED = 4096;

/** The fuse event a journal line records: a trip's (or failure's) origin, or a `fuse` report. */
function fuseIdOf(e: JournalEvent): string | undefined {
  const origin = (e.action as ActionResult | undefined)?.origin?.id;
  if (origin !== undefined) return origin;
  const f = e.event === 'fuse' ? (e.fuse as { id?: unknown } | undefined) : undefined;
  return typeof f?.id === 'string' ? f.id : undefined;
}
