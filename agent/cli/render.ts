// Text forms of control-socket answers for humans. Pure: data in, string out; the CLI prints.
import type { PortStatusRow, StatusAnswer } from '../control/protocol.js';
import type { EsxHostStatus } from '../esxi/host.js';

/** The parts of the status answer (control/protocol.ts) the text form reads: a StatusAnswer is one. */
export interface StatusView {
  policy: Pick<StatusAnswer['policy'], 'file' | 'hash' | 'dryRun'> & Partial<Pick<StatusAnswer['policy'], 'loadedAt' | 'reloads' | 'lastError'>>;
  health: Pick<StatusAnswer['health'], 'ticks' | 'periodMs' | 'lastTickAgeMs' | 'broadcastCounting'> & Partial<Pick<StatusAnswer['health'], 'ticksPerSec' | 'maxLagMs' | 'sources' | 'journal' | 'stalls'>>;
  ports: ReadonlyArray<Partial<PortStatusRow>>;
  esxi?: ReadonlyArray<
    Pick<EsxHostStatus, 'host' | 'address' | 'live' | 'samplesPerSec' | 'missing'> & {
      session: Pick<EsxHostStatus['session'], 'state' | 'lastBlockAgeMs' | 'connects' | 'lastError' | 'roundTripMs' | 'late'> & Partial<Pick<EsxHostStatus['session'], 'streamer' | 'fuse'>>;
      ports: ReadonlyArray<Pick<EsxHostStatus['ports'][number], 'port' | 'vm' | 'portgroup' | 'watched' | 'broadcast' | 'lastError'>>;
    }
  >;
}

/** Why a vNIC whose port group the policy does not name is watched (EsxPort.watched). */
const WATCHED_WHY: Record<'bridging-vm' | 'guest-peer', string> = {
  'bridging-vm': 'the VM has two vNICs in one L2',
  'guest-peer': 'the VM has a vNIC on a watched port group, and a guest bridging the two loops through the switch',
};

const COLS = ['port', 'bridge', 'role', 'protected', 'state', 'rxPps', 'floodPps', 'txPps', 'lastEvent', 'heldUntil'];

/** Aligned columns; `-` for a missing value. */
export function table(cols: readonly string[], rows: ReadonlyArray<Record<string, unknown>>): string {
  const cells = rows.map((p) => cols.map((k) => (p[k] === null || p[k] === undefined ? '-' : String(p[k]))));
  const w = cols.map((k, i) => Math.max(k.length, ...cells.map((r) => r[i]!.length)));
  const fmt = (r: readonly string[]) => r.map((v, i) => v.padEnd(w[i]!)).join('  ').trimEnd() + '\n';
  return fmt(cols) + cells.map(fmt).join('');
}

