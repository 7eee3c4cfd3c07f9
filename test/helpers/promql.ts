// Metric names a PromQL expression reads, for checking that dashboards and rules name only series
// the agent exports. A small lexer, not a PromQL parser: it drops what cannot be a metric name
// (strings, label matchers, ranges, grouping label lists, numbers and durations, keywords,
// function and aggregation names, Grafana variables) and returns the identifiers left.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

export function promqlMetricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ');
  s = s.replace(/(^|[^A-Za-z0-9_:])\d[0-9.eE+-]*[smhdwy]*/g, '$1 ');
  const names = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = s.slice(m.index! + m[0].length).trimStart();
    if (after.startsWith('(')) continue; // function or aggregation
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names].sort();
}

/** Metric names in Prometheus text format (`# TYPE` lines); a histogram adds its _bucket/_sum/_count. */
export function exportedNames(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    out.add(m[1]!);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m[1]! + s);
  }
  return out;
}

/**
 * A Prometheus tool (promtool, amtool). scripts/setup.sh --with-test-tools installs both, and
 * scripts/test.sh sets PROMTOOL/AMTOOL so that in the full suite a missing tool FAILS the test
 * instead of skipping it; a developer without them (no env set) gets a skip.
 */
export function promTool(envName: 'PROMTOOL' | 'AMTOOL', fallback: string): { path: string; ok: boolean } {
  const explicit = process.env[envName];
  const path = explicit ?? fallback;
  const ok = spawnSync(path, ['--version'], { timeout: 10_000 }).status === 0;
  if (explicit && !ok) throw new Error(`${envName}=${explicit} is set but does not run (scripts/setup.sh --with-test-tools installs it)`);
  return { path, ok };
}

interface Dashboard {
  panels: Array<{ title: string; targets?: Array<{ expr?: string }> }>;
  templating: { list: Array<{ query?: unknown }> };
  annotations: { list: Array<{ expr?: string }> };
}

/** Every PromQL query of a Grafana dashboard JSON (panels, annotations, label_values variables), with where it is. */
export function dashboardQueries(file: string): Array<{ where: string; expr: string }> {
  const d = JSON.parse(readFileSync(file, 'utf8')) as Dashboard;
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of d.panels) for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
  for (const a of d.annotations.list) if (a.expr) out.push({ where: 'annotation', expr: a.expr });
  for (const v of d.templating.list) {
    const q = typeof v.query === 'object' && v.query ? (v.query as { query?: string }).query : undefined;
    const m = q?.match(/^label_values\((.*),\s*\w+\)$/);
    if (m) out.push({ where: 'variable', expr: m[1]! });
  }
  return out;
}
