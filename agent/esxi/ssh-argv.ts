// The OpenSSH command lines the agent runs to reach an ESXi host. Pure: the only place where
// SSH options are chosen, so a test can read exactly what a real host will see.
//
// One long-lived connection per host: a ControlMaster (`ssh -M -N`) owns the TCP connection and
// the authentication; the counter stream and every command ride on it as extra sessions
// (`ssh -S ctl`), so a command costs a channel open, not a handshake. Every invocation carries
// the full, strict option set anyway: if the master has died, ssh would connect on its own, and
// that connection must be exactly as strict (key only, pinned host key, timeouts).
import type { EsxiHostPolicy } from '../types.js';

export type SshTarget = Pick<
  EsxiHostPolicy,
  'address' | 'port' | 'user' | 'identityFile' | 'knownHostsFile' | 'connectTimeoutMs'
>;

/** Seconds for ssh's whole-second options, at least 1. */
const secs = (ms: number): string => String(Math.max(1, Math.ceil(ms / 1000)));

/**
 * Options shared by the master and every session. `-F none`: no ~/.ssh/config or
 * /etc/ssh/ssh_config can loosen them (a ProxyCommand, an agent, a different key).
 */
export function sshOptions(t: SshTarget, controlPath: string): string[] {
  const o = (kv: string): string[] => ['-o', kv];
  return [
    '-F', 'none',
    '-i', t.identityFile,
    '-p', String(t.port),
    '-l', t.user,
    '-S', controlPath,
    ...o('BatchMode=yes'), // never prompt: no password, no "continue connecting?"
    ...o('StrictHostKeyChecking=yes'), // an unknown or changed host key is refused, never learned
    ...o(`UserKnownHostsFile=${t.knownHostsFile}`),
    ...o('GlobalKnownHostsFile=/dev/null'),
    ...o('UpdateHostKeys=no'), // the pinned file is the operator's, not ours to rewrite
    ...o('CheckHostIP=no'),
    ...o('IdentitiesOnly=yes'),
    ...o('IdentityAgent=none'),
    ...o('PubkeyAuthentication=yes'),
    ...o('PasswordAuthentication=no'),
    ...o('KbdInteractiveAuthentication=no'),
    ...o('GSSAPIAuthentication=no'),
    ...o(`ConnectTimeout=${secs(t.connectTimeoutMs)}`),
    // A dead peer is noticed by our own stale timer first; this bounds how long ssh itself holds on.
    ...o('ServerAliveInterval=1'),
    ...o('ServerAliveCountMax=3'),
    ...o('ClearAllForwardings=yes'),
    ...o('ForwardAgent=no'),
    ...o('ForwardX11=no'),
    ...o('RequestTTY=no'),
    ...o('LogLevel=ERROR'),
  ];
}

/**
 * The master: authenticates, then holds the connection open for sessions. Its own session only
 * reads its stdin, which is a pipe from the agent: if the agent dies (even by SIGKILL, outside a
 * systemd unit that would reap it), the pipe closes, the remote `cat` ends, and the master exits
 * with it instead of lingering on the ESXi host. (`-N` would hold it open forever.)
 */
export const MASTER_REMOTE_COMMAND = 'cat >/dev/null';
export function masterArgv(t: SshTarget, controlPath: string): string[] {
  return ['ssh', ...sshOptions(t, controlPath), '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', '--', t.address, MASTER_REMOTE_COMMAND];
}

/** One session on the master running `remoteCommand` (already one quoted shell line). */
export function sessionArgv(t: SshTarget, controlPath: string, remoteCommand: string): string[] {
  return ['ssh', ...sshOptions(t, controlPath), '-o', 'ControlMaster=no', '-T', '--', t.address, remoteCommand];
}

/**
 * POSIX single quoting of one word: the remote side receives ONE command line for its shell
 * (ESXi: busybox ash), so every argv element is quoted and nothing in it is ever interpreted.
 */
export function shQuote(s: string): string {
  if (s.includes('\0')) throw new Error('NUL byte in a remote argument');
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An argv as one remote shell line. */
export function remoteLine(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('empty remote argv');
  return argv.map(shQuote).join(' ');
}

/** What ssh's exit and stderr mean, for status and the journal. */
export type SshFailure = 'host-key-changed' | 'host-key-unknown' | 'auth-failed' | 'unreachable' | 'timeout' | 'closed' | 'other';

export function classifySshError(stderr: string, code: number | null): SshFailure {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(stderr)) return 'host-key-changed';
  if (/No (?:ED25519|RSA|ECDSA|DSA)? ?host key is known|Host key verification failed/i.test(stderr)) return 'host-key-unknown';
  if (/Permission denied|Too many authentication failures|no such identity/i.test(stderr)) return 'auth-failed';
  if (/timed out|Connection timed out/i.test(stderr)) return 'timeout';
  if (/Connection refused|No route to host|Network is unreachable|Could not resolve/i.test(stderr)) return 'unreachable';
  if (/closed by remote host|Connection reset|Broken pipe|Timeout, server .* not responding/i.test(stderr)) return 'closed';
  return code === 255 ? 'closed' : 'other';
}
