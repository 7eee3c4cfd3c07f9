// Policy errors carry a stable code and the place they were written, so `policy check` can print
// `file:line:col: field: message` (the DESIGN.md contract) and editors/CI can jump to the spot.

/** Stable codes: scripts and tests match on these, never on message text. */
export type PolicyErrorCode =
  /** The file could not be read (missing, unreadable, not a regular file). line/col are 0. */
  | 'E_POLICY_IO'
  /** The file is larger than MAX_POLICY_BYTES, or a directory holds more than MAX_POLICY_FILES; rejected before parsing. line/col are 0. */
  | 'E_POLICY_SIZE'
  /** NUL bytes or invalid UTF-8: not a text file. */
  | 'E_POLICY_BINARY'
  /** No YAML content at all (empty, whitespace or comments only); or a policy directory with no *.yaml/*.yml files (line/col 0). */
  | 'E_POLICY_EMPTY'
  /** YAML syntax error or warning (position from the yaml package), or nesting too deep. */
  | 'E_POLICY_YAML'
  /** Too many alias dereferences (alias bomb) or an alias to an unknown anchor. */
  | 'E_POLICY_ALIAS'
  /** A value of the wrong YAML type (e.g. a string where a number is expected). */
  | 'E_POLICY_TYPE'
  /** A key the schema does not know (typos must not silently fall back to defaults). */
  | 'E_POLICY_UNKNOWN_KEY'
  /** A key written twice in one mapping, a repeated `match` (also across a directory's files), or a repeated role in a list. */
  | 'E_POLICY_DUPLICATE'
  /** A required key is absent (`version` is required in every file of a directory). */
  | 'E_POLICY_MISSING'
  /** A number outside its allowed range, or two numbers that contradict each other. */
  | 'E_POLICY_RANGE'
  /** A string that is not one of the allowed values or does not match its pattern. */
  | 'E_POLICY_VALUE'
  /** `version` present but not a version this agent understands. */
  | 'E_POLICY_VERSION';

export interface PolicyErrorInit {
  code: PolicyErrorCode;
  file: string;
  /** 1-based; 0 when the error concerns the whole file (I/O, size). */
  line: number;
  /** 1-based; 0 when the error concerns the whole file. */
  col: number;
  /** Dotted path of the offending field, e.g. `defaults.floodPps` or `ports[2].role`; `(document)` or `(file)` for whole-file errors. */
  field: string;
  message: string;
  cause?: unknown;
}

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code: PolicyErrorCode;
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly field: string;

  constructor(init: PolicyErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.file = init.file;
    this.line = init.line;
    this.col = init.col;
    this.field = init.field;
  }
}

/**
 * `policies/prod.yaml:14:7: defaults.floodPps: must be > 0`.
 * Whole-file errors (line 0) print as `policies/prod.yaml: (file): ...` like compilers do, since
 * `:0:0` would send an editor to a position that does not exist.
 */
export function formatPolicyError(e: PolicyError): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.col}` : e.file;
  return `${where}: ${oneLine(e.field)}: ${oneLine(e.message)}`;
}

/** One error is one line: a key written as "a\nb" must not split it (control characters escaped). */
function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
