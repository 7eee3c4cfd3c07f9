import { execFile } from 'node:child_process';

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
}

export class HookError extends Error {
  readonly code: string;
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderrTail: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = signal === 'SIGTERM' || signal === 'SIGKILL' ? 'E_HOOK_TIMEOUT' : 'E_HOOK_FAILED';
  }
}

/** Run argv (never a shell string) with a hard timeout. Rejects with HookError on non-zero exit or timeout. */
export function runArgv(argv: readonly string[], timeoutMs: number): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('empty argv'));
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const durationMs = performance.now() - t0;
      if (err) {
        const e = err as NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals | null };
        const exitCode = typeof e.code === 'number' ? e.code : null;
        const tail = String(stderr ?? '').slice(-500);
        reject(new HookError(`${argv.join(' ')} failed: ${tail.trim() || e.message}`, argv, exitCode, e.signal ?? null, tail, { cause: err }));
        return;
      }
      resolve({ stdout: String(stdout), stderr: String(stderr), exitCode: 0, signal: null, durationMs });
    });
  });
}
