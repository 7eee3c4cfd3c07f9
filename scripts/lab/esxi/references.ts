// The references every ESXi storm figure is read against, on the same lab in the same run (the
// brief: a near-limit reference and a 1 s storm-control baseline, as ratios). No agent runs:
//   near-limit          the 1 ms poller (../near-limit.ts) inside the host, on the bridging VM's
//                       first vNIC (what the fuse cuts first), cutting by a sysfs flags write:
//                       what this machine allows at all;
//   near-limit-vimcmd   the same poller cutting with the host's own call, the stand-in's
//                       `vim-cmd vmsvc/device.connection VMID KEY 0` at SCHED_FIFO 10 (the
//                       fuse's cut, at the fuse's priority): what is
//                       left once the decision costs nothing, i.e. the cut call's own share;
//   storm-control       a switch's 1 s storm-control on every port of the physical switch: it
//                       errdisables the ESXi-facing ports (management with them when in band),
//                       and the loop goes on inside the host.
import { labDistEntry } from '../assets.js';
import { stormStats } from '../analyze.js';
import { ns, run } from '../exec.js';
import { startJsonProc } from '../jsonproc.js';
import type { NearLimitResult } from '../near-limit.js';
import { startObserver } from '../observer.js';
import type { StormControlResult } from '../storm-control.js';
import { inject } from '../traffic.js';
import { readInventory } from './inventory.js';
import { settledQuiet } from './trace.js';
import { closeLoop, openLoop, standinArgv, standinLocalArgv, type EsxiLab } from './lab.js';

export const REFERENCES = ['near-limit', 'near-limit-vimcmd', 'storm-control'] as const;
export type EsxiReference = (typeof REFERENCES)[number];

export interface ReferenceRun {
  kind: EsxiReference;
  msToQuiet: number;
  /** 20 ms of silence at prod followed by fewer than 100 frames in 500 ms (trace.ts settledQuiet). */
  msToQuietSettled: number;
  framesLeaked: number;
  /** Injection to the decision (second hot sample, or the interval end that shut). */
  msToDecision: number;
  /** How long the cut itself took (flags write, vim-cmd, `ip link set down`). */
  cutMs: number;
  shut: string[];
  /** The reference process ended without its result (its figures at prod still count). */
  error?: string;
}

/** The vNIC the fuse cuts first: the bridging VM's first one (vmA's vnA0). */
const CUT_DEV = 'vnA0';

async function vnicKey(lab: EsxiLab): Promise<{ vmid: string; key: string }> {
  const inv = await readInventory(lab);
  for (const vm of inv.vms) {
    const nic = vm.nics.find((n) => n.dev === CUT_DEV);
    if (nic) return { vmid: String(vm.vmid), key: String(nic.key) };
  }
  throw new Error(`${CUT_DEV} is in no VM of the stand-in's inventory`);
}

/**
 * Storm-control's level on a shaped uplink: 5% of its bandwidth in minimal frames (84 bytes on
 * the wire), as switches set it in percent of the link (`storm-control broadcast level 5.00`);
 * unshaped, the agent's own default floodPps (20,000) as in bench-reaction.
 */
export function stormControlPps(uplinkRate: string | undefined): number {
  const m = uplinkRate ? /^(\d+(?:\.\d+)?)(k|m|g)bit$/i.exec(uplinkRate) : null;
  if (!m) return 20_000;
  const bps = Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as 'k' | 'm' | 'g'];
  return Math.max(1, Math.floor((bps * 0.05) / (84 * 8)));
}

