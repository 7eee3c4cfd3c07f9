import type { Logger } from '../log.js';
import type { Policy } from '../types.js';
import { startEsxHost, type EsxHost } from '../esxi/host.js';
import { executeEsxiAction } from '../actions/esxi.js';
import { esxiKind, type PortKind } from './port-kinds.js';

// The policy's ESXi hosts, each a TickSource and a port kind: their ports join the same detector
// and breaker as local ones. Read once at start (a reload keeps the hosts it started with).

export interface EsxiHostsDeps {
  log: Logger;
  /** A host's ports or liveness changed: rebuild the watched set. */
  portsChanged(): void;
  /** A block of counters arrived: judge it now, not at the next idle tick. */
  ratesArrived(): void;
  /** A fresh inventory of this kind's host was read: cut again what was undone there. */
  inventoryRead(kind: PortKind): void;
}

export function startEsxiHosts(policy: Policy, d: EsxiHostsDeps): Array<{ host: EsxHost; kind: PortKind }> {
  const out: Array<{ host: EsxHost; kind: PortKind }> = [];
  const log = d.log;
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
      act: executeEsxiAction,
      log: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m), error: (o, m) => log.error(o, m) },
      ...(process.env.STORMBREAKER_SSH ? { ssh: process.env.STORMBREAKER_SSH } : {}),
    });
    kind = esxiKind(host, hp);
    out.push({ host, kind });
  }
  return out;
}
