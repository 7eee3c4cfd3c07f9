// Policy loading: text -> Policy or a list of every error with its file:line:col.
//   parsePolicy   pure: checks that need no parser (size, NUL, nesting), YAML parse, then
//                 schema.ts (each value on its own) and resolve.ts (defaults, cross-checks).
//   loadPolicy    the I/O edge: one file (read with a size cap, then as parsePolicy), or a
//                 directory: every *.yaml/*.yml in it, each walked by schema.ts on its own,
//                 merged by merge.ts (precedence documented there), resolved once.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Policy } from '../types.js';
import { checkAliases } from './aliases.js';
import { MAX_FLOW_DEPTH, MAX_POLICY_BYTES, MAX_POLICY_FILES, MAX_POLICY_NODES } from './defaults.js';
import { PolicyError, type PolicyErrorCode } from './errors.js';
import { mergePolicyInputs } from './merge.js';
import { resolvePolicy } from './resolve.js';
import { SchemaWalker, type PolicyInput } from './schema.js';

export type PolicyResult = { policy: Policy } | { errors: PolicyError[] };

/** YAML errors past this many are summarised: one syntax fault can yield hundreds of follow-ups. */
const MAX_YAML_ERRORS = 20;
/** Schema errors past this many are summarised (every one is still counted). */
const MAX_ERRORS = 100;
/**
 * Which names in a policy directory are policy files: what the shell glob `*.yaml *.yml` gives,
 * so dot files (editor locks like `.#x.yaml`, hidden backups) are never loaded by surprise.
 */
const POLICY_FILE_RE = /^[^.].*\.ya?ml$/s;

/**
 * Parse and validate one policy file's text. Never throws: every problem, including parser
 * failures, comes back as a PolicyError. `file` is used for messages and `policy.file` as given.
 */
export function parsePolicy(text: string, file: string): PolicyResult {
  const r = walkText(text, file);
  if (!r.input) return { errors: r.errors };
  return resolveOne(r.input, r.errors, file, () => sha12(Buffer.from(text, 'utf8')));
}

/**
 * Load a policy from a file or a directory. Never throws. I/O problems become E_POLICY_IO at
 * line 0 col 0.
 *
 * A file: `policy.hash` is the sha256 of its bytes on disk (first 12 hex chars).
 *
 * A directory: every `*.yaml` / `*.yml` directly in it (not recursive, no dot files), in name
 * order by UTF-16 code units (`10-base.yaml` < `20-site.yaml`; use numeric prefixes). Settings
 * merge key by key, later files winning; `ports` lists are concatenated in file order, so an
 * earlier file's rule wins on first match (see merge.ts). Every file needs `version: 1`; errors
 * keep each file's own path and line:col; a `match` repeated in two files is an error naming
 * both. `policy.file` is the directory as given; `policy.hash` is the sha256, over the files in
 * name order, of `name NUL byteLength NUL bytes` (so renaming, adding or removing a file
 * changes it too). A directory with no policy files is E_POLICY_EMPTY at 0:0.
 */
export async function loadPolicy(path: string): Promise<PolicyResult> {
  try {
    const st = await stat(path);
    if (st.isDirectory()) return await loadDirectory(path);
    // A FIFO or a device would block the read (and with it every reload after it) or never end.
    if (!st.isFile()) return fileError('E_POLICY_IO', path, 'not a regular file (a FIFO, socket or device is never read)');
  } catch (cause) {
    return fileError('E_POLICY_IO', path, cannotRead(cause), cause);
  }
  const r = await loadText(path);
  if ('errors' in r) return r;
  const w = walkText(r.text, path);
  if (!w.input) return { errors: w.errors };
  return resolveOne(w.input, w.errors, path, () => sha12(r.bytes));
}

/** How long reading a policy may take: a few small files take milliseconds. */
export const POLICY_READ_MS = 5000;

/** A read still pending after its time limit, by path: while it hangs, that path is not read again. */
const hung = new Map<string, number>();

/**
 * loadPolicy with a time limit, as the daemon (start, every reload) and the CLI call it. A file on
 * a hung filesystem (a dead NFS server, a stuck FUSE daemon) never answers its stat or read, and
 * nothing can cancel them: the caller gets an error after `ms` instead of waiting for ever, so a
 * reload keeps the policy in force and says why. Each hung read holds one of libuv's four pool
 * threads (every fs call of the agent shares them), so until it returns the same path is refused
 * at once rather than read again.
 */