function argvFor(lab: EsxiLab, kind: EsxiReference, durationMs: number, levelPps: number, cut: { vmid: string; key: string }): string[] {
  if (kind === 'storm-control') {
    return ns(lab.ns.sw, [process.execPath, labDistEntry('storm-control-run.js'), '--ports', switchPorts(lab).join(','), '--pps', String(levelPps),
      '--interval-ms', '1000', '--duration-ms', String(durationMs)]);
  }
  // At the priority the fuse starts its own call at (SCHED_FIFO 10, fuse v4+): at normal priority
  // this reference's vim-cmd took 290-500 ms under the storm (session 11), against the fuse's
  // 40-110 ms, so "x near-limit with vim-cmd" compared the fuse with a handicapped reference.
  const vimcmd = ['chrt', '-f', '10', ...standinLocalArgv(lab, 'vim-cmd', ['vmsvc/device.connection', cut.vmid, cut.key, '0'])];
  return ns(lab.ns.esx, [process.execPath, labDistEntry('near-limit-run.js'), '--ports', CUT_DEV, '--duration-ms', String(durationMs),
    ...(kind === 'near-limit-vimcmd' ? ['--cut-argv', JSON.stringify(vimcmd)] : [])]);
}

/** Undo what the reference may have cut, the way it cuts (whether or not its result came back). */
async function undo(lab: EsxiLab, kind: EsxiReference, cut: { vmid: string; key: string }): Promise<void> {
  if (kind === 'near-limit-vimcmd') await run(standinArgv(lab, 'vim-cmd', ['vmsvc/device.connection', cut.vmid, cut.key, '1']));
  else for (const p of kind === 'storm-control' ? switchPorts(lab) : [CUT_DEV]) await run(['ip', '-n', kind === 'storm-control' ? lab.ns.sw : lab.ns.esx, 'link', 'set', 'dev', p, 'up']);
}

/** Every port of the physical switch: a switch polices each of its ports. */
const switchPorts = (lab: EsxiLab): string[] => ['swprod', 'swe0', 'swe1', ...(lab.plan.mgmtMode === 'inband' ? ['swagent'] : [])];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One storm broken (or not) by a reference; the loop is opened by hand after observeMs. */
export async function referenceStorm(lab: EsxiLab, kind: EsxiReference, observeMs: number, levelPps: number): Promise<ReferenceRun> {
  const cut = await vnicKey(lab);
  await closeLoop(lab);
  let error: string | undefined;
  try {
    const proc = await startJsonProc<{ startNs: number }, NearLimitResult | StormControlResult>(argvFor(lab, kind, observeMs + 1000, levelPps, cut), kind, observeMs + 8000);
    const obs = await startObserver(lab.ns.prod, ['eth0'], observeMs + 2500, { periodUs: 1000 });
    let t0 = NaN;
    try {
      t0 = (await inject({ prefix: lab.prefix, ns: { prod: lab.ns.prod } }, 'prod', 'eth0', { count: 1, kind: 'broadcast' })).tFirstNs;
      await sleep(observeMs);
    } finally {
      await openLoop(lab);
    }
    // A reference that ends without its result line still leaves the storm's figures at prod.
    const res = await proc.stop().catch((err: unknown) => ((error = (err as Error).message.slice(0, 300)), null));
    const series = (await obs.stop()).eth0 ?? { t: [], c: [] };
    const st = stormStats(series, t0);
    const cuts = res === null ? [] : 'cut' in res ? res.cut : res.shut.map((s) => ({ port: s.port, tNs: s.tNs, tDoneNs: s.tDoneNs, ok: s.ok }));
    const shut = cuts.filter((c) => c.ok).map((c) => c.port);
    const first = cuts[0];
    return {
      kind,
      msToQuiet: st.quietAtNs === null ? NaN : (st.quietAtNs - t0) / 1e6,
      msToQuietSettled: settledQuiet(series, t0).ms,
      framesLeaked: st.framesLeaked ?? NaN,
      msToDecision: first ? (first.tNs - t0) / 1e6 : NaN,
      cutMs: first ? (first.tDoneNs - first.tNs) / 1e6 : NaN,
      shut,
      ...(error ? { error } : {}),
    };
  } finally {
    await openLoop(lab).catch(() => undefined);
    await undo(lab, kind, cut);
  }
}
