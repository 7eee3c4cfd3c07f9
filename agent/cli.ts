#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { createLogger } from './log.js';
import { startDaemon, StartupError } from './daemon.js';
import { request, DaemonUnreachable, RemoteError } from './control/client.js';
import { loadPolicyFile } from './policy/load.js';
import { formatPolicyError } from './policy/errors.js';
import { registerPreflight } from './cli/preflight.js';
import { runPreflight } from './preflight/preflight.js';
import { fails, renderText } from './preflight/findings.js';

// Exit codes (DESIGN.md contract): 0 ok, 1 finding or failed check, 2 usage error, 3 daemon unreachable.
const EXIT = { ok: 0, finding: 1, usage: 2, unreachable: 3 } as const;
const DEFAULT_SOCKET = '/run/stormbreaker/control.sock';
const DEFAULT_STATE = '/var/lib/stormbreaker';

const program = new Command();
program
  .name('stormbreaker')
  .description('Host-side circuit breaker for Ethernet broadcast storms')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command('run')
  .description('run the agent in the foreground (JSON logs on stdout)')
  .requiredOption('--policy <path>', 'policy file or directory of *.yaml files (version: 1)')
  .option('--state-dir <dir>', 'where the journal lives', DEFAULT_STATE)
  .option('--socket <path>', 'control socket path', DEFAULT_SOCKET)
  .option('--dry-run', 'decide and journal "would-trip", never touch a link', false)
  .option('--preflight', 'run the preflight check first and refuse to start on a finding', false)
  .option('--preflight-warn-only', 'with --preflight: print findings but start anyway', false)
  .action(async (o: { policy: string; stateDir: string; socket: string; dryRun: boolean; preflight: boolean; preflightWarnOnly: boolean }) => {
    const log = createLogger();
    if (o.preflight) {
      // "Never switch on without checking": the same check as `stormbreaker preflight`.
      const loaded = await loadPolicyFile(o.policy);
      if ('errors' in loaded) {
        for (const e of loaded.errors) process.stderr.write(formatPolicyError(e) + '\n');
        process.exit(EXIT.finding);
      }
      const report = await runPreflight({ policy: loaded.policy, probe: true });
      if (report.findings.length > 0) process.stderr.write(renderText(report));
      if (fails(report.findings) && !o.preflightWarnOnly) {
        process.stderr.write('stormbreaker run: preflight found a problem; not starting (--preflight-warn-only to start anyway)\n');
        process.exit(EXIT.finding);
      }
      log.info({ component: 'preflight', findings: report.findings.length }, 'preflight done');
    }
    try {
      const d = await startDaemon({ policyPath: o.policy, stateDir: o.stateDir, socketPath: o.socket, dryRun: o.dryRun, log });
      const shutdown = (sig: string) => {
        log.info({ component: 'daemon', signal: sig }, 'stopping');
        d.stop().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    } catch (err) {
      if (err instanceof StartupError) {
        process.stderr.write(err.message + '\n');
        process.exit(err.exitCode);
      }
      throw err;
    }
  });

function client(name: string, desc: string, build: (c: Command) => Command, toArgs: (...a: unknown[]) => Record<string, unknown>, print: (r: unknown, json: boolean) => void) {
  const c = program.command(name).description(desc).option('--socket <path>', 'control socket path', DEFAULT_SOCKET).option('--json', 'machine-readable output', false);
  build(c).action(async (...a: unknown[]) => {
    const opts = a[a.length - 2] as { socket: string; json: boolean };
    try {
      const r = await request(opts.socket, name, { ...toArgs(...a), user: process.env.SUDO_USER ?? process.env.USER });
      print(r, opts.json);
    } catch (err) {
      process.stderr.write(`stormbreaker ${name}: ${(err as Error).message}\n`);
      process.exitCode = err instanceof DaemonUnreachable ? EXIT.unreachable : err instanceof RemoteError && err.code === 'E_UNKNOWN_PORT' ? EXIT.usage : EXIT.finding;
    }
  });
}

const printJson = (r: unknown) => process.stdout.write(JSON.stringify(r, null, 2) + '\n');

client('status', 'show watched ports, their state and rates', (c) => c, () => ({}), (r, json) => {
  if (json) return printJson(r);
  const s = r as { policy: { file: string; hash: string; dryRun: boolean }; health: { ticks: number; periodMs: number; lastTickAgeMs: number; broadcastCounting: boolean }; ports: Array<Record<string, unknown>> };
  process.stdout.write(`policy ${s.policy.file} (${s.policy.hash})${s.policy.dryRun ? ' DRY-RUN' : ''}  sampler ${s.health.periodMs} ms, last tick ${s.health.lastTickAgeMs.toFixed(1)} ms ago, broadcast counting ${s.health.broadcastCounting ? 'on' : 'OFF'}\n`);
  const cols = ['port', 'bridge', 'role', 'protected', 'state', 'rxPps', 'floodPps', 'txPps', 'lastEvent'];
  const rows = s.ports.map((p) => cols.map((k) => (p[k] === null || p[k] === undefined ? '-' : String(p[k]))));
  const w = cols.map((k, i) => Math.max(k.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => v.padEnd(w[i]!)).join('  ').trimEnd() + '\n';
  process.stdout.write(fmt(cols) + rows.map(fmt).join(''));
});

for (const verb of ['trip', 'restore'] as const) {
  client(verb, verb === 'trip' ? 'shut a port now (journaled)' : 'bring a tripped port back up (journaled)', (c) => c.argument('<port>').requiredOption('--reason <text>', 'why (journaled)'), (port, o) => ({ port, reason: (o as { reason: string }).reason }), (r, json) => (json ? printJson(r) : process.stdout.write(`${verb} ${(r as { port: string }).port}: accepted\n`)));
}

client('why', 'the evidence of the last trip (of PORT, or of any port)', (c) => c.argument('[port]'), (port) => ({ port: port ?? '' }), (r) => printJson(r));
client('events', 'recent journal events', (c) => c.option('--port <port>'), (o) => ({ port: (o as { port?: string }).port ?? '' }), (r, json) => {
  if (json) return printJson(r);
  for (const e of r as Array<{ ts: string; event: string; port: string; reason: string }>) process.stdout.write(`${e.ts}  ${e.event.padEnd(14)} ${(e.port || '-').padEnd(10)} ${e.reason}\n`);
});

const policyCmd = program.command('policy').description('policy tools');
policyCmd
  .command('check')
  .description('validate policy files or directories; every error as file:line:col: field: message')
  .argument('<paths...>')
  .action(async (paths: string[]) => {
    let bad = 0;
    for (const p of paths) {
      const r = await loadPolicyFile(p);
      if ('errors' in r) {
        bad++;
        for (const e of r.errors) process.stderr.write(formatPolicyError(e) + '\n');
      } else {
        process.stdout.write(`${p}: ok (${r.policy.hash})\n`);
      }
    }
    process.exitCode = bad > 0 ? EXIT.finding : EXIT.ok;
  });

registerPreflight(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
  }
  process.stderr.write(`stormbreaker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(EXIT.finding);
});
