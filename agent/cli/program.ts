// The operator CLI and the daemon's `run` command (commander); agent/cli.ts is the entry that
// loads it.
import { Command, CommanderError } from 'commander';
import { createLogger } from '../log.js';
import type { WebhookOptions } from '../notify/webhook.js';
import { startDaemon, StartupError } from '../daemon.js';
import { request, DaemonUnreachable, RemoteError } from '../control/client.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatPolicyError } from '../policy/errors.js';
import { registerPreflight } from './preflight.js';
import { effectivePolicy, resolvePorts } from '../policy/match.js';
import { observedNames } from '../policy/observed.js';
import { bridgeMembers, listInterfaceNames, listInterfaces } from '../host/interfaces.js';
import { renderEvent, renderOutcome, renderStatus, renderWhy, type CommandOutcome, type StatusView } from './render.js';
import { parseDuration } from '../control/duration.js';

// Exit codes (DESIGN.md contract): 0 ok, 1 finding or failed check, 2 usage error, 3 daemon unreachable.
const EXIT = { ok: 0, finding: 1, usage: 2, unreachable: 3 } as const;
const DEFAULT_SOCKET = '/run/stormbreaker/control.sock';
const DEFAULT_STATE = '/var/lib/stormbreaker';

/** `127.0.0.1:9781` or `[::1]:9781`. */
function parseHostPort(v: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port > 0 && port < 65536)) throw new Error(`--metrics: expected HOST:PORT, got ${JSON.stringify(v)}`);
  return { host: m[1]!, port };
}

function parseArgvJson(v: string): string[] {
  let a: unknown;
  try {
    a = JSON.parse(v);
  } catch {
    throw new Error('--hook-argv: not JSON; expected an array of strings, e.g. ["/usr/local/bin/page-oncall"]');
  }
  if (!Array.isArray(a) || a.length === 0 || !a.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new Error('--hook-argv: expected a non-empty JSON array of strings');
  }
  return a as string[];
}

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
  .option('--socket-group <name>', 'group that owns the control socket (0660) and its directory (0750)')
  .option('--log-format <format>', 'json (for journald, the default) or pretty (for a terminal)', 'json')
  .option('--metrics <host:port>', 'serve Prometheus metrics on a loopback address, e.g. 127.0.0.1:9781')
  .option('--webhook <url>', 'POST every trip, restore, escalation and failed action as JSON (retried, never blocks)')
  .option('--hook-argv <json>', 'run this argv (a JSON array) with each such event as JSON on stdin')
  .action(async (o: { policy: string; stateDir: string; socket: string; dryRun: boolean; preflight: boolean; preflightWarnOnly: boolean; socketGroup?: string; metrics?: string; webhook?: string; hookArgv?: string; logFormat: string }) => {
    if (o.logFormat !== 'json' && o.logFormat !== 'pretty') {
      process.stderr.write(`stormbreaker run: --log-format must be json or pretty, got ${JSON.stringify(o.logFormat)}\n`);
      process.exit(EXIT.usage);
    }
    let metrics: { host: string; port: number } | undefined;
    let webhook: WebhookOptions | undefined;
    try {
      metrics = o.metrics === undefined ? undefined : parseHostPort(o.metrics);
      webhook = o.webhook !== undefined ? { target: { kind: 'http', url: o.webhook } } : o.hookArgv !== undefined ? { target: { kind: 'exec', argv: parseArgvJson(o.hookArgv) } } : undefined;
    } catch (err) {
      process.stderr.write(`stormbreaker run: ${(err as Error).message}\n`);
      process.exit(EXIT.usage);
    }
    const log = createLogger(undefined, o.logFormat);
    // SIGHUP reloads the policy. Listen from the start: without a listener a SIGHUP kills Node,
    // and one that arrives while starting is applied once the daemon runs.
    let daemon: Awaited<ReturnType<typeof startDaemon>> | null = null;
    let hupPending = false;
    const onHup = () => {
      if (!daemon) {
        hupPending = true;
        return;
      }
      log.info({ component: 'daemon', signal: 'SIGHUP' }, 'reloading policy');
      daemon.reload('SIGHUP').catch((err: unknown) => log.error({ component: 'daemon', err: (err as Error).message }, 'reload failed'));
    };
    process.on('SIGHUP', onHup);
    if (o.preflight) {
      // "Never switch on without checking": the same check as `stormbreaker preflight`.
      const loaded = await loadPolicyFile(o.policy);
      if ('errors' in loaded) {
        for (const e of loaded.errors) process.stderr.write(formatPolicyError(e) + '\n');
        process.exit(EXIT.finding);
      }
      // The preflight's code loads only for `run --preflight` (the daemon does not need it).
      const [{ runPreflight }, { fails, renderText }] = await Promise.all([import('../preflight/preflight.js'), import('../preflight/findings.js')]);
      const report = await runPreflight({ policy: loaded.policy, probe: true });
      if (report.findings.length > 0) process.stderr.write(renderText(report));
      if (fails(report.findings) && !o.preflightWarnOnly) {
        process.stderr.write('stormbreaker run: preflight found a problem; not starting (--preflight-warn-only to start anyway)\n');
        process.exit(EXIT.finding);
      }
      log.info({ component: 'preflight', findings: report.findings.length }, 'preflight done');
    }
    try {
      const d = await startDaemon({ policyPath: o.policy, stateDir: o.stateDir, socketPath: o.socket, dryRun: o.dryRun, log, ...(o.socketGroup !== undefined ? { socketGroup: o.socketGroup } : {}), ...(metrics ? { metrics } : {}), ...(webhook ? { webhook } : {}) });
      daemon = d;
      if (hupPending) onHup();
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
      // Anything else that stops the start (a socket path that cannot be made, ...): one clear
      // line for the operator, not a stack trace.
      process.stderr.write(`stormbreaker run: cannot start: ${(err as Error).message ?? String(err)}\n`);
      process.exit(EXIT.finding);
    }
  });

