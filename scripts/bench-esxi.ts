// ESXi benchmark, in one run against the stand-in ESXi host (scripts/lab/esxi: a real sshd in a
// namespace, python stand-ins for esxcli/vsish/vim-cmd): (1) time to break a real loop storm over
// SSH at each --sample-ms, and (2) what watching one ESXi host costs the agent's side (node plus
// its ssh children), against an agent with nothing to watch. The stand-in's own CPU is the
// "ESXi" side and is reported apart, never added to the agent's.
//   node dist/scripts/bench-esxi.js [--storms 10] [--sample-ms 100,50] [--seconds 10] [--warmup 2]
//       [--guard-ms 2500] [--prefix sbb-] [--out out/bench-esxi.json]
//       [--mgmt oob|inband] [--uplink-rate 4mbit] [--no-cost] [--fuse armed|stream|off]
//       [--cold-idle-ms 30000] [--near 5] [--baseline 3] [--trace]
// --near: storms broken by the near-limit poller inside the host, once cutting by a sysfs write and
// once by the stand-in's vim-cmd; --baseline: storms against a 1 s storm-control on the physical
// switch (scripts/lab/esxi/references.ts). Both run before any agent, on the same lab.
// --cold-idle-ms: the first storm of each agent comes after it has idled this long since it was
// ready (cold: what a real agent's first storm meets), and is reported apart from the rest.
// --fuse is the policy's esxi.hosts[].fuse (default armed, as the agent's): `off` measures the
// shell loop alone, `stream` the fuse's counters with the agent's own cuts over SSH.
// --trace: per storm, where the time from the fuse's decision to quiet goes (the stand-in vim-cmd's
// steps and every frame at prod, scripts/lab/esxi/trace.ts); lab instruments, the product unchanged.
// --mgmt inband puts vmk0 on vSwitch0 and the agent behind the physical switch; --uplink-rate
// shapes the uplinks (tbf) so a loop fills them (scripts/lab/esxi/plan.ts, issue 12).
import { esxiLabPolicy } from './lab/esxi/policy.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildEsxiLab, closeLoop, openLoop, standinArgv, teardownEsxiLab, type EsxiLab } from './lab/esxi/lab.js';
import { readInventory as readStandinInventory } from './lab/esxi/inventory.js';
import { referenceStorm, stormControlPps, type ReferenceRun } from './lab/esxi/references.js';
import { sshdPidsFor } from './lab/esxi/sshd.js';
import { startAgent, type AgentHandle } from './lab/agent.js';
import { inject } from './lab/traffic.js';
import { startObserver } from './lab/observer.js';
import { stormStats } from './lab/analyze.js';
import { readLinkStats } from './lab/counters.js';
import { run } from './lab/exec.js';
import { settledQuiet, startCapture, traceLine, traceOn, type StormTrace } from './lab/esxi/trace.js';
import { fmt, summary } from './lab/stats.js';
import { clockTicksPerSecond, descendants, readCmdline, readProcMem, readProcStat } from './lab/proc.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    storms: { type: 'string', default: '10' },
    'sample-ms': { type: 'string', default: '100,50' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    // Every storm is bounded: the loop is opened by hand this long after the injection, whatever
    // the agent did (LAB rules: a storm lasts a few seconds at most).
    'guard-ms': { type: 'string', default: '2500' },
    prefix: { type: 'string', default: 'sbb-' },
    out: { type: 'string', default: resolve(root, 'out/bench-esxi.json') },
    mgmt: { type: 'string', default: 'oob' },
    'uplink-rate': { type: 'string' },
    'no-cost': { type: 'boolean', default: false },
    fuse: { type: 'string', default: 'armed' },
    'cold-idle-ms': { type: 'string', default: '0' },
    near: { type: 'string', default: '5' },
    baseline: { type: 'string', default: '3' },
    trace: { type: 'boolean', default: false },
  },
});

// --- options, validated up front with a message that names the bad one ---------------------------
function fail(msg: string): never {
  process.stderr.write(`bench-esxi: ${msg}\n`);
  process.exit(2);
}
const num = (name: string, v: string | undefined, ok: (x: number) => boolean): number => {
  const x = Number(v);
  if (!ok(x)) fail(`--${name} ${JSON.stringify(v)} is out of range`);
  return x;
};
const storms = num('storms', values.storms, (x) => Number.isInteger(x) && x >= 0 && x <= 200);
const sampleMsList = values['sample-ms']!.split(',').map((s) => num('sample-ms', s, (x) => Number.isInteger(x) && x >= 10 && x <= 5000));
const seconds = num('seconds', values.seconds, (x) => x > 0 && x <= 600);
const warmupMs = num('warmup', values.warmup, (x) => x >= 0 && x <= 60) * 1000;
const guardMs = num('guard-ms', values['guard-ms'], (x) => x >= 500 && x <= 3000);
const prefix = values.prefix!;
const mgmt = values.mgmt === 'inband' ? 'inband' : values.mgmt === 'oob' ? 'oob' : fail(`--mgmt ${JSON.stringify(values.mgmt)}: oob or inband`);
const uplinkRate = values['uplink-rate'];
const coldIdleMs = num('cold-idle-ms', values['cold-idle-ms'], (x) => Number.isInteger(x) && x >= 0 && x <= 600_000);
const nearN = num('near', values.near, (x) => Number.isInteger(x) && x >= 0 && x <= 50);
const baselineN = num('baseline', values.baseline, (x) => Number.isInteger(x) && x >= 0 && x <= 20);
const fuseMode = values.fuse === 'armed' || values.fuse === 'stream' || values.fuse === 'off' ? values.fuse : fail(`--fuse ${JSON.stringify(values.fuse)}: armed, stream or off`);
/** In band, the agent's own SSH crosses the uplinks: only the loop's VM ports must be silent, and a storm can cost the session (backoff up to 30 s). */
const QUIET_PORTS = mgmt === 'inband' ? ['vnA0', 'vnA1'] : ['vmnic0', 'vmnic1', 'vnA0', 'vnA1'];
const READY_MS = mgmt === 'inband' ? 60_000 : 20_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hrNs = (): number => Number(process.hrtime.bigint());

