// Build, loop control and teardown of the stand-in ESXi lab (layout in plan.ts). The lab
// directory (mkdtemp under /tmp, mode 0700) holds the inventory, keys and sshd files; its name
// starts with `${prefix}esxi-`, which is how teardown finds it again from the prefix alone.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLinkStats, statsDelta } from '../counters.js';
import { ns, run } from '../exec.js';
import { assertIfName, assertPrefix } from '../names.js';
import { listNamespaces, teardownLab } from '../topology.js';
import { defaultInventory, writeInventory, type InventoryOptions, type UplinkFacts } from './inventory.js';
import { esxiLabPlan, esxiPlanCommands, nftScript, type EsxiLabPlan, type EsxiNamespaces, type PlanOptions } from './plan.js';
import { startSshd, stopSshd, sshdPidsFor, type StandinPython } from './sshd.js';

export interface EsxiLab {
  prefix: string;
  /** Lab directory (0700): inventory.json, keys, sshd files. */
  dir: string;
  ns: EsxiNamespaces;
  plan: EsxiLabPlan;
  bridge: EsxiLabPlan['bridge'];
  uplinks: EsxiLabPlan['uplinks'];
  vmNics: EsxiLabPlan['vmNics'];
  loop: EsxiLabPlan['loop'];
  mgmt: EsxiLabPlan['mgmt'];
  /** Directory of the stand-in esxcli, vsish and vim-cmd (first in the remote PATH). */
  standinBin: string;
  /** The host's `python` and `vmware.vsi` (null: a host without them, BuildOptions.python false). */
  python: StandinPython | null;
}

export interface BuildOptions extends InventoryOptions, PlanOptions {
  /** Start sshd after the build (default true). */
  sshd?: boolean;
  /** `python` and `vmware.vsi` on the host (default true); false plays a host without them. */
  python?: boolean;
}

const QUIET_WINDOW_MS = 300;
const TMP = '/tmp';

/** The stand-in bin directory, from the source tree (vitest) or from dist/ next to it. */
export function standinBinDir(): string {
  for (const rel of ['./standin/bin', '../../../../scripts/lab/esxi/standin/bin']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(p, 'esxcli'))) return p;
  }
  throw new Error('stand-in bin directory (scripts/lab/esxi/standin/bin) not found');
}

/**
 * argv that runs a stand-in tool directly inside ${p}esx, without ssh (costs, debugging), with the
 * same clean environment sshd gives it (`env -i`: nothing of the caller's PYTHON* settings leaks in).
 */
export function standinArgv(lab: EsxiLab, tool: 'esxcli' | 'vsish' | 'vim-cmd', args: readonly string[]): string[] {
  return ns(lab.ns.esx, standinLocalArgv(lab, tool, args));
}

/** The same, for a process already inside ${p}esx (e.g. the near-limit poller's cut command). */
export function standinLocalArgv(lab: EsxiLab, tool: 'esxcli' | 'vsish' | 'vim-cmd', args: readonly string[]): string[] {
  return [
    'env', '-i', `STORMBREAKER_ESXI_LAB=${lab.dir}`, `PATH=${lab.standinBin}:/usr/sbin:/usr/bin:/sbin:/bin`,
    join(lab.standinBin, tool), ...args,
  ];
}

async function uplinkFacts(plan: EsxiLabPlan): Promise<UplinkFacts> {
  const out: UplinkFacts = {};
  for (const u of plan.uplinks) {
    const { stdout } = await run(['ip', '-n', plan.ns.esx, '-j', 'link', 'show', 'dev', u]);
    const row = (JSON.parse(stdout) as Array<{ address?: string; mtu?: number }>)[0];
    const speed = await run(ns(plan.ns.esx, ['cat', `/sys/class/net/${u}/speed`])).then(
      (r) => Math.max(0, Number(r.stdout.trim()) || 0),
      () => 0,
    );
    if (!row?.address || !row.mtu) throw new Error(`cannot read ${u}`);
    out[u] = { mac: row.address, mtu: row.mtu, speed };
  }
  return out;
}