class UsageError extends Error {}

/** Exit code for a failed request: unreachable 3, a bad port or argument 2, anything else 1. */
function exitFor(err: unknown): number {
  if (err instanceof DaemonUnreachable) return EXIT.unreachable;
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof RemoteError && (err.code === 'E_UNKNOWN_PORT' || err.code === 'E_BAD_ARGS')) return EXIT.usage;
  return EXIT.finding;
}

/** What the client claims about itself; the daemon prefers the kernel's word (SO_PEERCRED). */
const claim = () => ({ user: process.env.SUDO_USER ?? process.env.USER, uid: process.getuid?.() });

function client(name: string, desc: string, build: (c: Command) => Command, toArgs: (...a: unknown[]) => Record<string, unknown>, print: (r: unknown, json: boolean) => unknown, timeoutMs?: number) {
  const c = program.command(name).description(desc).option('--socket <path>', 'control socket path', DEFAULT_SOCKET).option('--json', 'machine-readable output', false);
  build(c).action(async (...a: unknown[]) => {
    const opts = a[a.length - 2] as { socket: string; json: boolean };
    try {
      const r = await request(opts.socket, name, { ...toArgs(...a), ...claim() }, timeoutMs);
      const code = print(r, opts.json);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      process.stderr.write(`stormbreaker ${name}: ${(err as Error).message}\n`);
      process.exitCode = exitFor(err);
    }
  });
}

function duration(text: string, what: string): number {
  const ms = parseDuration(text);
  if (ms === null) throw new UsageError(`${what}: ${JSON.stringify(text)} is not a duration (like 30s, 5m, 2h)`);
  return ms;
}

const printJson = (r: unknown): void => void process.stdout.write(JSON.stringify(r, null, 2) + '\n');

client('status', 'show the policy, the agent\'s health, and watched ports with state and rates', (c) => c, () => ({}), (r, json) => {
  if (json) return printJson(r);
  process.stdout.write(renderStatus(r as StatusView));
});

