import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// The layers README and STYLE promise, read from the code itself: every import of every file in
// agent/ (the TypeScript parser, not a regex), and the length of every function. A rule broken
// here names the file and what it imports, so the fix is where the message points.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAX_FUNCTION_LINES = 120;

function walk(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const FILES = walk('agent');
const SOURCES = new Map(FILES.map((f) => [f, ts.createSourceFile(f, readFileSync(join(ROOT, f), 'utf8'), ts.ScriptTarget.ES2022, true)]));

/** Repository paths (agent/x/y.ts) a file imports or re-exports, type-only imports included. */
function importsOf(file: string): string[] {
  const sf = SOURCES.get(file)!;
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    let spec: ts.Expression | undefined;
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) spec = n.moduleSpecifier;
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) spec = n.arguments[0];
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) out.push(relative(ROOT, resolve(ROOT, dirname(file), spec.text)).replace(/\.js$/, '.ts'));
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const IMPORTS = new Map(FILES.map((f) => [f, importsOf(f)]));
const under = (dir: string) => (p: string) => p.startsWith(`${dir}/`);

/** Every import from a file matching `from` to a path matching `to`, as "file -> import". */
function edges(from: (f: string) => boolean, to: (p: string) => boolean): string[] {
  return FILES.filter(from).flatMap((f) => IMPORTS.get(f)!.filter(to).map((p) => `${f} -> ${p}`));
}

describe('layering (imports read from agent/**/*.ts)', () => {
  it('reads the imports it judges (the daemon root imports its parts)', () => {
    expect(FILES.length).toBeGreaterThan(80);
    expect(IMPORTS.get('agent/daemon.ts')).toContain('agent/daemon/tick.ts');
  });

  // port-policy.ts makes the port policies (pure, imports only types): the detector's warm-up
  // must make its ports there, with the one hidden class real ports have.
  it('the core (sample, detect, breaker) imports only types, the policy defaults and the port policy maker', () => {
    const core = (f: string) => ['sample', 'detect', 'breaker'].some((d) => under(`agent/${d}`)(f));
    const allowed = new Set(['agent/types.ts', 'agent/policy/defaults.ts', 'agent/policy/port-policy.ts']);
    expect(edges(core, (p) => !core(p) && !allowed.has(p))).toEqual([]);
    expect(IMPORTS.get('agent/policy/port-policy.ts')!.filter((p) => p !== 'agent/types.ts')).toEqual([]);
  });

  it('policy imports neither esxi nor notify', () => {
    expect(edges(under('agent/policy'), (p) => under('agent/esxi')(p) || under('agent/notify')(p))).toEqual([]);
  });

  it('esxi does not import actions (the action is injected)', () => {
    expect(edges(under('agent/esxi'), under('agent/actions'))).toEqual([]);
  });

  it('control and notify do not import sources', () => {
    expect(edges((f) => under('agent/control')(f) || under('agent/notify')(f), under('agent/sources'))).toEqual([]);
  });

  it('nothing in agent/ imports agent/testing/ (test fakes)', () => {
    expect(edges((f) => !under('agent/testing')(f), under('agent/testing'))).toEqual([]);
  });

  it('the shipped build leaves agent/testing/ out', () => {
    const cfg = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile);
    const parsed = ts.parseJsonConfigFileContent(cfg.config, ts.sys, ROOT);
    const built = parsed.fileNames.map((f) => relative(ROOT, f));
    expect(built).toContain('agent/daemon.ts');
    expect(built.filter(under('agent/testing'))).toEqual([]);
  });
});

/**
 * What loading `file` loads: its value imports and re-exports (relative ones as repository paths,
 * the rest as written, e.g. `node:http`), without type-only ones (erased) and without import().
 */