export function renderStatus(s: StatusView): string {
  const p = s.policy;
  const h = s.health;
  let out = `policy ${p.file} hash ${p.hash}${p.dryRun ? ' DRY-RUN' : ''}${p.loadedAt ? ` loaded ${p.loadedAt}` : ''}${p.reloads ? ` (${p.reloads} reloads)` : ''}\n`;
  if (p.lastError) {
    out += `policy reload REJECTED at ${p.lastError.at} (${p.lastError.trigger}); the policy above stays in force:\n`;
    for (const e of p.lastError.errors) out += `  ${e}\n`;
  }
  const tps = h.ticksPerSec !== undefined ? `${h.ticksPerSec.toFixed(1)} ticks/s` : `${h.ticks} ticks`;
  const lag = h.maxLagMs !== undefined ? `, max lag ${h.maxLagMs.toFixed(1)} ms` : '';
  const src = h.sources ? `, sources ${h.sources.join(',') || 'none'}` : '';
  out += `agent ${tps}, period ${h.periodMs} ms, last tick ${h.lastTickAgeMs.toFixed(1)} ms ago${lag}${src}, broadcast counting ${h.broadcastCounting ? 'on' : 'OFF'}\n`;
  const j = h.journal;
  if (j && j.state === 'failing') out += `JOURNAL FAILING since ${j.since ?? '?'}: ${j.error ?? 'unknown error'}; ${j.pending} record(s) kept in memory${j.dropped ? `, ${j.dropped} dropped` : ''}; protection continues\n`;
  if (h.stalls && h.stalls.count > 0) out += `stalls: ${h.stalls.count} (longest ${h.stalls.longestMs} ms without sampling)\n`;
  for (const e of s.esxi ?? []) {
    const ss = e.session;
    const age = ss.lastBlockAgeMs === null ? 'no counters yet' : `last counters ${ss.lastBlockAgeMs} ms ago`;
    const rtt = ss.roundTripMs === null ? '' : `, round trip ${ss.roundTripMs.toFixed(1)} ms`;
    // Anything but live means: these ports are NOT being judged right now.
    out += `esxi ${e.host} (${e.address}): ${ss.state.toUpperCase()}${e.live ? '' : ' - not judged'}, ${age}, ${e.samplesPerSec} samples/s${rtt}, ${ss.connects} connects\n`;
    if (ss.lastError && !e.live) out += `  last error: ${ss.lastError}\n`;
    const f = ss.fuse;
    if (f) {
      const id = `fuse v${f.version} (sha256 ${f.sha256.slice(0, 12)})`;
      out += ss.streamer === 'fuse' || f.state === 'armed' ? `  counters from the ${id} on the host: ${f.why}\n` : `  counters from the shell loop: the ${id} ${f.state === 'not-armed' ? 'could not arm' : f.state}: ${f.why}\n`;
    }
    for (const m of e.missing) out += `  policy names ${m}: not watched\n`;
    for (const p of e.ports) if (p.lastError || !/moves/.test(p.broadcast)) out += `  ${p.port}: ${p.lastError ?? p.broadcast}\n`;
    // Ports the operator did not name: say why they are watched.
    for (const p of e.ports) if (p.watched !== undefined && p.watched !== 'portgroup') out += `  ${p.port}: vNIC of VM ${p.vm} on ${p.portgroup}, watched: ${WATCHED_WHY[p.watched]}\n`;
  }
  // Ports no rule names on a watched bridge: read for loop evidence, never acted on (policy/observed.ts).
  const seen = s.ports.filter((r) => r.observed === true);
  if (seen.length > 0) out += `observed, not named: ${seen.map((r) => `${r.port} (${r.bridge ?? '-'})`).join(', ')}: counters read for loop evidence, never shut\n`;
  const cols = s.ports.some((r) => r.heldUntil !== undefined) ? COLS : COLS.slice(0, -1);
  return out + table(cols, s.ports.map((r) => (r.observed === true ? { ...r, role: 'observed' } : r)));
}

interface EventView {
  ts: string;
  event: string;
  port: string;
  reason: string;
  policyHash?: string;
  by?: unknown;
}

export function renderEvent(e: EventView): string {
  const by = e.by && typeof e.by === 'object' ? byText(e.by as Record<string, unknown>) : typeof e.by === 'string' ? e.by : '';
  return `${e.ts}  ${String(e.event).padEnd(14)} ${(e.port || '-').padEnd(10)} ${e.reason}${by ? `  [${by}]` : ''}\n`;
}

function byText(b: Record<string, unknown>): string {
  return b.source === 'kernel' ? `uid ${String(b.uid)} (kernel)` : `${b.claimedUser ? `user ${String(b.claimedUser)}` : `uid ${String(b.uid ?? '?')}`} (claimed)`;
}

