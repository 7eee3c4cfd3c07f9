// A real OpenSSH sshd (Debian openssh-server, /usr/sbin/sshd) inside the stand-in ESXi namespace,
// listening on the out-of-band management address, key-only, with the stand-in tools first in
// the remote PATH. The agent under test reaches it from ${p}agent exactly as it would reach an
// ESXi host: `ssh -i KEY -o StrictHostKeyChecking=yes -o UserKnownHostsFile=FILE root@192.168.254.1`.
//
// Files (all in the lab directory, mode 0700, removed at teardown): ssh_host_ed25519_key (host
// key), id_ed25519 (client key), authorized_keys, known_hosts (pinned at first start; NOT updated
// by rotateHostKey, so strict clients see a changed key), known_hosts.current (always the live
// key, used by the readiness probe), sshd_config, sshd.pid, sshd.log.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, ns } from '../exec.js';
import type { EsxiLab } from './lab.js';

/** Where the stand-in's `python` (a link to python3) and its `vmware` package live. */
export interface StandinPython {
  bin: string;
  lib: string;
}

export interface SshPaths {
  hostKey: string;
  clientKey: string;
  authorizedKeys: string;
  knownHosts: string;
  knownHostsCurrent: string;
  config: string;
  pidFile: string;
  log: string;
  controlPath: string;
}

