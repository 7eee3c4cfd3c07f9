// The fuse program as the agent ships it: fuse.py's text (read once from the package), its
// SHA-256 and version, and the fixed loader that runs it on the ESXi host without writing a file.
//
// The host runs `python -c LOADER BYTES SHA256 DIR`: the loader reads exactly BYTES from stdin
// (os.read, never past them: what follows on stdin is the agent's plan and lease lines), refuses a
// text whose SHA-256 differs (exit 4), and execs it. Nothing is written to or executed from the
// host's disk; whether ESXi 8's execInstalledOnly allows an installed interpreter to run code
// given on its command line and stdin is NOT verified (README, "The on-host fuse").
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { remoteLine } from '../ssh-argv.js';

/**
 * The fuse versions this agent arms, with the SHA-256 of each program text. A fuse.py whose hash
 * is not here is refused (test/unit/esxi-fuse.test.ts checks the shipped text against it), so a
 * changed fuse is a deliberate, reviewed change of this table.
 */
export const KNOWN_FUSES: Readonly<Record<number, string>> = {
  // 6: a cut's `cutting` intent is recorded before its call starts, and a later fuse replays each
  // cut's last line (a fuse killed mid-call leaves a cut the agent can journal); a cut's `ms`
  // counts from before its spawn, `spawnMs` the spawn itself. 5 (samples every
  // burstMs while warm), 4 (the cut call at real-time priority), 3 (samples batched at rest: plan
  // batchMs, warmPps, warmRxPps), 2 (six values per item, each sample sent at once) and 1 (four
  // values) are no longer armed.
  6: '679cb0aa0d11457edaf4892ee7f2a47cbe95093308f41729bfe691873aaa2de3',
};

/** The loader, one line per statement (a `python -c` argument; POSIX-quoted by remoteLine). */
export const LOADER = [
  'import os,sys,hashlib',
  'n=int(sys.argv[1]);b=b""',
  'while len(b)<n:',
  ' c=os.read(0,n-len(b))',
  ' if not c:sys.exit(3)',
  ' b+=c',
  'if hashlib.sha256(b).hexdigest()!=sys.argv[2]:sys.exit(4)',
  'exec(compile(b,"stormbreaker-fuse","exec"),{"__name__":"__fuse__"})',
].join('\n');

export interface FuseProgram {
  version: number;
  sha256: string;
  text: Buffer;
}

const DIR_RE = /^\/[A-Za-z0-9_./-]{0,200}$/;

/** Pure: version and hash of a program text; refused unless the pair is in `known`. */
export function checkProgram(text: Buffer, known: Readonly<Record<number, string>> = KNOWN_FUSES): { ok: true; program: FuseProgram } | { ok: false; error: string } {
  const m = /^FUSE_VERSION = (\d+)$/m.exec(text.toString('utf8'));
  if (!m) return { ok: false, error: 'fuse program has no FUSE_VERSION line' };
  const version = Number(m[1]);
  const sha256 = createHash('sha256').update(text).digest('hex');
  if (known[version] === undefined) return { ok: false, error: `fuse version ${version} is not one this agent knows` };
  if (known[version] !== sha256) return { ok: false, error: `fuse version ${version} has sha256 ${sha256}, this agent knows ${known[version]}` };
  return { ok: true, program: { version, sha256, text } };
}

/** fuse.py next to this module in the source tree, or from dist/ back to it. */
export function fusePath(): string {
  for (const rel of ['./fuse.py', '../../../../agent/esxi/fuse/fuse.py']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error('fuse program (agent/esxi/fuse/fuse.py) not found');
}

/** Load and check the shipped program (throws why it cannot be armed). */
export function loadProgram(): FuseProgram {
  const r = checkProgram(readFileSync(fusePath()));
  if (!r.ok) throw new Error(r.error);
  return r.program;
}

/** Pure: the one remote command line (host's `python`, the loader, length, hash, state dir). */
export function fuseRemoteLine(p: FuseProgram, stateDir = '/tmp', python = 'python'): string {
  if (!DIR_RE.test(stateDir) || stateDir.includes('..')) throw new Error(`bad fuse state dir ${JSON.stringify(stateDir)}`);
  if (!/^[A-Za-z0-9_./-]{1,64}$/.test(python)) throw new Error(`bad python ${JSON.stringify(python)}`);
  return remoteLine([python, '-c', LOADER, String(p.text.length), p.sha256, stateDir]);
}