/** `why`: the trip's story in a few lines (verdict, clues, thresholds, action, timings). */
export function renderWhy(e: Record<string, unknown> | null): string {
  if (!e) return 'no trip recorded\n';
  const ev = (e.evidence ?? null) as { tNs?: number; clues?: string[]; thresholds?: Record<string, number>; rule?: number; window?: Array<{ port: string; tMs: number; rxPps: number; txPps: number; floodPps: number }> } | null;
  const a = (e.action ?? null) as { via?: string; argv?: string[]; durationMs?: number; attempts?: number; verified?: boolean; ok?: boolean; error?: string; forwardingStoppedMs?: number; adminDownVia?: string; fallback?: string } | null;
  let out = `${String(e.event)} of ${String(e.port)} at ${String(e.ts)} (policy ${String(e.policyHash ?? '?')}${e.dryRun ? ', dry run' : ''})\n`;
  out += `verdict: ${String(e.reason)}\n`;
  if (e.by) out += `by: ${typeof e.by === 'object' ? byText(e.by as Record<string, unknown>) : String(e.by)}\n`;
  if (ev && typeof ev === 'object') {
    // A journal is a file people edit and disks tear: take only what has the right shape.
    for (const c of Array.isArray(ev.clues) ? ev.clues : []) out += `why: ${String(c)}\n`;
    const th = ev.thresholds && typeof ev.thresholds === 'object' ? Object.entries(ev.thresholds) : [];
    if (th.length > 0) out += `thresholds: ${th.map(([k, v]) => `${k}=${v}`).join(' ')}${ev.rule !== undefined ? ` (rule ${ev.rule === -1 ? 'defaults' : ev.rule})` : ''}\n`;
    const w = Array.isArray(ev.window) ? ev.window.filter((s) => s && typeof s === 'object') : [];
    if (w.length > 0) {
      const last = new Map(w.map((s) => [s.port, s] as const));
      const n = (v: unknown): string => (typeof v === 'number' && Number.isFinite(v) ? String(Math.round(v)) : '-');
      for (const s of last.values()) out += `last sample ${String(s.port)}: rx ${n(s.rxPps)} pps, tx ${n(s.txPps)} pps, flood ${n(s.floodPps)} pps\n`;
    }
  } else {
    out += 'evidence: none (an operator action, or restored from the journal)\n';
  }
  if (a && typeof a === 'object') {
    const via = Array.isArray(a.argv) && a.argv.length > 0 ? a.argv.join(' ') : String(a.via ?? '-');
    out += `action: ${a.ok === false ? 'FAILED ' : ''}via ${via}, ${typeof a.durationMs === 'number' ? `${a.durationMs.toFixed(2)} ms` : '-'}, ${a.attempts ?? '-'} attempt(s), verified ${a.verified ? 'yes' : 'no'}${a.error ? `, error: ${a.error}` : ''}\n`;
    // A bridge port stopped by its bridge state: forwarding ended there, before the admin-down.
    if (typeof a.forwardingStoppedMs === 'number') out += `forwarding stopped: ${a.forwardingStoppedMs.toFixed(2)} ms, via ${String(a.via)}; admin-down via ${String(a.adminDownVia ?? '-')}\n`;
    if (typeof a.fallback === 'string') out += `fast route not taken: ${a.fallback}\n`;
  }
  // The storm's frames, saved after the shut (daemon/captures.ts): open with Wireshark or tcpdump -r.
  if (typeof e.capture === 'string') out += `capture: ${e.capture}${typeof e.captureFrames === 'number' ? ` (${e.captureFrames} frames, pcapng)` : ''}\n`;
  return out;
}

/** What a trip/restore/hold/release answer says once the daemon waited for the action. */
export interface CommandOutcome {
  port: string;
  cmd: string;
  /** done: the action ran and was verified (or nothing was needed); refused: not done, `why`. */
  outcome?: 'done' | 'refused';
  why?: string;
  verified?: boolean;
  via?: string;
  until?: string;
}

/** `trip vm1: done (down, verified via sysfs-flags)` or `trip mgmt0: refused: <why>` and the exit code. Pure. */
export function renderOutcome(r: CommandOutcome): { text: string; toStderr: boolean; code: number } {
  const until = r.cmd === 'hold' ? (r.until ? ` until ${r.until}` : ' until released') : '';
  if (r.outcome === 'refused') return { text: `${r.cmd} ${r.port}: refused: ${r.why ?? 'no reason given'}\n`, toStderr: true, code: 1 };
  if (r.outcome === 'done') {
    const how = r.verified === false ? 'NOT verified' : `verified${r.via ? ` via ${r.via}` : ''}`;
    return { text: `${r.cmd} ${r.port}: done (${how})${until}${r.why ? `: ${r.why}` : ''}\n`, toStderr: false, code: r.verified === false ? 1 : 0 };
  }
  // An agent that does not wait for the action (older): accepted is all it knows.
  return { text: `${r.cmd} ${r.port}: accepted${until}\n`, toStderr: false, code: 0 };
}
