// Preflight for the ESXi hosts a policy names: connect (same strict SSH as the daemon), read the
// host's virtual network with its security/teaming policies, lint it. A host that cannot be read
// is an error finding: "not checked" must never pass as "no loop".
import type { Policy } from '../types.js';
import { openConnection } from '../esxi/session.js';
import { readInventory } from '../esxi/read-inventory.js';
import { lintEsxi } from './esxi-lint.js';
import { mergeReports, type CheckReport } from './findings.js';

export async function runEsxiPreflight(policy: Policy, ssh?: string): Promise<CheckReport> {
  const reports: CheckReport[] = [];
  for (const h of policy.esxi?.hosts ?? []) {
    const t0 = performance.now();
    let conn: Awaited<ReturnType<typeof openConnection>> | null = null;
    try {
      conn = await openConnection({ ...h, ...(ssh ? { ssh } : {}) });
      const { inventory, problems } = await readInventory(conn.exec, { host: h.name, policies: true });
      const r = lintEsxi(inventory);
      reports.push({ ...r, notes: [...r.notes, ...problems.map((p) => `${h.name}: ${p}`)], stats: { [`esxi:${h.name}:ms`]: Math.round(performance.now() - t0) } });
    } catch (e) {
      reports.push({
        findings: [
          {
            rule: 'esxi-not-checked',
            severity: 'error',
            ports: [h.name],
            what: `ESXi host ${h.name} (${h.user}@${h.address}:${h.port}) could not be checked: ${(e as Error).message}`,
            fix: `make it reachable over SSH with the policy's key and a known_hosts entry (ssh-keyscan on a trusted path, compared with the host's console), then run preflight again`,
          },
        ],
        notes: [],
      });
    } finally {
      await conn?.close();
    }
  }
  return reports.length ? mergeReports(...reports) : { findings: [], notes: [] };
}
