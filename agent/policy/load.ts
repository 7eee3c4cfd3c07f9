// Policy loading: text -> Policy or a list of every error with its file:line:col.
//   parsePolicy     pure: checks that need no parser (size, NUL, nesting), YAML parse, then
//                   schema.ts (each value on its own) and resolve.ts (defaults, cross-checks).
//   loadPolicyFile  the I/O edge: read one file with a size cap, then parsePolicy.
// A directory of files will be: loadPolicyFile per file -> SchemaWalker inputs -> merge ->
// resolvePolicy once (resolve.ts already takes positions from each value, not from one file).
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import type { Policy } from '../types.js';
import { checkAliases } from './aliases.js';
import { MAX_FLOW_DEPTH, MAX_POLICY_BYTES } from './defaults.js';
import { PolicyError, type PolicyErrorCode } from './errors.js';
import { resolvePolicy } from './resolve.js';
import { SchemaWalker } from './schema.js';

export type PolicyResult = { policy: Policy } | { errors: PolicyError[] };

/** YAML errors past this many are summarised: one syntax fault can yield hundreds of follow-ups. */
const MAX_YAML_ERRORS = 20;
/** Schema errors past this many are summarised (every one is still counted). */
const MAX_ERRORS = 100;

/**
 * Parse and validate one policy file's text. Never throws: every problem, including parser
 * failures, comes back as a PolicyError. `file` is used for messages and `policy.file` as given.
 */
export function parsePolicy(text: string, file: string): PolicyResult {
  return parseWithHash(text, file, () => sha12(Buffer.from(text, 'utf8')));
}

/**
 * Read and parse one policy file. I/O problems become E_POLICY_IO at line 0 col 0; the hash is
 * of the bytes on disk.
 */
export async function loadPolicyFile(path: string): Promise<PolicyResult> {
  let fh: FileHandle | undefined;
  let bytes: Buffer;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    if (st.isDirectory()) return fileError('E_POLICY_IO', path, 'is a directory (give one policy file)');
    if (!st.isFile()) return fileError('E_POLICY_IO', path, 'not a regular file');
    if (st.size > MAX_POLICY_BYTES) return tooLarge(path, st.size);
    // Read at most one byte past the cap: a file that grows while we read is still refused.
    const buf = Buffer.alloc(MAX_POLICY_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    if (n > MAX_POLICY_BYTES) return tooLarge(path, n);
    bytes = buf.subarray(0, n);
  } catch (cause) {
    const c = cause as NodeJS.ErrnoException;
    return fileError('E_POLICY_IO', path, `cannot read: ${c.code ?? ''}${c.code ? ' ' : ''}${c.message}`, cause);
  } finally {
    await fh?.close().catch(() => undefined);
  }
  const text = bytes.toString('utf8');
  if (!isUtf8(bytes)) {
    // Report NUL first if there is one (the usual sign of a binary file), else the first byte
    // that did not decode (shown as U+FFFD).
    const nul = text.indexOf('\0');
    const bad = text.indexOf('\uFFFD');
    const at = nul >= 0 && (bad < 0 || nul < bad) ? nul : bad;
    const what = at === nul ? 'contains a NUL byte' : 'is not valid UTF-8';
    return { errors: [errorAt('E_POLICY_BINARY', path, text, at, `${what}: a policy must be UTF-8 text`)] };
  }
  return parseWithHash(text, path, () => sha12(bytes));
}

function parseWithHash(text: string, file: string, hash: () => string): PolicyResult {
  try {
    return parseUnsafe(text, file, hash);
  } catch (cause) {
    // The yaml parser and our walker are meant never to throw; if one does anyway the caller
    // still gets an error, never a crash (a bad policy on reload must keep the old one).
    const message = cause instanceof Error ? cause.message : String(cause);
    return fileError('E_POLICY_YAML', file, `parser failed: ${message}`, cause);
  }
}

