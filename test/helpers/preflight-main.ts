// A minimal `stormbreaker` entry with only the preflight commands, for the preflight integration
// tests: they run it inside lab namespaces before agent/cli.ts is wired (the lead adds
// registerPreflight there). Same error handling as agent/cli.ts: usage errors exit 2.
import { Command, CommanderError } from 'commander';
import { registerPreflight } from '../../agent/cli/preflight.js';

const program = new Command().name('stormbreaker').exitOverride();
registerPreflight(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  process.stderr.write(`stormbreaker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