/** The stand-in host's watched ports (scripts/lab/esxi/plan.ts): 2 vmnics and 3 vNICs on "VM Network". */
const ALL_PORTS = ['esx1/vmnic0', 'esx1/vmnic1', 'esx1/vnic-000c295b1000', 'esx1/vnic-000c295ba000', 'esx1/vnic-000c295ba001'];
/** vmA's two vNICs: the loop members the agent should cut (one of them). */
const VMA_PORTS = new Set(['esx1/vnic-000c295ba000', 'esx1/vnic-000c295ba001']);
/** After a trip: how long to keep watching for an escalation (settle is 3 x sampleMs; blocks are slower). */
const ESCALATION_WATCH_MS = 1200;
const HOLD_SAMPLES = 2;

// --- policies ------------------------------------------------------------------------------------
/**
 * Pure: the policy. sampleMs null = baseline: an agent with nothing to watch (no esxi section,
 * ports: []). The shut budget's window is short so that storm n's shut does not count against
 * storm n+1 (a real operator does not restore ten times a minute); two shuts per storm still allow
 * one escalation, which is counted.
 */
function policyYaml(lab: EsxiLab, sampleMs: number | null): string {
  if (sampleMs === null) return 'version: 1\nports: []\n';
  return esxiLabPolicy(lab, { sampleMs, holdSamples: HOLD_SAMPLES, windowMs: 1500, fuse: fuseMode });
}

// --- CPU of process trees, from /proc --------------------------------------------------------------
interface ProcTicks {
  comm: string;
  /** utime+stime of the process itself. */
  self: number;
  /** cutime+cstime: children it has waited for. */
  reaped: number;
  rssKb: number;
}
interface TreeSnapshot {
  tNs: number;
  root: number;
  procs: Map<number, ProcTicks>;
}

function treeSnapshot(rootPid: number): TreeSnapshot {
  const tNs = hrNs();
  const procs = new Map<number, ProcTicks>();
  for (const pid of [rootPid, ...descendants(rootPid)]) {
    try {
      const s = readProcStat(pid);
      procs.set(pid, { comm: s.comm, self: s.utime + s.stime, reaped: s.cutime + s.cstime, rssKb: readProcMem(pid).rssKb });
    } catch {
      // exited between listing and reading
    }
  }
  return { tNs, root: rootPid, procs };
}

interface TreeCost {
  seconds: number;
  /** % of one core: the root process itself. */
  rootPct: number;
  /** % of one core by live descendants' comm (e.g. ssh), own time plus what they reaped. */
  byComm: Record<string, number>;
  /**
   * % of one core of descendants that exited inside the window (counted through their parent's
   * cutime/cstime, minus what they had already used at the start).
   */
  exitedPct: number;
  /** Root + everything under it. */
  totalPct: number;
  /** RSS at the end, KiB: root, and live descendants by comm. */
  rootRssKb: number;
  rssByComm: Record<string, number>;
  live: string[];
}

/**
 * Pure: a tree's CPU between two snapshots. Sum over the tree of (self + reaped) is conserved when
 * a process exits (its time moves into its parent's reaped), so the total is exact as long as
 * the parents live; the split by comm puts an exited process's remaining time under `exitedPct`.
 */
function treeCost(a: TreeSnapshot, b: TreeSnapshot, hz: number): TreeCost {
  const seconds = (b.tNs - a.tNs) / 1e9;
  const pct = (ticks: number): number => (ticks / hz / seconds) * 100;
  const byComm: Record<string, number> = {};
  const rssByComm: Record<string, number> = {};
  let rootTicks = 0;
  let exited = 0;
  let total = 0;
  for (const [pid, p] of b.procs) {
    const o = a.procs.get(pid);
    const dSelf = p.self - (o?.self ?? 0);
    const dReaped = p.reaped - (o?.reaped ?? 0);
    total += dSelf + dReaped;
    if (pid === b.root) {
      rootTicks += dSelf;
      exited += dReaped;
    } else {
      byComm[p.comm] = (byComm[p.comm] ?? 0) + dSelf;
      exited += dReaped;
      rssByComm[p.comm] = (rssByComm[p.comm] ?? 0) + p.rssKb;
    }
  }
  // Gone by the end: what they had used at the start is already counted, and now sits in a parent's reaped.
  for (const [pid, o] of a.procs) {
    if (!b.procs.has(pid)) {
      exited -= o.self + o.reaped;
      total -= o.self + o.reaped;
    }
  }
  const comm: Record<string, number> = {};
  for (const [k, v] of Object.entries(byComm)) comm[k] = pct(v);
  return {
    seconds,
    rootPct: pct(rootTicks),
    byComm: comm,
    exitedPct: pct(exited),
    totalPct: pct(total),
    rootRssKb: b.procs.get(b.root)?.rssKb ?? NaN,
    rssByComm,
    live: [...b.procs.values()].filter((p) => p !== b.procs.get(b.root)).map((p) => p.comm),
  };
}

// --- agent status (the parts read here) -----------------------------------------------------------
interface EsxStatus {
  live: boolean;
  samplesPerSec: number;
  session: { state: string; blocks: number; late: number; roundTripMs: number | null; lastBlockAgeMs: number | null };
  ports: Array<{ port: string; id: string }>;
  inventoryAgeMs: number | null;
}
interface Status {
  esxi?: EsxStatus[];
  ports: Array<{ port: string; state: string }>;
}

