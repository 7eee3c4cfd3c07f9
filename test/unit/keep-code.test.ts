// The daemon compiles its code ahead and keeps it (agent/daemon/keep-code.ts, agent/cli.ts):
// - a function run once (as the warm-up runs the trip path) is still compiled after the idle
//   heap's mark-compacts; the control child, without keepCompiledCode, shows V8 discarding it;
// - code loaded after compileAheadAndKeep is compiled as it loads, not at its first call; the
//   control shows the lazy order;
// - the entry does it for `run` only: the scheduler's wake handler is compiled at load by `run`,
//   not by `status`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const mod = resolve('dist/agent/daemon/keep-code.js');
const entry = resolve('dist/agent/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sb-keep-code-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function node(args: string[]): string {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return r.stdout;
}

/** --log-function-events lines for a function name: [event, ...] in log order. */
function events(log: string, name: string): string[] {
  return log.split('\n').filter((l) => l.startsWith('function,') && l.split(',')[7] === name).map((l) => l.split(',')[1]!);
}

describe('keep-code', () => {
  it('keeps a function run once compiled across the mark-compacts that discard it otherwise', () => {
    expect(existsSync(mod), 'build first (npx tsc -p tsconfig.json)').toBe(true);
    const run = (keep: boolean) =>
      node(['--trace-flush-bytecode', '--trace-gc', '--input-type=module', '-e', `
        ${keep ? `(await import(${JSON.stringify(pathToFileURL(mod).href)})).keepCompiledCode();` : ''}
        function tripPathStandIn(x) { return x * 2 + 1; }
        tripPathStandIn(1);
        // An idle agent's heap turning over, sped up: old-generation garbage, then none.
        let keep = [];
        for (let i = 0; i < 30; i++) { for (let j = 0; j < 3e5; j++) keep.push({ j, s: 'x' + j }); keep = []; }`]);
    const control = run(false);
    expect((control.match(/Mark-Compact/g) ?? []).length).toBeGreaterThanOrEqual(6);
    expect(control).toMatch(/discarding compiled metadata for .*<SharedFunctionInfo tripPathStandIn>/);
    const kept = run(true);
    expect((kept.match(/Mark-Compact/g) ?? []).length).toBeGreaterThanOrEqual(6);
    expect(kept).not.toMatch(/discarding compiled metadata/);
  }, 120_000);

  it('compiles code loaded after compileAheadAndKeep as it loads, not at its first call', () => {
    const lib = join(dir, 'lib.mjs');
    writeFileSync(lib, 'export function outerFn() { function innerFn(x) { return x + 1; } return innerFn(1); }\n');
    const run = (eager: boolean) => {
      const log = join(dir, `${eager ? 'eager' : 'lazy'}.log`);
      node(['--log-function-events', `--logfile=${log}`, '--no-logfile-per-isolate', '--input-type=module', '-e', `
        ${eager ? `(await import(${JSON.stringify(pathToFileURL(mod).href)})).compileAheadAndKeep();` : ''}
        (await import(${JSON.stringify(pathToFileURL(lib).href)})).outerFn();`]);
      return readFileSync(log, 'utf8');
    };
    const order = (log: string) => log.split('\n').filter((l) => /^function,(interpreter|first-execution),/.test(l) && /,(innerFn|outerFn)$/.test(l)).map((l) => `${l.split(',')[1]}:${l.split(',')[7]}`);
    // Lazy: innerFn is compiled for the interpreter only once outerFn runs and calls it.
    const lazyLog = run(false);
    expect(order(lazyLog).indexOf('first-execution:outerFn')).toBeGreaterThan(-1);
    expect(order(lazyLog).indexOf('interpreter:innerFn')).toBeGreaterThan(order(lazyLog).indexOf('first-execution:outerFn'));
    const eagerLog = run(true);
    expect(order(eagerLog).indexOf('interpreter:innerFn')).toBeGreaterThan(-1);
    expect(order(eagerLog).indexOf('interpreter:innerFn')).toBeLessThan(order(eagerLog).indexOf('first-execution:outerFn'));
    expect(events(eagerLog, 'innerFn')).not.toContain('parse-function');
  }, 60_000);

  it('the entry compiles ahead for `run` only', () => {
    expect(existsSync(entry), 'build first').toBe(true);
    const log = (args: string[]) => {
      const f = join(dir, `${args[0]}.log`);
      // Both fail fast (no such policy / no daemon): what they loaded is what counts.
      node(['--log-function-events', `--logfile=${f}`, '--no-logfile-per-isolate', entry, ...args]);
      return readFileSync(f, 'utf8');
    };
    // onWaker: the scheduler's tripwire wake, first called in a storm.
    expect(events(log(['run', '--policy', join(dir, 'none.yaml'), '--state-dir', dir, '--socket', join(dir, 's.sock')]), 'onWaker')).toContain('interpreter');
    expect(events(log(['status', '--socket', join(dir, 's.sock')]), 'onWaker')).not.toContain('interpreter');
  }, 60_000);
});
