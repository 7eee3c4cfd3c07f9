// What the loop probe's arrivals mean. Pure: which probe (by nonce) left which port, where it
// came back, and the host's bridge layout in; findings and notes out.
//
// A probe sent on X that arrives on Y means X and Y reach each other outside this host. That is
// a loop exactly when this host also forwards between them: X and Y are ports of one bridge and
// neither is held back by STP (blocking/disabled). Any other reachability is reported as a
// warning, because bridging the two later would close the loop.
import type { Role } from '../types.js';
import type { Finding } from './findings.js';
import type { PortState } from './netstate.js';

export interface ProbePortInfo {
  name: string;
  ifindex: number;
  /** Bridge this port is enslaved to, or null. */
  bridge: string | null;
  /** Its STP state in that bridge (null when not a bridge port). */
  portState: PortState | null;
  /** Matched by a policy rule (watched); unwatched interfaces still get the drop rule and the tap. */
  watched: boolean;
  role: Role | null;
}

export interface SentProbe {
  port: string;
  nonce: string;
}

export interface Arrival {
  nonce: string;
  /** Interface the frame was received on. */
  port: string;
  /** How many copies arrived there (more than one: several paths, or circling outside). */
  count: number;
}

export interface ProbeAnalysis {
  findings: Finding[];
  notes: string[];
  /** X -> Y reachability, for the evidence and the JSON output. */
  paths: Array<{ from: string; to: string; count: number }>;
  /** Frames of our ethertype with nonces we did not send (another run, another host). */
  foreign: number;
}

const BLOCKED: ReadonlySet<PortState> = new Set(['blocking', 'disabled']);
const CONVERGING: ReadonlySet<PortState> = new Set(['listening', 'learning']);

/** Count arrivals by (nonce, port). Pure. */
export function tallyArrivals(frames: ReadonlyArray<{ nonce: string; port: string }>): Arrival[] {
  const m = new Map<string, Arrival>();
  for (const f of frames) {
    const k = `${f.nonce}/${f.port}`;
    const a = m.get(k);
    if (a) a.count++;
    else m.set(k, { nonce: f.nonce, port: f.port, count: 1 });
  }
  return [...m.values()];
}

function fixFor(a: ProbePortInfo, b: ProbePortInfo, bridge: string): string {
  const both = (r: Role) => a.role === r && b.role === r;
  if (both('uplink')) {
    return `bond ${a.name} and ${b.name} and put only the bond in ${bridge}, or run STP on ${bridge} (ip link set ${bridge} type bridge stp_state 1), or keep one uplink down (ip link set ${b.name} down) until the switch side is fixed`;
  }
  if (both('vm')) {
    return `whatever sits behind ${a.name} and ${b.name} bridges them (a guest bridging its two vNICs): remove one vNIC from the guest's bridge or bond them in the guest; until then keep ${b.name} down (ip link set ${b.name} down)`;
  }
  return `take ${b.name} (or ${a.name}) out of ${bridge} or keep it down (ip link set ${b.name} down), or run STP on ${bridge}; find and remove the outside path between them`;
}

/**
 * A port's name, and whether the policy names it. An unnamed port on a bridge with a watched one
 * is observed by the agent (policy/observed.ts): a loop through it is cut at a named member.
 */
function label(p: ProbePortInfo | undefined, name: string, ports: readonly ProbePortInfo[]): string {
  if (!p || p.watched) return name;
  const observed = p.bridge !== null && ports.some((o) => o.watched && o.bridge === p.bridge);
  return observed ? `${name} (not in the policy; observed, not named: the agent would shut a named port of ${p.bridge} instead)` : `${name} (not in the policy)`;
}

/**
 * Findings from one probe run. `ports` should list every interface a probe could arrive on
 * (unknown ones are reported by name only).
 */