program
  .command('top')
  .description('live status: redraw the status table until Ctrl-C')
  .option('--socket <path>', 'control socket path', DEFAULT_SOCKET)
  .option('--interval <ms>', 'redraw period, ms', '1000')
  .action(async (o: { socket: string; interval: string }) => {
    const every = Number(o.interval);
    if (!Number.isFinite(every) || every < 100) {
      process.stderr.write('stormbreaker top: --interval must be a number of ms >= 100\n');
      process.exit(EXIT.usage);
    }
    process.once('SIGINT', () => {
      process.stdout.write('\n');
      process.exit(EXIT.ok);
    });
    for (;;) {
      let text: string;
      try {
        text = renderStatus((await request(o.socket, 'status', {}, Math.max(2000, every))) as StatusView);
      } catch (err) {
        process.stderr.write(`stormbreaker top: ${(err as Error).message}\n`);
        process.exit(exitFor(err));
      }
      // Clear the screen and home the cursor, then the whole table: one write, no flicker.
      process.stdout.write(`\x1b[2J\x1b[H${new Date().toISOString()}  every ${every} ms, Ctrl-C to quit\n${text}`);
      await new Promise((res) => setTimeout(res, every));
    }
  });

// Operator commands wait for the action's result (`wait`: the daemon answers once the link is
// down or up and verified, or refused and why); exit 1 when refused or not verified.
const printOutcome = (r: unknown, json: boolean): number => {
  const o = renderOutcome(r as CommandOutcome);
  if (json) printJson(r);
  else (o.toStderr ? process.stderr : process.stdout).write(o.text);
  return o.code;
};
const OUTCOME_TIMEOUT_MS = 30_000;
for (const verb of ['trip', 'restore'] as const) {
  client(verb, verb === 'trip' ? 'shut a port now (journaled); waits for the link to be down' : 'bring a tripped port back up (journaled); waits for the link to be up', (c) => c.argument('<port>').requiredOption('--reason <text>', 'why (journaled)'), (port, o) => ({ port, reason: (o as { reason: string }).reason, wait: true }), printOutcome, OUTCOME_TIMEOUT_MS);
}

client(
  'hold',
  'keep a port down whatever happens (protected ports too: an operator decides), until released or --for expires into tripped',
  (c) => c.argument('<port>').requiredOption('--reason <text>', 'why (journaled)').option('--for <duration>', 'expire after this long (30s, 5m, 2h); the port then stays tripped until restore'),
  (port, o) => {
    const oo = o as { reason: string; for?: string };
    return { port, reason: oo.reason, wait: true, ...(oo.for !== undefined ? { forMs: duration(oo.for, '--for') } : {}) };
  },
  printOutcome,
  OUTCOME_TIMEOUT_MS,
);
client('release', 'end a hold: the port stays down (tripped) until restore', (c) => c.argument('<port>').requiredOption('--reason <text>', 'why (journaled)'), (port, o) => ({ port, reason: (o as { reason: string }).reason }), (r, json) =>
  json ? printJson(r) : process.stdout.write(`release ${(r as { port: string }).port}: accepted\n`),
);
client('reload', 're-read the policy (as SIGHUP does); a bad policy is rejected whole and the last good one stays', (c) => c, () => ({}), (r, json) => {
  const x = r as { ok: boolean; oldHash?: string; policyHash: string; errors?: string[] };
  if (json) printJson(r);
  else if (x.ok) process.stdout.write(`reloaded: ${x.oldHash} -> ${x.policyHash}\n`);
  else process.stderr.write(`reload rejected; ${x.policyHash} stays in force:\n${(x.errors ?? []).join('\n')}\n`);
  return x.ok ? EXIT.ok : EXIT.finding;
});

client('why', 'the evidence of the last trip (of PORT, or of any port)', (c) => c.argument('[port]'), (port) => ({ port: port ?? '' }), (r, json) =>
  json ? printJson(r) : process.stdout.write(renderWhy(r as Record<string, unknown> | null)),
);
client(
  'events',
  'journal events, from the journal file (the newest 10,000 that match, within its last 16 MB)',
  (c) => c.option('--port <port>', 'only this port').option('--since <duration>', 'only the last DURATION (30s, 5m, 2h)'),
  (o) => {
    const oo = o as { port?: string; since?: string };
    return { port: oo.port ?? '', ...(oo.since !== undefined ? { sinceMs: duration(oo.since, '--since') } : {}) };
  },
  (r, json) => {
    if (json) return printJson(r);
    for (const e of r as Array<{ ts: string; event: string; port: string; reason: string }>) process.stdout.write(renderEvent(e));
  },
  // The agent reads the journal back at a paced rate shared by all clients (8 MB/s): a 16 MB
  // journal takes a few seconds, longer while others read too.
  30_000,
);

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