const ask = async (agent: AgentHandle): Promise<Status> => (await agent.ask('status')) as Status;

/** When (Date.now() here) the agent last finished reading the host's inventory; NaN before the first. */
const inventoryReadAt = (s: Status): number => {
  const age = s.esxi?.[0]?.inventoryAgeMs;
  return typeof age === 'number' ? Date.now() - age : NaN;
};

function agentPid(agent: AgentHandle): number {
  const pid = agent.child.pid;
  if (pid === undefined) throw new Error('agent has no pid');
  // `ip netns exec` execs node in place (no fork), so the spawned pid is the agent itself.
  const argv = readCmdline(pid);
  if (!argv.some((a) => a.endsWith('/cli.js')) || !argv.includes('run')) throw new Error(`pid ${pid} is not the agent: ${argv.join(' ')}`);
  return pid;
}

function sshdPid(lab: EsxiLab): number {
  const pids = sshdPidsFor(lab.dir);
  if (pids.length !== 1) throw new Error(`expected one sshd listener for ${lab.dir}, found ${pids.length}`);
  return pids[0]!;
}

/** Port -> vSwitch port ID as the agent streams it ('' = listed, not streamed: disconnected). */
const idsOf = (s: Status): Map<string, string> => new Map((s.esxi?.[0]?.ports ?? []).map((p) => [p.port, p.id]));

/**
 * Ready for a storm: the host is live, every watched port is streamed (none disconnected), the
 * ports in `changed` have a new vSwitch port ID (the agent re-read the inventory after their
 * reconnect and restarted its stream), every port is forwarding, and the vSwitch is silent.
 */
async function waitReady(agent: AgentHandle, lab: EsxiLab, changed: Map<string, string>, timeoutMs: number, inventoryAfterMs = 0): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    const st = await ask(agent);
    const h = st.esxi?.[0];
    const ids = idsOf(st);
    const streamed = ALL_PORTS.every((p) => (ids.get(p) ?? '') !== '');
    const renewed = [...changed].every(([p, old]) => ids.get(p) !== old);
    const forwarding = st.ports.every((p) => p.state === 'forwarding');
    const fresh = h?.live === true && (h.session.lastBlockAgeMs ?? Infinity) < 1000;
    // The re-read an action schedules must be over, or it would run inside the next storm.
    const reread = !(inventoryReadAt(st) < inventoryAfterMs - 50);
    last = `live=${h?.live} streamed=${streamed} renewed=${renewed} forwarding=${forwarding} fresh=${fresh} reread=${reread} ids=${JSON.stringify([...ids])} not forwarding=${JSON.stringify(st.ports.filter((p) => p.state !== 'forwarding'))}`;
    if (streamed && renewed && forwarding && fresh && reread) {
      const a = await readLinkStats(lab.ns.esx);
      await sleep(200);
      const b = await readLinkStats(lab.ns.esx);
      const moved = QUIET_PORTS.reduce((s, i) => s + (b.get(i)?.rxPackets ?? 0) - (a.get(i)?.rxPackets ?? 0), 0);
      if (moved < 5) return;
      last = `vSwitch not quiet: ${moved} frames in 200 ms`;
    }
    await sleep(100);
  }
  // What the agent did meanwhile, to tell a bench problem from an agent one.
  const said = agent.logs.filter((l) => ['trip', 'restore', 'fuse', 'action-failed', 'reassert', 'escalate'].includes(String(l.msg))).slice(-12);
  throw new Error(`agent not ready for the next storm within ${timeoutMs} ms: ${last}\n${said.map((l) => `  ${String(l.msg)} ${String(l.port)} ${String(l.reason)} ${JSON.stringify((l.action as { via?: string; ok?: boolean } | undefined) ?? {}).slice(0, 160)}`).join('\n')}`);
}

/** Put every disconnected vNIC back through the stand-in's own vim-cmd (fallback when a restore failed). */
async function reconnectAll(lab: EsxiLab): Promise<number> {
  const inv = await readStandinInventory(lab);
  let n = 0;
  for (const vm of inv.vms) {
    for (const nic of vm.nics) {
      if (nic.connected) continue;
      await run(standinArgv(lab, 'vim-cmd', ['vmsvc/device.connection', String(vm.vmid), String(nic.key), '1']));
      n++;
    }
  }
  return n;
}

// --- one storm ------------------------------------------------------------------------------------
interface Storm {
  sampleMs: number;
  n: number;
  /** The agent's first storm, after it idled >= --cold-idle-ms since it was ready. */
  cold: boolean;
  /** Injection (send.py's first send) to the agent's verdict (evidence.tNs: the agent's monotonic clock). */
  msToVerdict: number;
  /** Injection to the `trip` log line's arrival on this side (its stdout, read here). */
  msToTripLine: number;
  /** The vNIC disconnect over SSH, as the agent timed it (trip.action.durationMs). */
  actionMs: number;
  /**
   * A cut made by the host's fuse: injection to its decision on the host (the fuse's event wallMs,
   * taken before the cut call; the stand-in shares this machine's clock). NaN when the agent cut.
   */
  msToHostCut: number;
  /**
   * The host's fuse cut in this storm but the agent had not journaled it by the window's end (its
   * link was down or stalled): injection to the fuse's decision, from the host's own events file.
   */
  msToUnheardHostCut: number;
  /** Injection to the last frame at prod's eth0 before 20 ms of silence (observer, 1 ms polls). */
  msToQuiet: number;
  /** The same, but the 20 ms of silence must be followed by fewer than 100 frames in 500 ms (trace.ts settledQuiet). */
  msToQuietSettled: number;
  framesLeaked: number;
  cut: string[];
  escalations: number;
  guardFired: boolean;
  /** Counter blocks per second that reached the agent from the injection to the trip line (under storm). */
  blocksPerSec: number;
  /**
   * The agent finished re-reading the host's inventory (its 30 s refresh: ~14 sequential stand-in
   * commands) between the injection and the end of the storm window: it competes with the stream.
   */
  inventoryReread: boolean;
  /** When not broken: what the agent said during the storm (esxi, breaker and warnings). */
  said: string[];
  restoredVia: 'agent' | 'stand-in' | 'none';
  /** --trace: the stand-in vim-cmd's steps and the frames at prod. */
  trace?: StormTrace;
}

