// While a probe or guard-up holds host state (the nft table, a port up under isolation), a
// signal or a crash must not skip the cleanup: `finally` blocks do not run when Node dies of
// SIGINT/SIGTERM or of an uncaught exception. The cleanup is synchronous (sysfs write,
// execFileSync nft) because no promise settles once the process is on its way out; it runs at
// most once.
import { constants } from 'node:os';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Until the returned function is called: on SIGINT/SIGTERM/SIGHUP run `cleanup` and exit
 * 128+signo; on any other exit (an uncaught exception included) run `cleanup` too.
 */
export function onInterrupt(cleanup: () => void): () => void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    try {
      cleanup();
    } catch {
      // Best effort: we are exiting either way, and the caller's notes say what is left.
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    once();
    process.exit(128 + (constants.signals[sig] ?? 0));
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', once);
  return () => {
    done = true;
    for (const s of SIGNALS) process.off(s, onSignal);
    process.off('exit', once);
  };
}