export function analyzeProbe(ports: readonly ProbePortInfo[], sent: readonly SentProbe[], arrivals: readonly Arrival[]): ProbeAnalysis {
  const byName = new Map(ports.map((p) => [p.name, p]));
  const fromNonce = new Map(sent.map((s) => [s.nonce, s.port]));
  const paths = new Map<string, { from: string; to: string; count: number }>();
  let foreign = 0;
  for (const a of arrivals) {
    const from = fromNonce.get(a.nonce);
    if (from === undefined) {
      foreign += a.count;
      continue;
    }
    const k = `${from}\u0000${a.port}`;
    const p = paths.get(k) ?? { from, to: a.port, count: 0 };
    p.count += a.count;
    paths.set(k, p);
  }
  const all = [...paths.values()].sort((x, y) => (x.from + x.to < y.from + y.to ? -1 : 1));

  const findings: Finding[] = [];
  const notes: string[] = [];
  // Unordered pairs: X -> Y and Y -> X are one loop, reported once.
  const pairs = new Map<string, Array<{ from: string; to: string; count: number }>>();
  for (const p of all) {
    if (p.from === p.to) {
      const info = byName.get(p.from);
      findings.push({
        rule: p.count > 1 ? 'loop-beyond-port' : 'probe-reflected',
        severity: p.count > 1 ? 'error' : 'warning',
        ports: [p.from],
        what:
          p.count > 1
            ? `a probe sent on ${label(info, p.from, ports)} came back on it ${p.count} times: a loop beyond ${p.from} (outside this host) circles frames`
            : `a probe sent on ${label(info, p.from, ports)} came back on ${p.from}: something beyond it reflects frames (hairpin/VEPA) or loops`,
        fix: `inspect the switch side of ${p.from} for a loop or a reflective relay before switching on`,
        evidence: { from: p.from, to: p.to, count: p.count },
      });
      continue;
    }
    const key = [p.from, p.to].sort().join('\u0000');
    const list = pairs.get(key) ?? [];
    list.push(p);
    pairs.set(key, list);
  }

  for (const list of pairs.values()) {
    const first = list[0]!;
    const [x, y] = [first.from, first.to];
    const px = byName.get(x);
    const py = byName.get(y);
    const names = [x, y].sort();
    const seen = list.map((p) => `sending on ${p.from} arrives on ${p.to}${p.count > 1 ? ` (${p.count} copies)` : ''}`).join('; ');
    const evidence = { paths: list, ports: [px ?? { name: x }, py ?? { name: y }] };
    if (px?.bridge && px.bridge === py?.bridge) {
      const states = [px.portState, py.portState];
      const blocked = [px, py].filter((p) => p.portState !== null && BLOCKED.has(p.portState));
      if (blocked.length > 0) {
        notes.push(`${x} and ${y} reach each other outside the host, but STP holds ${blocked.map((p) => `${p.name} (${p.portState})`).join(', ')} in ${px.bridge}: no loop`);
        continue;
      }
      if (states.some((s) => s !== null && CONVERGING.has(s))) {
        findings.push({
          rule: 'loop-probe-stp-converging',
          severity: 'warning',
          ports: names,
          what: `${seen}: ${x} and ${y} would close a loop through ${px.bridge}; STP is still converging (${px.name} ${px.portState}, ${py.name} ${py.portState})`,
          fix: `wait for STP on ${px.bridge} to settle (2 x forward_delay) and run preflight again`,
          evidence,
        });
        continue;
      }
      findings.push({
        rule: 'loop-probe',
        severity: 'error',
        ports: names,
        what: `${seen}: ports ${label(px, x, ports)} and ${label(py, y, ports)} close a loop through bridge ${px.bridge}`,
        fix: fixFor(px, py, px.bridge),
        evidence,
      });
      continue;
    }
    findings.push({
      rule: 'probe-path-outside',
      severity: 'warning',
      ports: names,
      what: `${seen}: ${x} and ${y} reach each other outside this host; not a loop now (${x} in ${px?.bridge ?? 'no bridge'}, ${y} in ${py?.bridge ?? 'no bridge'}), but bridging them would close one`,
      fix: `never put ${x} and ${y} into one bridge without a bond or STP`,
      evidence,
    });
  }
  return { findings, notes, paths: all, foreign };
}