/** Throw if any vSwitch0 port moved a frame during windowMs: a lab that storms alone cannot be timed. */
async function assertQuiet(plan: EsxiLabPlan, windowMs = QUIET_WINDOW_MS): Promise<void> {
  const ports = [...plan.uplinks, ...plan.vmNics.map((n) => n.dev)];
  const before = await readLinkStats(plan.ns.esx);
  await sleep(windowMs);
  const after = await readLinkStats(plan.ns.esx);
  const moved = Object.entries(statsDelta(before, after, ports)).filter(([, d]) => d.rx !== 0 || d.tx !== 0);
  if (moved.length > 0) throw new Error(`esxi lab not quiet in ${windowMs} ms: ${JSON.stringify(Object.fromEntries(moved))}`);
}

export async function buildEsxiLab(prefix: string, opts: BuildOptions = {}): Promise<EsxiLab> {
  const plan = esxiLabPlan(prefix, { ...(opts.mgmt ? { mgmt: opts.mgmt } : {}), ...(opts.uplinkRate ? { uplinkRate: opts.uplinkRate } : {}), ...(opts.split ? { split: true } : {}) });
  await teardownEsxiLab(prefix);
  const dir = await mkdtemp(join(TMP, `${prefix}esxi-`));
  const lab: EsxiLab = {
    prefix,
    dir,
    ns: plan.ns,
    plan,
    bridge: plan.bridge,
    uplinks: plan.uplinks,
    vmNics: plan.vmNics,
    loop: plan.loop,
    mgmt: plan.mgmt,
    standinBin: standinBinDir(),
    python: opts.python === false ? null : { bin: join(dirname(standinBinDir()), 'python', 'bin'), lib: join(dirname(standinBinDir()), 'python', 'lib') },
  };
  try {
    for (const argv of esxiPlanCommands(plan)) await run(argv);
    await run(ns(plan.ns.esx, ['nft', '-f', '-']), { input: nftScript(plan.countedPorts) });
    await writeInventory(lab, defaultInventory(plan, await uplinkFacts(plan), opts));
    await assertQuiet(plan);
    if (opts.sshd !== false) await startSshd(lab);
    return lab;
  } catch (err) {
    await teardownEsxiLab(prefix).catch(() => undefined);
    throw err;
  }
}

/** Both loop members in one `ip -batch`, so the loop opens (or closes) with a single spawn. */
function setLoop(lab: EsxiLab, state: 'up' | 'down'): Promise<unknown> {
  const lines = lab.loop.ports.map((p) => `link set dev ${assertIfName(p)} ${state}`);
  return run(['ip', '-n', lab.loop.ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

/** Bring vmA's bridged vNICs up: the VM now bridges eth0 and eth1 and one flooded frame storms. */
export async function closeLoop(lab: EsxiLab): Promise<void> {
  await setLoop(lab, 'up');
}

/** Take vmA's bridged vNICs down: the loop is open again. */
export async function openLoop(lab: EsxiLab): Promise<void> {
  await setLoop(lab, 'down');
}

async function labDirs(prefix: string): Promise<string[]> {
  const names = await readdir(TMP).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(`${prefix}esxi-`)).map((n) => join(TMP, n));
}

/**
 * Stop sshd, delete every namespace of the prefix (topology.ts teardownLab: links first, then the
 * processes inside, then the namespaces) and remove the lab directories. Idempotent; safe after
 * a partial build.
 */
export async function teardownEsxiLab(prefix: string): Promise<void> {
  assertPrefix(prefix);
  const dirs = await labDirs(prefix);
  for (const dir of dirs) await stopSshd({ dir });
  // An sshd whose directory is already gone (interrupted teardown) is found by its command line.
  for (const pid of sshdPidsFor(join(TMP, `${prefix}esxi-`))) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await teardownLab(prefix);
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}

export { listNamespaces };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
