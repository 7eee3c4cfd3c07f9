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