function staticImportsOf(file: string): string[] {
  const out: string[] = [];
  for (const st of SOURCES.get(file)!.statements) {
    let spec: ts.Expression | undefined;
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause;
      const typesOnly = c !== undefined && (c.isTypeOnly || (!c.name && c.namedBindings !== undefined && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every((e) => e.isTypeOnly)));
      if (!typesOnly) spec = st.moduleSpecifier;
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && !st.isTypeOnly) {
      const ex = st.exportClause;
      if (!(ex && ts.isNamedExports(ex) && ex.elements.every((e) => e.isTypeOnly))) spec = st.moduleSpecifier;
    }
    if (spec && ts.isStringLiteral(spec)) out.push(spec.text.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), spec.text)).replace(/\.js$/, '.ts') : spec.text);
  }
  return out;
}

/** Every file and package loaded, statically, from `entry`. */
function loadedFrom(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (f: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    if (SOURCES.has(f)) for (const p of staticImportsOf(f)) visit(p);
  };
  visit(entry);
  return seen;
}

// The daemon compiles all the code it loads ahead (daemon/keep-code.ts), so every module on the
// path of `run` costs every start: the ESXi code, the preflight checks, the webhook and metrics
// servers (and node:http, node:https) are imported by the code that needs them, when configured,
// before the agent says it runs.
describe('what the daemon loads at start (agent/cli/program.ts, statically)', () => {
  const loaded = loadedFrom('agent/cli/program.ts');

  it('reads what it judges: the daemon and its tick are loaded, ESXi hosts by import()', () => {
    expect(loaded).toContain('agent/daemon.ts');
    expect(loaded).toContain('agent/daemon/tick.ts');
    expect(loaded).toContain('pino');
    expect(IMPORTS.get('agent/daemon.ts')).toContain('agent/daemon/esxi-hosts.ts');
  });

  it('no ESXi, preflight check, webhook or metrics server code, and no node:http or node:https', () => {
    const heavy = (p: string): boolean =>
      under('agent/esxi')(p) ||
      (under('agent/preflight')(p) && p !== 'agent/preflight/watch.ts') ||
      ['agent/daemon/esxi-hosts.ts', 'agent/daemon/esxi-kind.ts', 'agent/actions/esxi.ts', 'agent/daemon/metrics.ts', 'agent/notify/metrics.ts', 'agent/notify/webhook.ts', 'node:http', 'node:https'].includes(p);
    expect([...loaded].filter(heavy)).toEqual([]);
  });
});

describe('function length (agent/**/*.ts)', () => {
  it(`no function is longer than ${MAX_FUNCTION_LINES} lines`, () => {
    const long: string[] = [];
    for (const [file, sf] of SOURCES) {
      const visit = (n: ts.Node): void => {
        if (ts.isFunctionLike(n) && 'body' in n && n.body) {
          const lines = sf.getLineAndCharacterOfPosition(n.getEnd()).line - sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
          if (lines > MAX_FUNCTION_LINES) long.push(`${file}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1} ${nameOf(n)} ${lines} lines`);
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });

  it('measures what it should (a long function is found)', () => {
    const body = Array.from({ length: MAX_FUNCTION_LINES }, (_, i) => `  const a${i} = ${i};`).join('\n');
    const sf = ts.createSourceFile('x.ts', `function long() {\n${body}\n}\n`, ts.ScriptTarget.ES2022, true);
    const fn = sf.statements[0]!;
    expect(sf.getLineAndCharacterOfPosition(fn.getEnd()).line - sf.getLineAndCharacterOfPosition(fn.getStart(sf)).line + 1).toBe(MAX_FUNCTION_LINES + 2);
  });
});

function nameOf(n: ts.Node): string {
  const named = n as ts.Node & { name?: ts.Node };
  if (named.name && ts.isIdentifier(named.name)) return named.name.text;
  const p = n.parent;
  if (p && ts.isVariableDeclaration(p) && ts.isIdentifier(p.name)) return p.name.text;
  if (p && ts.isPropertyAssignment(p) && ts.isIdentifier(p.name)) return p.name.text;
  return '(anonymous)';
}
