import type { EsxiHostPolicy } from '../types.js';
import { tripUndone } from '../actions/esxi.js';
import { esxHostOf } from '../esxi/ports.js';
import type { EsxHost } from '../esxi/host.js';
import type { PortKind } from './port-kinds.js';

// The ESXi port kind (see port-kinds.ts), apart from the local one so that an agent without
// ESXi hosts loads none of the ESXi code (daemon.ts imports esxi-hosts.ts only for such a policy).

/** Ports of one ESXi host (`<host>/vmnicN`, `<host>/vnic-<mac>`), acted on over its SSH session. */
export function esxiKind(host: EsxHost, hp: EsxiHostPolicy): PortKind {
  return {
    id: `esxi:${hp.name}`,
    checkName: (port) => esxHostOf(port) === hp.name,
    down: (req, previous) => host.act(req, previous),
    up: (req, previous) => host.act(req, previous),
    verify: (port, previous) => {
      const inv = host.inventory();
      return inv === null ? null : !tripUndone(inv, hp, port, previous);
    },
    reassertReason: (what, r) => (r.ok ? `port was ${what} and found undone on ${hp.name}; cut again` : `could not cut ${what} port again on ${hp.name}: ${r.error}`),
  };
}