export async function loadPolicyFile(path: string, ms = POLICY_READ_MS, load: (p: string) => Promise<PolicyResult> = loadPolicy): Promise<PolicyResult> {
  const since = hung.get(path);
  if (since !== undefined) {
    return fileError('E_POLICY_IO', path, `an earlier read has not returned for ${Math.round((Date.now() - since) / 1000)} s (a hung filesystem?): not read again until it does`);
  }
  const reading = load(path);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  const r = await Promise.race([reading, late]);
  clearTimeout(timer);
  if (r !== null) return r;
  hung.set(path, Date.now());
  void reading.finally(() => hung.delete(path)).catch(() => undefined);
  return fileError('E_POLICY_IO', path, `not read within ${ms} ms (a hung filesystem?)`);
}

async function loadDirectory(dir: string): Promise<PolicyResult> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => POLICY_FILE_RE.test(n));
  } catch (cause) {
    return fileError('E_POLICY_IO', dir, cannotRead(cause), cause);
  }
  // Code-unit order, not localeCompare: the same order on every machine and locale.
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (names.length === 0) return fileError('E_POLICY_EMPTY', dir, 'directory has no *.yaml or *.yml policy files');
  if (names.length > MAX_POLICY_FILES) {
    return fileError('E_POLICY_SIZE', dir, `${names.length} policy files; at most ${MAX_POLICY_FILES} are read from one directory`);
  }

  const files = names.map((n) => join(dir, n));
  const errors: PolicyError[] = [];
  const inputs: PolicyInput[] = [];
  const bytes: Buffer[] = [];
  let fatal = false;
  // One at a time: a policy directory holds a handful of small files, and order matters below.
  for (const file of files) {
    const r = await loadText(file);
    if ('errors' in r) {
      errors.push(...r.errors);
      fatal = true;
      continue;
    }
    bytes.push(r.bytes);
    const w = walkText(r.text, file);
    errors.push(...w.errors);
    if (w.input) inputs.push(w.input);
    else fatal = true;
  }
  const merged = mergePolicyInputs(inputs, dir);
  errors.push(...merged.errors);
  // A file that could not be read or parsed contributes nothing, so cross-checks of the rest
  // would judge a policy nobody wrote; report what each file has on its own and stop.
  if (fatal) return { errors: capErrors(errors, MAX_ERRORS, 'errors', files) };
  return resolveOne(merged.input, errors, dir, () => dirHash(names, bytes), files);
}

/** Stage 2 for one input (one file, or a merged directory), then the hash when all is well. */
function resolveOne(input: PolicyInput, walkErrors: PolicyError[], file: string, hash: () => string, order?: readonly string[]): PolicyResult {
  try {
    const { policy, errors } = resolvePolicy(input, file, '');
    const all = [...walkErrors, ...errors];
    if (all.length > 0) return { errors: capErrors(all, MAX_ERRORS, 'errors', order) };
    policy.hash = hash();
    return { policy };
  } catch (cause) {
    return parserFailed(file, cause);
  }
}