export interface SshTarget {
  host: string;
  /** Same as host: the field name the agent's EsxiHostPolicy uses. */
  address: string;
  port: number;
  user: 'root';
  identityFile: string;
  knownHostsFile: string;
  /** `SHA256:...` of the host key sshd serves now (as `ssh-keygen -l` prints it). */
  hostKeyFingerprint: string;
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const SSHD = '/usr/sbin/sshd';
const PORT = 22;
const READY_TIMEOUT_MS = 10_000;

export function sshPaths(lab: Pick<EsxiLab, 'dir'>): SshPaths {
  const d = lab.dir;
  return {
    hostKey: join(d, 'ssh_host_ed25519_key'),
    clientKey: join(d, 'id_ed25519'),
    authorizedKeys: join(d, 'authorized_keys'),
    knownHosts: join(d, 'known_hosts'),
    knownHostsCurrent: join(d, 'known_hosts.current'),
    config: join(d, 'sshd_config'),
    pidFile: join(d, 'sshd.pid'),
    log: join(d, 'sshd.log'),
    controlPath: join(d, 'cm'),
  };
}

/**
 * Pure: sshd_config. StrictModes no because the lab directory lives under /tmp (world-writable
 * parent), which StrictModes would reject for authorized_keys. SHLVL=1 keeps root's bash from
 * sourcing ~/.bashrc for ssh commands (bash does so only for a top-level shell): this machine's
 * .bashrc runs `pyenv init` and prepends pyenv's shims to PATH, which would put tens of ms and a
 * different python3 in front of every stand-in call. ESXi's own shell (busybox sh) reads no
 * such file, so this is closer to the real host, not further.
 */
export function sshdConfig(p: SshPaths, listen: string, labDir: string, standinBin: string, python: StandinPython | null = null): string {
  for (const s of [labDir, standinBin, ...(python ? [python.bin, python.lib] : [])]) {
    if (/[\s"'\\]/.test(s)) throw new Error(`path unusable in sshd_config: ${JSON.stringify(s)}`);
  }
  return [
    `ListenAddress ${listen}`,
    `Port ${PORT}`,
    `HostKey ${p.hostKey}`,
    `AuthorizedKeysFile ${p.authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'AuthenticationMethods publickey',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    `PidFile ${p.pidFile}`,
    // `python` as on ESXi (/bin/python) with the stand-in `vmware.vsi` importable; a lab built
    // with python: false has neither (a host whose interpreter is missing or refused).
    // No PYTHONDONTWRITEBYTECODE (nor a PYTHONPYCACHEPREFIX in the lab dir): with either, the
    // stand-in's counter stream fell to ~2.5 blocks/s, its blocks came ~800 ms apart under a storm
    // and esxi-agent's loop tests never tripped (bisected: 07aff37). Bytecode lands in the
    // checkout's __pycache__/, which git ignores.
    python
      ? `SetEnv PATH=${python.bin}:${standinBin}:/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH=${python.lib} STORMBREAKER_ESXI_LAB=${labDir} STORMBREAKER_FUSE_DIR=${labDir} SHLVL=1`
      : `SetEnv PATH=${standinBin}:/usr/sbin:/usr/bin:/sbin:/bin STORMBREAKER_ESXI_LAB=${labDir} STORMBREAKER_FUSE_DIR=${labDir} SHLVL=1`,
    'MaxSessions 32',
    'MaxStartups 64:30:128',
    'LogLevel VERBOSE',
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    'AllowTcpForwarding no',
    'X11Forwarding no',
    'AllowAgentForwarding no',
    '',
  ].join('\n');
}

/** `SHA256:<base64 without padding>` of an OpenSSH public key line, as ssh-keygen -l prints it. */
export function fingerprint(pubLine: string): string {
  const blob = pubLine.trim().split(/\s+/)[1];
  if (!blob) throw new Error('not an OpenSSH public key line');
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** Pure: a known_hosts line for host:port (the `[host]:port` form for ports other than 22). */
export function knownHostsLine(host: string, port: number, pubLine: string): string {
  const [type, blob] = pubLine.trim().split(/\s+/);
  if (!type || !blob) throw new Error('not an OpenSSH public key line');
  return `${port === 22 ? host : `[${host}]:${port}`} ${type} ${blob}\n`;
}

async function keygen(path: string, comment: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
}

async function writeKnownHosts(lab: EsxiLab, file: string): Promise<void> {
  const pub = await readFile(`${sshPaths(lab).hostKey}.pub`, 'utf8');
  await writeFile(file, knownHostsLine(lab.mgmt.esxIp, PORT, pub), { mode: 0o600 });
}

/** Host and client keys, authorized_keys and known_hosts, created once per lab. */
async function ensureKeys(lab: EsxiLab): Promise<void> {
  const p = sshPaths(lab);
  if (!existsSync(p.hostKey)) await keygen(p.hostKey, `${lab.ns.esx} host key`);
  if (!existsSync(p.clientKey)) await keygen(p.clientKey, `${lab.ns.agent} agent key`);
  await writeFile(p.authorizedKeys, await readFile(`${p.clientKey}.pub`, 'utf8'), { mode: 0o600 });
  if (!existsSync(p.knownHosts)) await writeKnownHosts(lab, p.knownHosts);
  await writeKnownHosts(lab, p.knownHostsCurrent);
}

function clientOptions(lab: EsxiLab, knownHostsFile: string): string[] {
  const p = sshPaths(lab);
  return [
    '-F', 'none',
    '-i', p.clientKey,
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHostsFile}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'UpdateHostKeys=no',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', 'ConnectTimeout=3',
    '-o', 'LogLevel=ERROR',
  ];
}

/** POSIX single-quoting of one argv element for the remote shell command line. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface SshArgvOptions {
  /** Ride on an open master connection (openMaster). */
  controlPath?: string;
  /** known_hosts to check against (default: the pinned one). */
  knownHostsFile?: string;
}

/** argv (run from the host) of one ssh command from ${p}agent to the stand-in: quoted remote argv. */
export function sshArgv(lab: EsxiLab, remote: readonly string[], o: SshArgvOptions = {}): string[] {
  const p = sshPaths(lab);
  const mux = o.controlPath ? ['-o', 'ControlMaster=no', '-S', o.controlPath] : ['-o', 'ControlMaster=no', '-S', 'none'];
  return ns(lab.ns.agent, [
    'ssh', ...clientOptions(lab, o.knownHostsFile ?? p.knownHosts), ...mux, `root@${lab.mgmt.esxIp}`, '--',
    remote.map(shellQuote).join(' '),
  ]);
}

/** Run argv, never throwing on a non-zero exit: callers check code/stderr (refusals are expected). */
export function runCapture(argv: readonly string[], timeoutMs = 15_000): Promise<SshResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('runCapture: empty argv'));
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

export function sshRun(lab: EsxiLab, remote: readonly string[], o: SshArgvOptions = {}): Promise<SshResult> {
  return runCapture(sshArgv(lab, remote, o));
}

function readPid(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

/** Pids of sshd listeners whose command line names a path containing `needle` (a lab dir). */
export function sshdPidsFor(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const c = cmdline(Number(e));
    // The listener retitles itself "sshd: /usr/sbin/sshd -D ... [listener] ..."; sessions
    // ("sshd: root@notty") do not carry the config path and are ended with their namespace.
    if ((c.startsWith(`${SSHD} `) || c.startsWith(`sshd: ${SSHD} `)) && c.includes(needle)) out.push(Number(e));
  }
  return out;
}

async function killAndWait(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 2000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Stop the lab's sshd listener (pid file, checked against its command line, and any other). */
export async function stopSshd(lab: Pick<EsxiLab, 'dir'>): Promise<void> {
  const p = sshPaths(lab);
  const pids = new Set(sshdPidsFor(lab.dir));
  const fromFile = readPid(p.pidFile);
  // A pid file can outlive its process and the pid be reused: only a pid whose command line is
  // this lab's sshd is ours to kill.
  if (fromFile !== null && cmdline(fromFile).includes(lab.dir)) pids.add(fromFile);
  await killAndWait([...pids]);
  await rm(p.pidFile, { force: true });
}

/** Start sshd in ${p}esx and wait until a strict key-only ssh from ${p}agent gets in. */
export async function startSshd(lab: EsxiLab, opts: { timeoutMs?: number } = {}): Promise<{ pid: number }> {
  const p = sshPaths(lab);
  await stopSshd(lab);
  await ensureKeys(lab);
  await writeFile(p.config, sshdConfig(p, lab.mgmt.esxIp, lab.dir, lab.standinBin, lab.python), { mode: 0o600 });
  // Privilege separation directory; Debian creates it from the service unit, which we do not use.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  await run([SSHD, '-t', '-f', p.config]);
  const logFd = openSync(p.log, 'a', 0o600);
  const child = spawn('ip', ['netns', 'exec', lab.ns.esx, SSHD, '-D', '-e', '-f', p.config], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? READY_TIMEOUT_MS);
  for (;;) {
    if (exited !== undefined) throw new Error(`sshd exited (${String(exited)}): ${await logTail(p.log)}`);
    const r = await sshRun(lab, ['true'], { knownHostsFile: p.knownHostsCurrent });
    if (r.code === 0) break;
    if (Date.now() > deadline) {
      await stopSshd(lab);
      throw new Error(`sshd not reachable within timeout: ${r.stderr.trim()} / ${await logTail(p.log)}`);
    }
    await sleep(100);
  }
  if (child.pid === undefined) throw new Error('sshd spawn gave no pid');
  return { pid: child.pid };
}

async function logTail(file: string): Promise<string> {
  const t = await readFile(file, 'utf8').catch(() => '');
  return t.trim().split('\n').slice(-5).join(' | ');
}

/**
 * New host key, sshd restarted. known_hosts (the pinned file) keeps the OLD key, so a strict
 * client now fails with "REMOTE HOST IDENTIFICATION HAS CHANGED"; trustHostKey() re-pins.
 * Connections already open (a master) keep working, as on a real host.
 */
export async function rotateHostKey(lab: EsxiLab): Promise<string> {
  await stopSshd(lab);
  await keygen(sshPaths(lab).hostKey, `${lab.ns.esx} host key (rotated)`);
  await startSshd(lab);
  return sshTarget(lab).hostKeyFingerprint;
}

/** Re-pin known_hosts to the key sshd serves now (what an operator does after a verified change). */
export async function trustHostKey(lab: EsxiLab): Promise<void> {
  await writeKnownHosts(lab, sshPaths(lab).knownHosts);
}

export function sshTarget(lab: EsxiLab): SshTarget {
  const p = sshPaths(lab);
  return {
    host: lab.mgmt.esxIp,
    address: lab.mgmt.esxIp,
    port: PORT,
    user: 'root',
    identityFile: p.clientKey,
    knownHostsFile: p.knownHosts,
    hostKeyFingerprint: fingerprint(readFileSync(`${p.hostKey}.pub`, 'utf8')),
  };
}

export interface Master {
  controlPath: string;
  close(): Promise<void>;
}

/** One long-lived ssh connection from ${p}agent (ControlMaster); commands ride on it with sshArgv({controlPath}). */
export async function openMaster(lab: EsxiLab): Promise<Master> {
  const p = sshPaths(lab);
  await rm(p.controlPath, { force: true });
  const argv = ns(lab.ns.agent, [
    'ssh', ...clientOptions(lab, p.knownHostsCurrent), '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', '-S', p.controlPath,
    '-N', `root@${lab.mgmt.esxIp}`,
  ]);
  const [file, ...args] = argv;
  const child = spawn(file!, args, { stdio: 'ignore', detached: true });
  child.unref();
  const check = ns(lab.ns.agent, ['ssh', '-S', p.controlPath, '-O', 'check', `root@${lab.mgmt.esxIp}`]);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while ((await runCapture(check)).code !== 0) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('ssh master did not come up');
    }
    await sleep(50);
  }
  return {
    controlPath: p.controlPath,
    close: async () => {
      await runCapture(ns(lab.ns.agent, ['ssh', '-S', p.controlPath, '-O', 'exit', `root@${lab.mgmt.esxIp}`]));
      if (child.exitCode === null) child.kill('SIGTERM');
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
