import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

// `run --socket-group NAME`: the control socket (0660) and its directory (0750) belong to this
// group, so its members may use the CLI without root.

const GROUP_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;

/** The gid in one /etc/group-format text, or null. Pure. */
export function gidFromGroupText(text: string, name: string): number | null {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && f[0] === name && /^\d+$/.test(f[2]!)) return Number(f[2]);
  }
  return null;
}

/** Resolve a group name to its gid: `getent group NAME` (argv; sees NSS), else /etc/group. */
export function resolveGroup(name: string): number {
  if (!GROUP_RE.test(name)) throw new Error(`invalid group name ${JSON.stringify(name)}`);
  try {
    const out = execFileSync('getent', ['group', name], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const gid = gidFromGroupText(out, name);
    if (gid !== null) return gid;
  } catch {
    // not found, or no getent: try the file
  }
  const gid = gidFromGroupText(readFileSync('/etc/group', 'utf8'), name);
  if (gid === null) throw new Error(`no such group ${JSON.stringify(name)}`);
  return gid;
}