/** Read one file with the size cap and check it is UTF-8 text. */
async function loadText(path: string): Promise<{ text: string; bytes: Buffer } | { errors: PolicyError[] }> {
  let fh: FileHandle | undefined;
  let bytes: Buffer;
  try {
    // O_NONBLOCK: a FIFO swapped in between stat and open must not wedge the open itself.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    // Only reachable inside a policy directory (a `x.yaml/` subdirectory), or if the path
    // changed between stat and open: either way the operator meant something else.
    if (st.isDirectory()) return fileError('E_POLICY_IO', path, 'is a directory (policy directories are not read recursively)');
    if (!st.isFile()) return fileError('E_POLICY_IO', path, 'not a regular file');
    if (st.size > MAX_POLICY_BYTES) return tooLarge(path, st.size);
    // Read at most one byte past the size stat gave (not a 1 MiB buffer per file: a directory
    // is several files): a file that grows while we read is refused, not half read.
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    if (n > st.size) return fileError('E_POLICY_IO', path, 'changed while being read (try again once it is written)');
    bytes = buf.subarray(0, n);
  } catch (cause) {
    return fileError('E_POLICY_IO', path, cannotRead(cause), cause);
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
  return { text, bytes };
}

/**
 * Stage 1 for one file's text: pre-parse checks, YAML, alias check, schema walk. `input` is
 * absent when the file could not be walked at all (then `errors` says why); otherwise `errors`
 * are the walker's, and the input holds every valid value.
 */
function walkText(text: string, file: string): { input?: PolicyInput; errors: PolicyError[] } {
  try {
    return walkUnsafe(text, file);
  } catch (cause) {
    // The yaml parser and our walker are meant never to throw; if one does anyway the caller
    // still gets an error, never a crash (a bad policy on reload must keep the old one).
    return parserFailed(file, cause);
  }
}

function walkUnsafe(text: string, file: string): { input?: PolicyInput; errors: PolicyError[] } {
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
  const many = manyNodesOffset(text);
  if (many >= 0) {
    // The parser's time and memory grow with the nodes: 300,000 `{}` items (900 kB) took 2.6 s
    // and 470 MB. Counted before parsing, so a reload never pays that.
    return { errors: [errorAt('E_POLICY_SIZE', file, text, many, `more than ${MAX_POLICY_NODES} YAML items (lines, flow items): not a policy a person wrote`)] };
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
  return { input, errors: walker.errors };
}

/**
 * Errors in file order (stable for errors at the same spot), at most `max` of them plus one line
 * saying how many more there were: a file of 50,000 bad keys should not print 50,000 lines.
 * With `files` (a directory, in load order) errors are grouped by file in that order; errors
 * about the directory itself come first.
 */
function capErrors(errors: PolicyError[], max: number, what: string, files?: readonly string[]): PolicyError[] {
  const rank = (e: PolicyError): number => files?.indexOf(e.file) ?? 0;
  const sorted = errors
    .map((e, i) => ({ e, i, f: rank(e) }))
    .sort((a, b) => a.f - b.f || a.e.line - b.e.line || a.e.col - b.e.col || a.i - b.i)
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

/**
 * Offset where the text passes MAX_POLICY_NODES items, or -1. Counts what makes parser nodes:
 * lines that are neither blank nor comments, and flow separators (`[`, `{`, `,`). An upper bound
 * on the collections and scalars a parse would build, in one pass, no allocation.
 */
function manyNodesOffset(text: string): number {
  let n = 0;
  let lineHasContent = false;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      if (lineHasContent) n++;
      lineHasContent = false;
      comment = false;
    } else if (comment) continue;
    else if (c === 35 /* # */ && (i === 0 || /\s/.test(text[i - 1] ?? ''))) comment = true;
    else if (c === 91 || c === 123 || c === 44) n++; // [ { ,
    else if (c !== 32 && c !== 9 && c !== 13) lineHasContent = true;
    if (n > MAX_POLICY_NODES) return i;
  }
  return -1;
}

function sha12(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 12);
}

/**
 * A directory's hash: sha256 over each file in load order as `name NUL byteLength NUL bytes`.
 * The name and the length frame each file, so moving a line from one file to the next, or
 * renaming a file (which may change precedence), changes the hash.
 */
function dirHash(names: readonly string[], bytes: readonly Buffer[]): string {
  const h = createHash('sha256');
  names.forEach((name, i) => {
    const b = bytes[i] ?? Buffer.alloc(0);
    h.update(`${name}\0${b.length}\0`, 'utf8').update(b);
  });
  return h.digest('hex').slice(0, 12);
}

function cannotRead(cause: unknown): string {
  const c = cause as NodeJS.ErrnoException;
  return `cannot read: ${c.code ?? ''}${c.code ? ' ' : ''}${c.message}`;
}

function parserFailed(file: string, cause: unknown): { errors: PolicyError[] } {
  const message = cause instanceof Error ? cause.message : String(cause);
  return fileError('E_POLICY_YAML', file, `parser failed: ${message}`, cause);
}

function tooLarge(file: string, size: number): { errors: PolicyError[] } {
  return fileError('E_POLICY_SIZE', file, `${size} bytes is larger than the ${MAX_POLICY_BYTES}-byte limit for a policy file`);
}

function fileError(code: PolicyErrorCode, file: string, message: string, cause?: unknown): { errors: PolicyError[] } {
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
