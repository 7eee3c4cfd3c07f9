// `stormbreaker preflight`: static lint, then the active probe, then one cross-check between
// them. The static rule "two uplinks in one bridge, STP off" can only say *possible* loop; the
// probe says whether the two reach each other *now*. When every uplink of such a finding was
// probed and none reached another, upstream STP blocks the path (or they lead to separate
// networks): still worth a warning (a change upstream closes it), no longer an error.
import type { Policy } from '../types.js';
import { mergeReports, type CheckReport, type Finding } from './findings.js';
import { runLint, type Exec } from './lint.js';
import { runProbe, type ProbeOptions } from './probe.js';
import { runEsxiPreflight } from './esxi.js';

export interface ProbeEvidence {
  /** Ports a probe was sent from. */
  probed: readonly string[];
  paths: ReadonlyArray<{ from: string; to: string }>;
}

/** Downgrade static uplink findings the probe disproved for today. Pure; returns new findings. */
export function crossCheck(lint: readonly Finding[], probe: ProbeEvidence | null): Finding[] {
  if (!probe) return [...lint];
  const probed = new Set(probe.probed);
  return lint.map((f) => {
    if (f.rule !== 'bridge-uplinks-no-stp' && f.rule !== 'ovs-uplinks-no-stp') return f;
    if (f.severity !== 'error' || !f.ports.every((p) => probed.has(p))) return f;
    const set = new Set(f.ports);
    const linked = probe.paths.some((p) => p.from !== p.to && set.has(p.from) && set.has(p.to));
    if (linked) return { ...f, evidence: { ...(f.evidence ?? {}), confirmedByProbe: true } };
    return {
      ...f,
      severity: 'warning',
      what: `${f.what}; the probe found no path between them now (blocked upstream, e.g. by the switches' STP, or separate networks), so no loop today, but a change upstream closes it`,
      evidence: { ...(f.evidence ?? {}), confirmedByProbe: false },
    };
  });
}

export interface PreflightOptions {
  policy: Policy;
  probe: boolean;
  exec?: Exec;
  probeOptions?: Omit<ProbeOptions, 'policy'>;
}

export async function runPreflight(opts: PreflightOptions): Promise<CheckReport> {
  const lint = (await runLint(opts.policy, opts.exec)).report;
  // ESXi hosts named by the policy are read over SSH and linted (no probe is sent to them).
  const esxi = await runEsxiPreflight(opts.policy, process.env.STORMBREAKER_SSH);
  if (!opts.probe) return mergeReports(lint, esxi, { findings: [], notes: ['--no-probe: the active loop probe did not run'] });
  const run = await runProbe({ ...opts.probeOptions, policy: opts.policy });
  const evidence = run.result ? { probed: run.result.sent.map((s) => s.port), paths: run.paths } : null;
  return mergeReports({ ...lint, findings: crossCheck(lint.findings, evidence) }, esxi, run.report);
}