function parseUnsafe(text: string, file: string, hash: () => string): PolicyResult {
  const size = Buffer.byteLength(text, 'utf8');
  if (size > MAX_POLICY_BYTES) return tooLarge(file, size);
  const nul = text.indexOf('\0');
  if (nul >= 0) return { errors: [errorAt('E_POLICY_BINARY', file, text, nul, 'contains a NUL byte: a policy must be UTF-8 text')] };
  const deep = deepFlowOffset(text);
  if (deep >= 0) {
    // The yaml parser recurses per flow level: thousands of `[` cost seconds and stack, for a
    // structure no policy needs (a policy is at most four levels deep).
    return { errors: [errorAt('E_POLICY_YAML', file, text, deep, `flow collections nested deeper than ${MAX_FLOW_DEPTH}`)] };
  }

  const lc = new LineCounter();
  // uniqueKeys off: schema.ts reports duplicate keys itself, with the field path.
  // prettyErrors off: messages stay one line; positions come from the LineCounter.
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: false });
  const yamlErrors = [...doc.errors, ...doc.warnings];
  if (yamlErrors.length > 0) {
    const seen = new Set<string>();
    const errors: PolicyError[] = [];
    for (const e of yamlErrors) {
      const p = lc.linePos(e.pos[0]);
      const line = Math.max(1, p.line);
      const col = Math.max(1, p.col);
      const message = `${e.message} (${e.code})`;
      const key = `${line}:${col}:${message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      errors.push(new PolicyError({ code: 'E_POLICY_YAML', file, line, col, field: '(yaml)', message, cause: e }));
    }
    return { errors: capErrors(errors, MAX_YAML_ERRORS, 'YAML errors') };
  }
  if (doc.contents === null) {
    return { errors: [new PolicyError({ code: 'E_POLICY_EMPTY', file, line: 1, col: 1, field: '(document)', message: 'no content: a policy needs at least `version: 1`' })] };
  }

  const aliasErrors = checkAliases(doc, lc, file);
  if (aliasErrors.length > 0) return { errors: aliasErrors };

  const walker = new SchemaWalker(file, doc, lc);
  const input = walker.readPolicy();
  const { policy, errors } = resolvePolicy(input, file, '');
  const all = [...walker.errors, ...errors];
  if (all.length > 0) return { errors: capErrors(all, MAX_ERRORS, 'errors') };
  policy.hash = hash();
  return { policy };
}

/**
 * Errors in file order (stable for errors at the same spot), at most `max` of them plus one line
 * saying how many more there were: a file of 50,000 bad keys should not print 50,000 lines.
 */
function capErrors(errors: PolicyError[], max: number, what: string): PolicyError[] {
  const sorted = errors
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.line - b.e.line || a.e.col - b.e.col || a.i - b.i)
    .map((x) => x.e);
  if (sorted.length <= max) return sorted;
  const shown = sorted.slice(0, max);
  const last = shown[shown.length - 1] as PolicyError;
  shown.push(
    new PolicyError({ code: last.code, file: last.file, line: last.line, col: last.col, field: '(document)', message: `${sorted.length - max} more ${what} not shown` }),
  );
  return shown;
}

/**
 * Offset of the first `[` or `{` that opens a flow collection more than MAX_FLOW_DEPTH deep, or
 * -1. Deliberately simple: skips comments, ignores quoting. Brackets inside quoted strings can
 * only make it count more, and a policy never has 33 unclosed brackets, so it cannot refuse a
 * file a person would write; it exists to stop pathological input before the parser recurses.
 */
function deepFlowOffset(text: string): number {
  let depth = 0;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (comment) {
      if (c === 10) comment = false;
      continue;
    }
    if (c === 35 /* # */ && (i === 0 || /\s/.test(text[i - 1] ?? ''))) comment = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > MAX_FLOW_DEPTH) return i;
    } else if ((c === 93 /* ] */ || c === 125) /* } */ && depth > 0) depth--;
  }
  return -1;
}

function sha12(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 12);
}

function tooLarge(file: string, size: number): PolicyResult {
  return fileError('E_POLICY_SIZE', file, `${size} bytes is larger than the ${MAX_POLICY_BYTES}-byte limit for a policy file`);
}

function fileError(code: PolicyErrorCode, file: string, message: string, cause?: unknown): PolicyResult {
  return { errors: [new PolicyError({ code, file, line: 0, col: 0, field: '(file)', message, cause })] };
}

/** An error at a string offset, with 1-based line and col counted in UTF-16 units like the yaml package. */
function errorAt(code: PolicyErrorCode, file: string, text: string, offset: number, message: string): PolicyError {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return new PolicyError({ code, file, line, col: offset - start + 1, field: '(document)', message });
}