const isTrip = (l: Record<string, unknown>): boolean => l.msg === 'trip';

async function storm(lab: EsxiLab, agent: AgentHandle, sampleMs: number, n: number): Promise<Storm> {
  const before = idsOf(await ask(agent));
  agent.logs.length = 0; // keep memory flat and waitFor honest across storms
  const obs = await startObserver(lab.ns.prod, ['eth0'], guardMs + 2500, { periodUs: 1000 });
  let guardFired = false;
  let guard: NodeJS.Timeout | null = null;
  let t0 = NaN;
  let wallT0 = NaN;
  let tTripNs = NaN;
  let trip: Record<string, unknown> | null = null;
  let blocksPerSec = NaN;
  let readAt0 = NaN;
  let readAt1 = NaN;
  let series;
  const cap = values.trace ? await startCapture(lab) : null;
  let trace: StormTrace | undefined;
  try {
    await closeLoop(lab);
    guard = setTimeout(() => {
      guardFired = true;
      void openLoop(lab).catch(() => undefined);
    }, guardMs);
    const tGuardStart = Date.now();
    const s0 = await ask(agent);
    const b0 = s0.esxi?.[0]?.session.blocks ?? NaN;
    readAt0 = inventoryReadAt(s0);
    const b0Ns = hrNs();
    const sent = await inject({ prefix: lab.prefix, ns: { prod: lab.ns.prod } }, 'prod', 'eth0', { count: 1, kind: 'broadcast' });
    t0 = sent.tFirstNs;
    wallT0 = Date.now() - (hrNs() - t0) / 1e6;
    try {
      trip = await agent.waitFor(isTrip, guardMs);
      // waitFor resolves inside the agent's stdout handler: this is the line's arrival here.
      tTripNs = hrNs();
      blocksPerSec = (((await ask(agent)).esxi?.[0]?.session.blocks ?? NaN) - b0) / ((hrNs() - b0Ns) / 1e9);
    } catch {
      trip = null;
    }
    // An escalation would come after settle; the guard still bounds the whole storm.
    const left = guardMs - (Date.now() - tGuardStart);
    if (trip && left > 0) await sleep(Math.min(ESCALATION_WATCH_MS, left));
    // Before the re-read the trip schedules (3 x sampleMs + 1 s after it) can have finished.
    readAt1 = inventoryReadAt(await ask(agent));
  } finally {
    if (guard) clearTimeout(guard);
    await openLoop(lab);
    series = (await obs.stop()).eth0 ?? { t: [], c: [] };
    if (cap) trace = await cap.stop(t0, wallT0);
  }
  const hostCut = trip ? null : fuseCutSince(lab, wallT0);
  const trips = agent.logs.filter(isTrip);
  const said = trip
    ? []
    : agent.logs
        .filter((l) => l.component === 'esxi' || l.component === 'breaker' || Number(l.level) >= 40)
        .map((l) => [l.msg, l.state, l.port, l.reason, l.why, l.err].filter((x) => x !== undefined).map(String).join(' ').slice(0, 240));
  const escalations = agent.logs.filter((l) => l.msg === 'escalate').length;
  const st = stormStats(series, t0);
  const ev = trip?.evidence as { tNs?: number } | undefined;
  const action = trip?.action as { durationMs?: number; ok?: boolean; origin?: { fuse?: { wallMs: number } } } | undefined;

  // Restore through the operator path (control socket, as `stormbreaker restore PORT --reason`).
  const cut = trips.map((t) => String(t.port));
  let restoredVia: Storm['restoredVia'] = 'none';
  const changed = new Map<string, string>();
  let restoredAt = 0;
  for (const port of cut) {
    changed.set(port, before.get(port) ?? '');
    await agent.ask('restore', { port, reason: 'bench-esxi: next storm' });
    const r = await agent.waitFor((l) => l.msg === 'restore' && l.port === port, 10_000).catch(() => null);
    restoredVia = r && (r.action as { ok?: boolean } | undefined)?.ok !== false ? 'agent' : 'none';
    restoredAt = Date.now();
  }
  if ((await reconnectAll(lab)) > 0) restoredVia = 'stand-in';
  // The agent re-reads the inventory 3 x sampleMs + 1 s after an action and restarts its stream.
  await waitReady(agent, lab, changed, READY_MS, restoredAt ? restoredAt + 3 * sampleMs + 1000 : 0);
  return {
    sampleMs,
    n,
    cold: n === 1 && coldIdleMs > 0,
    msToVerdict: ev?.tNs ? (ev.tNs - t0) / 1e6 : NaN,
    msToTripLine: trip ? (tTripNs - t0) / 1e6 : NaN,
    actionMs: action?.durationMs ?? NaN,
    msToHostCut: action?.origin?.fuse ? action.origin.fuse.wallMs - wallT0 : NaN,
    msToQuiet: st.quietAtNs === null ? NaN : (st.quietAtNs - t0) / 1e6,
    msToQuietSettled: settledQuiet(series, t0).ms,
    framesLeaked: st.framesLeaked ?? NaN,
    cut,
    escalations,
    msToUnheardHostCut: hostCut ? hostCut.wallMs - wallT0 : NaN,
    guardFired: guardFired && !trip && !hostCut,
    ...(trace ? { trace } : {}),
    blocksPerSec,
    inventoryReread: Math.abs(readAt1 - readAt0) > 100,
    said,
    restoredVia,
  };
}

