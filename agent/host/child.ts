import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

// Children that never outlive the agent. Each runs in its own process group (detached), so a
// stop or a timeout kills the whole group: a hook `sh -c '...; sleep 60'` leaves no `sleep`
// behind. A long-lived child (`bridge monitor fdb`) also gets PR_SET_PDEATHSIG through util-linux
// `setpriv --pdeathsig KILL` (Debian's util-linux is Priority: required, so always there): the
// kernel kills it when the agent dies, even by kill -9, when no code of ours runs. Chosen over a
// native spawn helper (the addon has none, and forking from a N-API thread under libuv is
// fragile) and over a stdin-EOF wrapper (bridge does not read stdin; a wrapper is one more
// process). The death signal follows the thread that forked: libuv forks from the main thread,
// which lives as long as the process.

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
});

/** Spawn `file args` in its own process group; tied to our life (pdeathsig) when `tied`. */
export function spawnGroup(file: string, args: readonly string[], opts: SpawnOptions & { tied?: boolean } = {}): ChildProcess {
  const { tied, ...rest } = opts;
  const [f, a] = tied && SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, [...args]];
  return spawn(f, a, { ...rest, detached: true });
}

/** Signal a child's whole process group (never throws: it may be gone already). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // gone
    }
  }
}
