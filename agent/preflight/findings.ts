// The one finding format of every pre-go-live check (static lint, active loop probe, guard-up,
// and the ESXi checks to come), and its renderers. Pure: plain data in, text out.
//
// A finding names the ports a human has to look at, says what is wrong in one sentence and what
// to do about it in another; `evidence` keeps the raw facts (bridge, states, arrivals) so that
// `--json` consumers and later audits need not re-derive them.

export type Severity = 'error' | 'warning';

export interface Finding {
  /** Stable rule id, e.g. `bridge-uplinks-no-stp`, `loop-probe`; scripts match on this. */
  rule: string;
  /** error: a loop now (or at the next link-up); warning: a missing safeguard. */
  severity: Severity;
  /** Ports involved, sorted; the first is where the fix usually goes. */
  ports: string[];
  what: string;
  fix: string;
  evidence?: object;
}

/** What a check run produced besides findings: what could not be checked, and why. */
export interface CheckReport {
  findings: Finding[];
  /** Things not checked (tool missing, port down, namespace unnamed): never silent. */
  notes: string[];
  /** Free-form facts about the run (timings, frames sent), for --json. */
  stats?: Record<string, unknown>;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 0, warning: 1 };

/** Errors first, then by rule, then by ports: stable output for humans, diffs and golden files. */
export function sortFindings(findings: readonly Finding[]): Finding[] {
  return [...findings].sort(
    (a, b) =>
      SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
      cmp(a.rule, b.rule) ||
      cmp(a.ports.join(','), b.ports.join(',')) ||
      cmp(a.what, b.what),
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Does this set of findings fail the check? Warnings fail only in strict mode. */
export function fails(findings: readonly Finding[], strict = false): boolean {
  return findings.some((f) => f.severity === 'error' || strict);
}

export function countBySeverity(findings: readonly Finding[]): Record<Severity, number> {
  const c: Record<Severity, number> = { error: 0, warning: 0 };
  for (const f of findings) c[f.severity]++;
  return c;
}

/**
 * Human text: one block per finding (severity, rule, ports; what; fix), then the notes, then a
 * one-line summary. No colours: the output lands in tickets and change records.
 */
export function renderText(report: CheckReport): string {
  const out: string[] = [];
  for (const f of sortFindings(report.findings)) {
    out.push(`${f.severity.padEnd(7)} ${f.rule}  [${f.ports.join(', ')}]`);
    out.push(`        ${f.what}`);
    out.push(`        fix: ${f.fix}`);
  }
  for (const n of report.notes) out.push(`note    ${n}`);
  const c = countBySeverity(report.findings);
  out.push(
    report.findings.length === 0
      ? 'no findings'
      : `${report.findings.length} finding${report.findings.length === 1 ? '' : 's'} (${c.error} error${c.error === 1 ? '' : 's'}, ${c.warning} warning${c.warning === 1 ? '' : 's'})`,
  );
  return out.join('\n') + '\n';
}

/** Machine output: the report with findings sorted, plus `ok` as the exit code would say. */
export function renderJson(report: CheckReport, strict = false): string {
  const body = {
    ok: !fails(report.findings, strict),
    counts: countBySeverity(report.findings),
    findings: sortFindings(report.findings),
    notes: report.notes,
    ...(report.stats ? { stats: report.stats } : {}),
  };
  return JSON.stringify(body, null, 2) + '\n';
}

/** Several reports as one (lint + probe), notes and findings concatenated, stats merged by key. */
export function mergeReports(...reports: CheckReport[]): CheckReport {
  const stats: Record<string, unknown> = {};
  for (const r of reports) Object.assign(stats, r.stats ?? {});
  return {
    findings: reports.flatMap((r) => r.findings),
    notes: reports.flatMap((r) => r.notes),
    ...(Object.keys(stats).length > 0 ? { stats } : {}),
  };
}