/**
 * The first cut the host's fuse recorded (its events file in the stand-in's fuse dir: lines the
 * agent has not acked yet) at or after wallMs, or null.
 */
function fuseCutSince(l: EsxiLab, wallMs: number): { wallMs: number; port: string } | null {
  let text = '';
  try {
    text = readFileSync(join(l.dir, 'stormbreaker-fuse.events'), 'utf8');
  } catch {
    return null;
  }
  let first: { wallMs: number; port: string } | null = null;
  for (const line of text.split('\n')) {
    let e: { outcome?: string; wallMs?: number; port?: string };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      continue;
    }
    if (e.outcome !== 'cut' || typeof e.wallMs !== 'number' || e.wallMs < wallMs) continue;
    if (!first || e.wallMs < first.wallMs) first = { wallMs: e.wallMs, port: String(e.port) };
  }
  return first;
}

// --- cost window -------------------------------------------------------------------------------------
interface Cost {
  setting: string;
  sampleMs: number | null;
  agent: TreeCost;
  esxSide: TreeCost;
  blocksPerSec: number | null;
  samplesPerSec: number | null;
  roundTripMs: number | null;
  late: number | null;
  /** The agent's 30 s inventory re-read (ssh command sessions, counted under `exited`) fell in the window. */
  inventoryReread: boolean;
  warnings: string[];
}

async function measureCost(lab: EsxiLab, agent: AgentHandle, sampleMs: number | null, hz: number): Promise<Cost> {
  const pid = agentPid(agent);
  const sshd = sshdPid(lab);
  await sleep(warmupMs);
  const st0 = await ask(agent);
  const readAt0 = inventoryReadAt(st0); // now: it is relative to this moment
  const a0 = treeSnapshot(pid);
  const e0 = treeSnapshot(sshd);
  await sleep(seconds * 1000);
  const a1 = treeSnapshot(pid);
  const e1 = treeSnapshot(sshd);
  const st1 = await ask(agent);
  const readAt1 = inventoryReadAt(st1);
  const agentCost = treeCost(a0, a1, hz);
  const h0 = st0.esxi?.[0];
  const h1 = st1.esxi?.[0];
  return {
    setting: sampleMs === null ? 'no esxi (baseline)' : `esxi sampleMs ${sampleMs}`,
    sampleMs,
    agent: agentCost,
    esxSide: treeCost(e0, e1, hz),
    blocksPerSec: h0 && h1 ? (h1.session.blocks - h0.session.blocks) / agentCost.seconds : null,
    samplesPerSec: h1?.samplesPerSec ?? null,
    roundTripMs: h1?.session.roundTripMs ?? null,
    late: h0 && h1 ? h1.session.late - h0.session.late : null,
    inventoryReread: Math.abs(readAt1 - readAt0) > 100,
    warnings: agent.logs.filter((l) => Number(l.level) >= 40).map((l) => String(l.msg)),
  };
}

/** --trace: p50 / max of each step, from the one before (ms), over the storms the fuse cut. */
function traceSummary(rs: Storm[]): string {
  const rows: Array<[string, number[]]> = [];
  const add = (name: string, xs: number[]) => rows.push([name, xs.filter(Number.isFinite)]);
  const t = rs.filter((r) => r.trace?.cuts.length);
  const c = (r: Storm) => r.trace!.cuts[0]!;
  const dec = (r: Storm) => (Number.isFinite(r.msToHostCut) ? r.msToHostCut : r.msToUnheardHostCut);
  add('decided (from the frame)', t.map(dec));
  add('decided -> vim-cmd first line (spawn + interpreter start-up)', t.map((r) => c(r).start - dec(r)));
  add('first line -> imports done', t.map((r) => c(r).imported - c(r).start));
  add('imports -> inventory locked', t.map((r) => (c(r).locked ?? NaN) - c(r).imported));
  add('locked -> ip spawned', t.map((r) => (c(r).ip ?? NaN) - (c(r).locked ?? NaN)));
  add('ip spawned -> ip done', t.map((r) => (c(r).ipDone ?? NaN) - (c(r).ip ?? NaN)));
  add('ip done -> vim-cmd end', t.map((r) => c(r).end - (c(r).ipDone ?? NaN)));
  add('ip done -> last broadcast at prod', t.map((r) => r.trace!.afterCut.lastBroadcastMs - (c(r).ipDone ?? NaN)));
  add('ip done -> quiet (bench criterion)', t.map((r) => r.msToQuiet - (c(r).ipDone ?? NaN)));
  add('the fuse\'s reported cut call (its `ms`)', t.map((r) => r.actionMs));
  add('vim-cmd end - (decided + reported call)', t.map((r) => c(r).end - dec(r) - r.actionMs));
  add('storm end: last broadcast at prod (from the frame)', t.map((r) => r.trace!.lastBroadcastMs));
  add('bench quiet (from the frame)', t.map((r) => r.msToQuiet));
  add('settled quiet (from the frame; then < 100 frames in 500 ms)', t.map((r) => r.msToQuietSettled));
  add('bench quiet before the cut landed (storms, 1 = yes)', t.map((r) => (r.msToQuiet < (c(r).ipDone ?? NaN) ? 1 : 0)));
  add('broadcast frames at prod after ip done', t.map((r) => r.trace!.afterCut.broadcast));
  add('other frames at prod after ip done', t.map((r) => r.trace!.afterCut.other));
  const lines = [`trace summary (${t.length} storms with a traced vim-cmd disconnect; p50 / max, ms unless frames):`];
  for (const [name, xs] of rows) lines.push(`  ${name.padEnd(62)} ${fmt(summary(xs).p50, 1).padStart(8)} / ${fmt(Math.max(...xs), 1)}`);
  return `${lines.join('\n')}\n`;
}

