// Can this host run the fuse? One `python -c PROBE` on the agent's connection (preflight): the
// interpreter is there and allowed to run code not installed on disk (what ESXi 8's
// execInstalledOnly might refuse), `vmware.vsi` imports, and what reading the pNICs' stats
// in-process costs. Pure: the probe text and the parser of its answer.
import type { RemoteResult } from '../session.js';

/** Prints one JSON line: python version, pNICs, µs per read of all their stats (median of 20 rounds). */
export const PROBE = [
  'import json,sys,time',
  'try:',
  ' import vmware.vsi as vsi',
  'except Exception as e:',
  ' print(json.dumps({"ok":False,"why":"import vmware.vsi failed: %s"%e}));sys.exit(0)',
  "n=vsi.list('/net/pNics/');ts=[]",
  'for i in range(20):',
  ' t=time.monotonic()',
  " for x in n:vsi.get('/net/pNics/%s/stats'%x)",
  ' ts.append((time.monotonic()-t)*1e6)',
  'ts.sort()',
  'print(json.dumps({"ok":True,"python":sys.version.split()[0],"pnics":n,"readUs":ts[len(ts)//2]}))',
].join('\n');

export const probeArgv = (python = 'python'): string[] => [python, '-c', PROBE];

export type ProbeResult = { ok: true; python: string; pnics: string[]; readUs: number } | { ok: false; why: string };

export function parseProbe(r: Pick<RemoteResult, 'code' | 'stdout' | 'stderr' | 'error'>): ProbeResult {
  if (r.error) return { ok: false, why: r.error };
  if (r.code === 127) return { ok: false, why: 'no python on the host (exit 127)' };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.ok === true && typeof o.python === 'string' && Array.isArray(o.pnics) && typeof o.readUs === 'number') {
      return { ok: true, python: o.python, pnics: o.pnics.map(String), readUs: o.readUs };
    }
    if (o.ok === false) return { ok: false, why: String(o.why) };
  } catch {
    // fall through
  }
  const err = r.stderr.trim().split('\n').pop();
  return { ok: false, why: `python -c gave no answer (exit ${String(r.code)})${err ? `: ${err}` : ''}` };
}
