// Lab helper processes (observe.mjs, storm-control-run.js) speak one protocol on stdout: a
// first line {"ready":true,...} once they run, then one JSON result line when they end (at
// their own deadline or on SIGTERM). This runs such a process with a hard kill deadline.
import { spawn } from 'node:child_process';

export interface JsonProc<R, T> {
  /** The ready line. */
  ready: R;
  /** The child's process id. */
  pid: number | undefined;
  /** Ask the process to finish (SIGTERM unless it already ended) and return its result line. */
  stop(): Promise<T>;
  /** Its result line, once it ends by itself. */
  done(): Promise<T>;
}

const START_TIMEOUT_MS = 5000;

export function startJsonProc<R, T>(argv: readonly string[], what: string, killAfterMs: number): Promise<JsonProc<R, T>> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('startJsonProc: empty argv'));
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Never outlive the intended duration by much, whatever the caller does.
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve(code);
    });
    child.on('error', (err) => {
      stderr += String(err);
      clearTimeout(killer);
      resolve(null);
    });
  });
  const fail = (why: string): Error => new Error(`${what} ${why}: ${argv.join(' ')}: ${stderr.trim().slice(-400)}`);
  const result = async (): Promise<T> => {
    const code = await exited;
    const lines = stdout.trim().split('\n');
    if (code !== 0 || lines.length < 2) throw fail(`exited ${code} without a result`);
    return JSON.parse(lines[lines.length - 1] as string) as T;
  };

  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(fail('did not start'));
    }, START_TIMEOUT_MS);
    const onData = (): void => {
      const nl = stdout.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      child.stdout.off('data', onData);
      resolve({
        ready: JSON.parse(stdout.slice(0, nl)) as R,
        pid: child.pid,
        stop: () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return result();
        },
        done: result,
      });
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(t);
      if (!stdout.includes('\n')) reject(fail(`exited ${code} before ready`));
    });
  });
}