policyCmd
  .command('show')
  .description("the effective policy per port after merging: the rule, role, protection, thresholds and shut rank of each of this host's interfaces (or --ports)")
  .argument('<path>', 'policy file or directory')
  .option('--ports <names>', 'comma-separated port names instead of this host\'s interfaces')
  .option('--json', 'machine-readable output', false)
  .action(async (path: string, o: { ports?: string; json: boolean }) => {
    const r = await loadPolicyFile(path);
    if ('errors' in r) {
      for (const e of r.errors) process.stderr.write(formatPolicyError(e) + '\n');
      process.exitCode = EXIT.finding;
      return;
    }
    const names = o.ports !== undefined ? o.ports.split(',').map((n) => n.trim()).filter(Boolean) : listInterfaceNames();
    const eff = effectivePolicy(r.policy, names);
    // On this host (no --ports), unnamed members of a bridge with a named port are read as the
    // agent reads them (policy/observed.ts): say so rather than "not watched".
    const named = resolvePorts(r.policy, names);
    const observed = o.ports !== undefined ? [] : observedNames(listInterfaces(undefined, (n) => named.has(n)), named, (b) => bridgeMembers(b));
    const unwatched = eff.unmatched.filter((n) => !observed.includes(n));
    if (o.json) {
      process.stdout.write(JSON.stringify({ file: r.policy.file, hash: r.policy.hash, ...eff, unmatched: unwatched, observed }, null, 2) + '\n');
      return;
    }
    process.stdout.write(`policy ${r.policy.file} (${r.policy.hash})${r.policy.dryRun ? ' DRY-RUN' : ''}\n`);
    const cols = ['port', 'role', 'protected', 'rule', 'floodPps', 'clearPps', 'holdSamples', 'floodHoldMs', 'shutRank', 'dryRun'];
    const rows = eff.ports.map((p) => [p.port, p.role, String(p.protected), `#${p.rule.index} ${p.rule.match} (line ${p.rule.line})`, String(p.thresholds.floodPps), String(p.thresholds.clearPps), String(p.thresholds.holdSamples), String(p.thresholds.floodHoldMs), Number.isFinite(p.shutRank) ? String(p.shutRank) : 'never', String(p.dryRun)]);
    const w = cols.map((k, i) => Math.max(k.length, ...rows.map((row) => row[i]!.length)));
    const fmt = (row: string[]) => row.map((v, i) => v.padEnd(w[i]!)).join('  ').trimEnd() + '\n';
    process.stdout.write(fmt(cols) + rows.map(fmt).join(''));
    if (observed.length > 0) process.stdout.write(`observed, not named (bridge members no rule matches: counters read for loop evidence, never shut): ${observed.join(', ')}\n`);
    if (unwatched.length > 0) process.stdout.write(`not watched (no rule matches): ${unwatched.join(', ')}\n`);
    if (eff.invalid.length > 0) process.stdout.write(`not interface names: ${eff.invalid.join(', ')}\n`);
    for (const h of eff.esxi ?? []) {
      const t = h.thresholds;
      process.stdout.write(
        `esxi ${h.name}: ${h.user}@${h.address}:${h.port} every ${h.sampleMs} ms (stale after ${h.staleMs} ms), counters ${h.counters}, ` +
          `vmnics ${h.vmnics.map((v) => `${v.name}(${v.role}${v.protected ? ',protected' : ''})`).join(' ')}, ` +
          `VM ports on ${h.portgroups.length ? h.portgroups.join(', ') : 'none'}${h.watchBridgingVms ? ' and of VMs with two vNICs in one L2 or one on those port groups' : ''}, protected port groups ${h.protectedPortgroups.join(', ') || 'none'}, ` +
          `actions ${h.actions.join(' > ')}${h.quarantineVlan !== null ? ` (quarantine VLAN ${h.quarantineVlan})` : ''}, ` +
          `floodPps ${t.floodPps} clearPps ${t.clearPps} rxPps ${t.rxPps} holdSamples ${t.holdSamples} floodHoldMs ${t.floodHoldMs}\n`,
      );
    }
  });

registerPreflight(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
  }
  process.stderr.write(`stormbreaker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(EXIT.finding);
});