// --- report ----------------------------------------------------------------------------------------
const HEADER = `bench-esxi: the agent next to a STAND-IN ESXi host (a real OpenSSH sshd in a namespace; esxcli,
vsish and vim-cmd are python programs printing ESXi's formats from the namespace's real counters
and acting on its real links). Each stand-in command costs ~35 ms of python, and one counter block
runs one command per watched port (2 vmnics by vsish, 3 vNICs by esxcli port stats), so the block
time, not sampleMs, sets the sample rate here. A real host's vsish is native (faster); its esxcli
is not (slower). Times are from the injected frame (send.py, CLOCK_MONOTONIC): verdict = the trip's
evidence.tNs (the agent's monotonic clock, same clock), trip line = arrival of the agent's \`trip\`
log line on this side, quiet = last frame at prod's eth0 before 20 ms of silence (observe.mjs
polling rx_packets every 1 ms). Leaked = rx frames at prod's eth0 from the first storm frame to
quiet. holdSamples ${HOLD_SAMPLES}. CPU is % of one core over a ${seconds} s quiet window (loop open): node =
the agent process, ssh = its ssh children (master, stream, commands), exited = children that ended
in the window; the ESXi side (the sshd tree in the esx namespace) is the stand-in's, not the agent's.`;

function stormReport(all: Storm[]): string[] {
  const lines = ['', 'time to break over SSH (ms from the injected frame; p50 / p95 / max)', 'sampleMs  storms  verdict                  trip line                action (vim-cmd)         quiet at prod            frames leaked (p50/p95/max)   cut (vmA vNIC / other)  escalations  unbroken  blocks/s in storm (p50)  inventory re-read in storm'];
  for (const ms of sampleMsList) {
    // Warm storms in the percentiles; the cold one (if any) on its own line below.
    const rs = all.filter((r) => r.sampleMs === ms && !r.cold);
    const cold = all.filter((r) => r.sampleMs === ms && r.cold);
    if (rs.length + cold.length === 0) continue;
    const s3 = (xs: number[], d = 0): string => {
      const s = summary(xs);
      return `${fmt(s.p50, d)} / ${fmt(s.p95, d)} / ${fmt(s.max, d)}`.padEnd(24);
    };
    const vma = rs.filter((r) => r.cut.length >= 1 && VMA_PORTS.has(r.cut[0]!)).length;
    const other = rs.filter((r) => r.cut.some((p) => !VMA_PORTS.has(p))).length;
    lines.push(
      `${String(ms).padStart(8)}  ${String(rs.length).padStart(6)}  ${s3(rs.map((r) => r.msToVerdict))} ${s3(rs.map((r) => r.msToTripLine))} ${s3(rs.map((r) => r.actionMs))} ${s3(rs.map((r) => r.msToQuiet))} ${s3(rs.map((r) => r.framesLeaked)).padEnd(29)} ${`${vma} / ${other}`.padEnd(23)} ${String(rs.reduce((s, r) => s + r.escalations, 0)).padStart(11)}  ${String(rs.filter((r) => r.guardFired).length).padStart(8)}  ${fmt(summary(rs.map((r) => r.blocksPerSec)).p50, 1).padStart(23)}  ${String(rs.filter((r) => r.inventoryReread).length).padStart(26)}`,
    );
    const decided = rs.map((r) => (Number.isFinite(r.msToHostCut) ? r.msToHostCut : r.msToUnheardHostCut)).filter(Number.isFinite);
    if (decided.length > 0) {
      const d = summary(decided);
      lines.push(`          host's fuse decided (warm): p50 ${fmt(d.p50, 0)} / max ${fmt(d.max, 0)} ms over ${decided.length} cut(s), ${rs.filter((r) => Number.isFinite(r.msToUnheardHostCut)).length} of them unheard by the agent in the window`);
    }
    for (const r of cold) {
      const decided = Number.isFinite(r.msToHostCut) ? r.msToHostCut : r.msToUnheardHostCut;
      lines.push(`          cold (first storm, agent idle >= ${fmt(coldIdleMs / 1000, 0)} s): verdict ${fmt(r.msToVerdict, 0)} ms${Number.isFinite(decided) ? `, host's fuse decided ${fmt(decided, 0)} ms${Number.isFinite(r.msToUnheardHostCut) ? ' (unheard in the window)' : ''}` : ''}, quiet ${fmt(r.msToQuiet, 0)} ms, ${fmt(r.framesLeaked, 0)} frames, cut ${r.cut.join(',') || 'nothing'}`);
    }
    const byPort = new Map<string, number>();
    for (const r of rs) for (const p of r.cut) byPort.set(p, (byPort.get(p) ?? 0) + 1);
    lines.push(`          cut: ${[...byPort].map(([p, k]) => `${p} x${k}`).join(', ') || 'nothing'}`);
  }
  return lines;
}

/** The references of this run, and every warm storm's quiet and frames as ratios to them. */
function referenceReport(refs: ReferenceRun[], all: Storm[]): string[] {
  if (refs.length === 0) return [];
  const lines = ['', `references on the same lab, no agent running (ms from the injected frame; p50 / max)`,
    'reference           storms  decided         cut call          quiet at prod     frames leaked p50   shut'];
  for (const kind of ['near-limit', 'near-limit-vimcmd', 'storm-control'] as const) {
    const rs = refs.filter((r) => r.kind === kind);
    if (rs.length === 0) continue;
    const pm = (xs: number[]): string => `${fmt(summary(xs).p50, 1)} / ${fmt(summary(xs).max, 1)}`.padEnd(17);
    lines.push(`${kind.padEnd(19)} ${String(rs.length).padStart(6)}  ${pm(rs.map((r) => r.msToDecision)).slice(0, 15)} ${pm(rs.map((r) => r.cutMs))} ${pm(rs.map((r) => r.msToQuiet))} ${fmt(summary(rs.map((r) => r.framesLeaked)).p50, 0).padStart(17)}   ${[...new Set(rs.flatMap((r) => r.shut))].join(',') || 'nothing'}; settled quiet ${pm(rs.map((r) => r.msToQuietSettled)).trim()}`);
  }
  const warm = all.filter((r) => !r.cold);
  const p50 = (xs: number[]): number => summary(xs).p50;
  const quiet = p50(warm.map((r) => r.msToQuiet));
  const frames = p50(warm.map((r) => r.framesLeaked));
  const ratio = (kind: ReferenceRun['kind'], f: (r: ReferenceRun) => number, x: number): string => {
    const ref = p50(refs.filter((r) => r.kind === kind).map(f));
    return Number.isFinite(ref) && ref > 0 ? `${fmt(x / ref, 2)}x` : '-';
  };
  const settled = p50(warm.map((r) => r.msToQuietSettled));
  lines.push(`settled quiet (20 ms of silence, then < 100 frames in 500 ms): the agent ${fmt(settled, 0)} ms = ${ratio('near-limit', (r) => r.msToQuietSettled, settled)} near-limit, ${ratio('near-limit-vimcmd', (r) => r.msToQuietSettled, settled)} near-limit with vim-cmd, ${ratio('storm-control', (r) => r.msToQuietSettled, settled)} storm-control`);
  lines.push(`the agent (warm p50): quiet ${fmt(quiet, 0)} ms = ${ratio('near-limit', (r) => r.msToQuiet, quiet)} near-limit, ${ratio('near-limit-vimcmd', (r) => r.msToQuiet, quiet)} near-limit with vim-cmd; frames ${fmt(frames, 0)} = ${ratio('storm-control', (r) => r.framesLeaked, frames)} of storm-control's`);
  return lines;
}

function costReport(costs: Cost[]): string[] {
  const lines = [
    '',
    `agent-side cost per ESXi host (${seconds} s quiet window after ${warmupMs / 1000} s warm-up; % of one core; RSS MB)`,
    'setting                 node %   ssh %  exited %  agent total %   node RSS  ssh RSS  blocks/s (measured / status)  roundTripMs  late  inv. re-read   | ESXi side (stand-in sshd tree) %',
  ];
  for (const c of costs) {
    const ssh = c.agent.byComm['ssh'] ?? 0;
    const otherLive = Object.entries(c.agent.byComm).filter(([k]) => k !== 'ssh');
    lines.push(
      `${c.setting.padEnd(22)} ${fmt(c.agent.rootPct, 2).padStart(6)}  ${fmt(ssh, 2).padStart(6)}  ${fmt(c.agent.exitedPct, 2).padStart(8)}  ${fmt(c.agent.totalPct, 2).padStart(13)}  ${fmt(c.agent.rootRssKb / 1024, 1).padStart(9)}  ${fmt((c.agent.rssByComm['ssh'] ?? 0) / 1024, 1).padStart(7)}  ${`${fmt(c.blocksPerSec ?? NaN, 1)} / ${fmt(c.samplesPerSec ?? NaN, 1)}`.padStart(28)}  ${fmt(c.roundTripMs ?? NaN, 1).padStart(11)}  ${String(c.late ?? '-').padStart(4)}  ${(c.sampleMs === null ? '-' : c.inventoryReread ? 'yes' : 'no').padStart(12)}   | ${fmt(c.esxSide.totalPct, 1)}`,
    );
    if (otherLive.length) lines.push(`                       other live children: ${otherLive.map(([k, v]) => `${k} ${fmt(v, 2)}%`).join(', ')}`);
  }
  return lines;
}

// --- main ------------------------------------------------------------------------------------------
let current: AgentHandle | null = null;
let lab: EsxiLab | null = null;
let work = '';
const onSignal = () => {
  void (async () => {
    if (lab) await openLoop(lab).catch(() => undefined);
    await current?.stop().catch(() => null);
    await teardownEsxiLab(prefix).catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  })().finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

/** When the agent of the current withAgent() became ready (monotonic ms): the cold storm idles from there. */
let readyAtMs = 0;

async function withAgent<T>(l: EsxiLab, sampleMs: number | null, fn: (a: AgentHandle) => Promise<T>): Promise<T> {
  const policy = join(work, `policy-${sampleMs ?? 'none'}.yaml`);
  writeFileSync(policy, policyYaml(l, sampleMs));
  const agent = await startAgent(l.ns.agent, { policy, stateDir: mkdtempSync(join(work, 'state-')) });
  current = agent;
  try {
    if (sampleMs !== null) await waitReady(agent, l, new Map(), READY_MS);
    readyAtMs = performance.now();
    return await fn(agent);
  } finally {
    await agent.stop();
    current = null;
  }
}

const t0 = Date.now();
const hz = await clockTicksPerSecond();
work = mkdtempSync(join(tmpdir(), `${prefix}bench-esxi-`));
const costs: Cost[] = [];
const results: Storm[] = [];
const refs: ReferenceRun[] = [];
process.stderr.write(`bench-esxi: ${storms} storms per sampleMs ${sampleMsList.join(',')}, ${seconds} s cost windows; lab prefix ${prefix}\n`);
let failed = true;
try {
  lab = await buildEsxiLab(prefix, { mgmt, ...(uplinkRate ? { uplinkRate } : {}) });
  if (values.trace) traceOn(lab);
  const l = lab;
  process.stderr.write(`lab: management ${mgmt}, uplinks ${uplinkRate ? `shaped to ${uplinkRate}` : 'not shaped'}\n`);
  const levelPps = stormControlPps(uplinkRate);
  for (const [kind, n] of [['near-limit', nearN], ['near-limit-vimcmd', nearN], ['storm-control', baselineN]] as const) {
    for (let i = 1; i <= n; i++) {
      const r = await referenceStorm(l, kind, kind === 'storm-control' ? guardMs : 1500, levelPps);
      refs.push(r);
      process.stderr.write(`${kind} ${i}/${n}: decided ${fmt(r.msToDecision, 1)} ms, cut call ${fmt(r.cutMs, 1)} ms, quiet ${fmt(r.msToQuiet, 0)} ms (settled ${fmt(r.msToQuietSettled, 0)}), ${fmt(r.framesLeaked, 0)} frames, shut ${r.shut.join(',') || 'nothing'}${kind === 'storm-control' ? ` (level ${levelPps} pps)` : ''}${r.error ? ` (no result: ${r.error})` : ''}\n`);
      await sleep(500);
    }
  }
  if (!values['no-cost']) {
    const base = await withAgent(l, null, (a) => measureCost(l, a, null, hz));
    costs.push(base);
    process.stderr.write(`cost ${base.setting}: node ${fmt(base.agent.rootPct, 2)}%, children ${fmt(base.agent.totalPct - base.agent.rootPct, 2)}%, RSS ${fmt(base.agent.rootRssKb / 1024, 1)} MB\n`);
  }
  for (const ms of sampleMsList) {
    await withAgent(l, ms, async (agent) => {
      const c = values['no-cost'] ? null : await measureCost(l, agent, ms, hz);
      if (c) costs.push(c);
      if (c) process.stderr.write(
        `cost ${c.setting}: node ${fmt(c.agent.rootPct, 2)}%, ssh ${fmt(c.agent.byComm['ssh'] ?? 0, 2)}% (live: ${c.agent.live.join(',')}), exited ${fmt(c.agent.exitedPct, 2)}%, RSS ${fmt(c.agent.rootRssKb / 1024, 1)} MB, ${fmt(c.blocksPerSec ?? NaN, 1)} blocks/s, rtt ${fmt(c.roundTripMs ?? NaN, 1)} ms, ESXi side ${fmt(c.esxSide.totalPct, 1)}%${c.warnings.length ? `, warnings: ${c.warnings.slice(0, 3).join(' | ')}` : ''}\n`,
      );
      for (let i = 1; i <= storms; i++) {
        if (i === 1 && coldIdleMs > 0) {
          const wait = Math.max(0, coldIdleMs - (performance.now() - readyAtMs));
          process.stderr.write(`sampleMs ${ms}: the agent idles ${fmt(wait / 1000, 1)} s more before its first (cold) storm\n`);
          await sleep(wait);
        }
        const r = await storm(l, agent, ms, i);
        results.push(r);
        process.stderr.write(
          `sampleMs ${ms} storm ${i}/${storms}: verdict ${fmt(r.msToVerdict, 0)} ms, trip line ${fmt(r.msToTripLine, 0)} ms (action ${fmt(r.actionMs, 0)} ms${Number.isFinite(r.msToHostCut) ? `, host's fuse decided at ${fmt(r.msToHostCut, 0)} ms` : ''}), quiet ${fmt(r.msToQuiet, 0)} ms, ${fmt(r.framesLeaked, 0)} frames, cut ${r.cut.join(',') || 'nothing'}, ${fmt(r.blocksPerSec, 1)} blocks/s${r.inventoryReread ? ', inventory re-read in storm' : ''}${r.escalations ? `, ${r.escalations} escalation(s)` : ''}${Number.isFinite(r.msToUnheardHostCut) ? `, cut by the host's fuse (decided at ${fmt(r.msToUnheardHostCut, 0)} ms; the agent heard of it after the window)` : ''}${r.guardFired ? ', NOT BROKEN: guard opened the loop' : ''}, restored via ${r.restoredVia}\n`,
        );
        for (const line of r.said) process.stderr.write(`    agent: ${line}\n`);
        if (r.trace) process.stderr.write(`    ${traceLine(Number.isFinite(r.msToHostCut) ? r.msToHostCut : r.msToUnheardHostCut, r.msToQuiet, r.trace)}; settled quiet ${fmt(r.msToQuietSettled, 1)}\n`);
      }
    });
  }
  if (values.trace) process.stderr.write(traceSummary(results));
  failed = false;
} finally {
  if (lab) await openLoop(lab).catch(() => undefined);
  await teardownEsxiLab(prefix);
  // A failed run keeps the agents' state dirs (journals) for whoever reads its error.
  if (failed) process.stderr.write(`bench-esxi: failed; the agents' journals are kept in ${work}\n`);
  else rmSync(work, { recursive: true, force: true });
}
process.stdout.write([HEADER, ...stormReport(results), ...referenceReport(refs, results), ...costReport(costs), '', `total ${fmt((Date.now() - t0) / 1000, 0)} s`].join('\n') + '\n');
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(
  values.out!,
  JSON.stringify({ node: process.version, kernel: release(), coldIdleMs, mgmt, uplinkRate: uplinkRate ?? null, fuse: fuseMode, clkTck: hz, seconds, warmupMs, guardMs, holdSamples: HOLD_SAMPLES, date: new Date().toISOString(), storms: results, references: refs, costs }, null, 2) + '\n',
);
