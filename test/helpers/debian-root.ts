// A fresh Debian root (mmdebstrap) and a real systemd booted in it (systemd-nspawn -b), for the
// package and unit tests. The container has a network namespace of its own; commands run inside
// through nsenter (the host has no systemd/machined to ask).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { run, type RunResult } from '../../scripts/lab/exec.js';
import { sleep, until } from './agent-lab.js';

/**
 * The Debian mirror the host's apt uses (first `URIs:`/`deb` line of the sources that is not a
 * security archive), so the test goes through the same mirror or proxy as setup.sh did.
 */
export function aptMirror(): string {
  const files: string[] = [];
  try {
    files.push('/etc/apt/sources.list');
    for (const f of readdirSync('/etc/apt/sources.list.d')) if (/\.(list|sources)$/.test(f)) files.push(join('/etc/apt/sources.list.d', f));
  } catch {
    /* no sources.list.d */
  }
  for (const f of files) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)/gm)) {
      const uri = m[1]!;
      if (/\/debian\/?$/.test(uri) && !/security/.test(uri)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * Debian `suite` minbase plus systemd and dbus (to boot), then each local .deb in `debs` installed
 * by apt inside the new root (with its dependencies from the mirror), into `dir`. Nothing is
 * cached: every run downloads. (A .deb path in mmdebstrap's --include fails in root mode: dpkg in
 * the chroot cannot see apt's temporary copy; hence the hooks.)
 */
export async function mmdebstrap(dir: string, suite: string, debs: readonly string[]): Promise<RunResult> {
  const hooks = debs.flatMap((d) => {
    if (!/^\/[A-Za-z0-9_./+~-]+\.deb$/.test(d)) throw new Error(`mmdebstrap: not a .deb path: ${d}`);
    return [`--customize-hook=copy-in ${d} /tmp`, `--customize-hook=chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/${basename(d)}`];
  });
  return run(['mmdebstrap', '--variant=minbase', '--mode=root', '--include=systemd-sysv,dbus', ...hooks, suite, dir, aptMirror()], { timeoutMs: 600_000 });
}

export interface Container {
  readonly nspawn: ChildProcess;
  /** PID (host view) of the container's PID 1, systemd. */
  readonly pid1: number;
  /** Run argv inside the container (all its namespaces). */
  exec(argv: readonly string[], timeoutMs?: number): Promise<RunResult>;
  /** Like exec, but a non-zero exit is a result. */
  tryExec(argv: readonly string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** systemctl show -p ... as a record. */
  show(unit: string, props: readonly string[]): Promise<Record<string, string>>;
  /** Console output so far (boot messages). */
  console(): string;
  /** Power off (SIGTERM to nspawn: a clean shutdown) and wait; SIGKILL after timeoutMs. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Boot `dir` with systemd as PID 1. --register=no and --keep-unit: the host is not
 * booted by systemd, so there is no machined to register with and no manager to make a scope.
 */
export async function bootContainer(dir: string, bootTimeoutMs = 60_000): Promise<Container> {
  // --private-network: the container's own network namespace (only lo; a lab can be built
  // around it, see buildLab's hostNetnsOfPid), and nspawn keeps CAP_NET_ADMIN for it as root has
  // on a real host. Measured: --network-namespace-path=/run/netns/LAB instead drops CAP_NET_ADMIN
  // from the container and mounts a /sys whose class/net is the namespace nspawn started in
  // (eth0, ifb0...), not the lab's, so the agent watched 0 ports and could shut none.
  // SYSTEMD_NSPAWN_API_VFS_WRITABLE: /sys writable as on a host (nspawn's default is read-only,
  // which would push the agent off its sysfs link-down route onto `ip link`).
  const argv = ['systemd-nspawn', '-q', '-b', '-D', dir, '--register=no', '--keep-unit', '--console=passive', '--private-network'];
  const nspawn = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: '1' } });
  let out = '';
  nspawn.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-20_000)));
  nspawn.stderr!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-20_000)));
  const exited = new Promise<void>((r) => nspawn.once('close', () => r()));
  let pid1 = 0;
  const found = await until(async () => {
    if (nspawn.exitCode !== null) return true;
    const r = await run(['pgrep', '-P', String(nspawn.pid), '-x', 'systemd']).catch(() => null);
    pid1 = Number(r?.stdout.trim().split('\n')[0] ?? 0);
    return pid1 > 0;
  }, 15_000, 100);
  if (!found || pid1 === 0) {
    nspawn.kill('SIGKILL');
    throw new Error(`systemd-nspawn did not start systemd in ${dir}: ${out.slice(-2000)}`);
  }
  const enter = (a: readonly string[]) => ['nsenter', '-t', String(pid1), '-m', '-u', '-i', '-n', '-p', '--', ...a];
  const c: Container = {
    nspawn,
    pid1,
    exec: (a, timeoutMs = 30_000) => run(enter(a), { timeoutMs }),
    tryExec: async (a, timeoutMs = 30_000) => {
      try {
        const r = await run(enter(a), { timeoutMs });
        return { code: 0, ...r };
      } catch (err) {
        const e = err as { exitCode?: number | null; stderrTail?: string };
        return { code: e.exitCode ?? -1, stdout: '', stderr: e.stderrTail ?? String(err) };
      }
    },
    show: async (unit, props) => {
      const r = await run(enter(['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)]), { timeoutMs: 10_000 });
      return Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    },
    console: () => out,
    stop: async (timeoutMs = 30_000) => {
      if (nspawn.exitCode !== null) return;
      nspawn.kill('SIGTERM');
      const t = setTimeout(() => nspawn.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(t);
    },
  };
  // Booted: the manager answers and has finished start-up (degraded counts: a unit a minimal root
  // cannot run, e.g. a getty, says nothing about ours).
  const up = await until(async () => {
    const r = await c.tryExec(['systemctl', 'is-system-running'], 5000);
    return /^(running|degraded)/.test(r.stdout.trim());
  }, bootTimeoutMs, 250);
  if (!up) {
    await c.stop(5000);
    throw new Error(`the container's systemd did not finish booting: ${out.slice(-2000)}`);
  }
  await sleep(0);
  return c;
}
