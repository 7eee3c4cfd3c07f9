// `stormbreaker preflight` and `stormbreaker guard-up`: check before go-live (DESIGN.md contract).
// Exit codes: 0 ok, 1 finding or failed check, 2 usage error.
//   preflight --policy PATH [--json] [--strict] [--no-probe]
//       static lint of bridges/bonds/OVS, then the active loop probe. Exit 1 on any error
//       finding (warnings too with --strict), or when a check could not run.
//   guard-up PORT --policy PATH [--watch-ms N] [--json]
//       bring PORT up only if a probe shows it closes no loop; watch it N ms (default 3000).
import type { Command } from 'commander';
import { isValidIfName } from '../host/names.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatPolicyError } from '../policy/errors.js';
import type { Policy } from '../types.js';
import type { CheckReport } from '../preflight/findings.js';
import { DEFAULT_WATCH_MS } from '../preflight/watch.js';

// The checks' own code is imported by the commands that run them, not when the CLI loads: the
// daemon (`run`) loads this file too and compiles what it loads ahead (daemon/keep-code.ts).
const findings = () => import('../preflight/findings.js');

const EXIT = { ok: 0, finding: 1, usage: 2 } as const;
const MAX_WATCH_MS = 600_000;

async function policyOrExit(path: string): Promise<Policy | null> {
  const r = await loadPolicyFile(path);
  if ('errors' in r) {
    for (const e of r.errors) process.stderr.write(formatPolicyError(e) + '\n');
    process.exitCode = EXIT.finding;
    return null;
  }
  return r.policy;
}

/** A check that could not run: the message on stderr, and with --json an `ok: false` document. */
function failed(cmd: string, err: unknown, json: boolean): void {
  const e = err as Error & { code?: unknown };
  process.stderr.write(`stormbreaker ${cmd}: ${e.message}\n`);
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: { code: typeof e.code === 'string' ? e.code : 'E_PREFLIGHT', message: e.message } }, null, 2) + '\n');
}

async function print(report: CheckReport, json: boolean, strict: boolean): Promise<void> {
  const { renderJson, renderText } = await findings();
  process.stdout.write(json ? renderJson(report, strict) : renderText(report));
}

export function registerPreflight(program: Command): void {
  program
    .command('preflight')
    .description('check the host for loops before go-live: static lint, then an active loop probe (exit 1 on a finding)')
    .requiredOption('--policy <path>', 'policy file or directory (roles of the ports)')
    .option('--json', 'machine-readable output', false)
    .option('--strict', 'warnings fail the check too', false)
    .option('--no-probe', 'static lint only: send nothing')
    .action(async (o: { policy: string; json: boolean; strict: boolean; probe: boolean }) => {
      const policy = await policyOrExit(o.policy);
      if (!policy) return;
      let report: CheckReport;
      try {
        const { runPreflight } = await import('../preflight/preflight.js');
        report = await runPreflight({ policy, probe: o.probe });
      } catch (err) {
        // A check that could not run is a failed check, never a silent pass.
        failed('preflight', err, o.json);
        process.exitCode = EXIT.finding;
        return;
      }
      await print(report, o.json, o.strict);
      process.exitCode = (await findings()).fails(report.findings, o.strict) ? EXIT.finding : EXIT.ok;
    });

  program
    .command('guard-up')
    .description('bring PORT up only after a probe shows it closes no loop, then watch it (exit 1: refused or shut)')
    .argument('<port>', 'interface to bring up')
    .requiredOption('--policy <path>', 'policy file or directory (the port must match a rule)')
    .option('--watch-ms <n>', 'watch the port this long after it starts forwarding', String(DEFAULT_WATCH_MS))
    .option('--json', 'machine-readable output', false)
    .action(async (port: string, o: { policy: string; watchMs: string; json: boolean }) => {
      if (!isValidIfName(port)) {
        process.stderr.write(`stormbreaker guard-up: invalid interface name ${JSON.stringify(port)}\n`);
        process.exitCode = EXIT.usage;
        return;
      }
      const watchMs = Number(o.watchMs);
      if (!/^\d+$/.test(o.watchMs) || watchMs > MAX_WATCH_MS) {
        process.stderr.write(`stormbreaker guard-up: --watch-ms must be an integer 0..${MAX_WATCH_MS}\n`);
        process.exitCode = EXIT.usage;
        return;
      }
      const policy = await policyOrExit(o.policy);
      if (!policy) return;
      const { guardUp, GuardUsageError } = await import('../preflight/guard.js');
      try {
        const r = await guardUp({ policy, port, watchMs });
        const report = { ...r.report, stats: { ...(r.report.stats ?? {}), guard: { port, outcome: r.outcome } } };
        await print(report, o.json, false);
        const ok = (r.outcome === 'up' || r.outcome === 'already-up') && !(await findings()).fails(r.report.findings);
        process.exitCode = ok ? EXIT.ok : EXIT.finding;
      } catch (err) {
        failed('guard-up', err, o.json);
        process.exitCode = err instanceof GuardUsageError ? EXIT.usage : EXIT.finding;
      }
    });
}
