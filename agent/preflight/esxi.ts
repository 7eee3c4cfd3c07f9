// Preflight for the ESXi hosts a policy names: connect (same strict SSH as the daemon), read the
// host's virtual network with its security/teaming policies, lint it, and read every counter the
// agent will stream once, exactly as the stream will (so a driver or an ESXi version whose output
// the parsers do not know is found before go-live, not in the middle of a storm). A host that
// cannot be read is an error finding: "not checked" must never pass as "no loop".
import type { EsxiHostPolicy, Policy } from '../types.js';
import { toArgv } from '../esxi/commands.js';
import type { EsxInventory } from '../esxi/inventory.js';
import { openConnection, type RemoteExec } from '../esxi/session.js';
import { readInventory } from '../esxi/read-inventory.js';
import { judgeBroadcast, sectionCounters, streamItems, watchedPorts } from '../esxi/ports.js';
import { broadcastUsable } from '../esxi/nic-stats.js';
import { lintEsxi } from './esxi-lint.js';
import { parseProbe, probeArgv } from '../esxi/fuse/probe.js';
import { mergeReports, type CheckReport, type Finding } from './findings.js';

/**
 * One read of every counter the stream will carry: parse failures are errors (the agent would be
 * blind on that port), a dead broadcast counter and names the host lacks are warnings; the time
 * one block takes tells the sample rate this host can give.
 */
export async function checkEsxiCounters(policy: Policy, h: EsxiHostPolicy, inv: EsxInventory, exec: RemoteExec): Promise<CheckReport> {
  const findings: Finding[] = [];
  const notes: string[] = [];
  const { ports, missing } = watchedPorts(policy, h, inv);
  for (const m of missing) {
    findings.push({ rule: 'esxi-policy-names-missing', severity: 'warning', ports: [h.name], what: `the policy names ${m} on ${h.name}: it is not watched`, fix: `correct esxi.hosts[${h.name}] in the policy (line ${h.line}) to what \`esxcli network nic list\` / \`portgroup list\` show` });
  }
  const items = streamItems(h, ports);
  let blockMs = 0;
  for (const it of items) {
    const port = ports.find((p) => p.id === it.id && p.kind === it.kind)!;
    const argv = toArgv(it.op);
    if (!argv.ok) continue;
    const r = await exec(argv.value);
    blockMs += r.durationMs;
    // The stream merges stderr into stdout (2>&1); what a command prints there comes first (vsish's banner).
    const sec = { kind: it.kind, id: it.id, text: r.error ?? `${r.stderr}${r.stdout}`, rc: r.error !== undefined ? null : r.code };
    const c = sectionCounters(sec, h.counters);
    if (!c.ok) {
      findings.push({ rule: 'esxi-counters-unreadable', severity: 'error', ports: [port.name], what: `\`${argv.value.join(' ')}\` on ${h.name} gave no usable counters (${c.error}): the agent would be blind on ${port.name}`, fix: h.counters === 'vsish' && it.kind === 'nic' ? 'try `counters: esxcli` for this host, or report the output (a format this agent does not know)' : 'report the output (a format this agent does not know), and leave this port group out of esxi.hosts[].portgroups meanwhile' });
      continue;
    }
    if (it.kind !== 'nic') continue;
    const b = broadcastUsable([c.value]);
    if (b.status === 'absent') {
      findings.push({ rule: 'esxi-no-broadcast-counter', severity: 'warning', ports: [port.name], what: `${port.name}: ${judgeBroadcast(undefined, c.value).reason}`, fix: 'nothing is needed for detection (total rx is judged, against thresholds.rxPps); set rxPps for this host above its busiest legitimate rate' });
    } else if (b.status === 'unknown') {
      notes.push(`${port.name}: ${b.reason.replace(/; rating on .*$/, '')}: judged on total rx until it moves`);
    }
  }
  const perSec = blockMs > 0 ? 1000 / blockMs : null;
  notes.push(`${h.name}: one block of ${items.length} counter reads took ${Math.round(blockMs)} ms over SSH (sequential, as the stream runs them): about ${perSec === null ? '?' : perSec.toFixed(1)} samples/s at most; sampleMs ${h.sampleMs} asks for ${(1000 / h.sampleMs).toFixed(1)}`);
  return { findings, notes, stats: { [`esxi:${h.name}:blockMs`]: Math.round(blockMs) } };
}

/**
 * Whether the on-host fuse (issue 12) could arm here: a note either way (the SSH stream works
 * without it), naming what is missing or what an in-process read of the pNICs costs.
 */
export async function checkEsxiFuse(h: EsxiHostPolicy, exec: RemoteExec): Promise<CheckReport> {
  const p = parseProbe(await exec(probeArgv()));
  const note = p.ok
    ? `${h.name}: on-host fuse can arm: python ${p.python}, vmware.vsi imports, one read of ${p.pnics.length} pNIC stats takes ${Math.round(p.readUs)} µs in-process`
    : `${h.name}: on-host fuse cannot arm (${p.why}): the agent falls back to the shell loop here (slower counters, no cut on the host itself)`;
  return { findings: [], notes: [note] };
}

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
      reports.push(await checkEsxiCounters(policy, h, inventory, conn.exec));
      reports.push(await checkEsxiFuse(h, conn.exec));
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
