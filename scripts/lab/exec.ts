// The one place the lab toolkit runs host commands: argv arrays, never shell strings,
// always with a timeout, and errors that say which command failed and why.
import { execFile } from 'node:child_process';
import { assertNetns } from './names.js';

export interface RunOptions {
  /** Kill the command after this long (default 5 s): a hung `ip` must not hang a test. */
  timeoutMs?: number;
  /** Written to the command's stdin, then stdin is closed (e.g. `ip -batch -`). */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class ExecError extends Error {
  readonly code = 'E_LAB_EXEC';
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
    options?: { cause?: unknown },
  ) {
    const how = signal ? `killed by ${signal}` : `exit ${exitCode ?? '?'}`;
    super(`command failed (${how}): ${argv.join(' ')}${stderrTail ? `: ${stderrTail}` : ''}`, options);
    this.name = 'ExecError';
  }
}

const TAIL = 400;

function tail(s: string): string {
  const t = s.trim();
  return t.length > TAIL ? `...${t.slice(-TAIL)}` : t;
}

export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('run: empty argv'));
  const timeout = opts.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: unknown; signal?: string | null; killed?: boolean };
        const exitCode = typeof e.code === 'number' ? e.code : null;
        const signal = e.killed ? `SIGKILL after ${timeout} ms timeout` : (e.signal ?? null);
        const why = typeof e.code === 'string' ? `${e.code} ${stderr}` : stderr;
        reject(new ExecError(argv, exitCode, signal, tail(why), { cause: err }));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** argv that runs `argv` inside network namespace `name`. */
export function ns(name: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', assertNetns(name), ...argv];
}
