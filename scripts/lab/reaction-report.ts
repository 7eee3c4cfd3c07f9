// The reaction benchmark's report (issue 11), pure: per shape and breaker (warm agent, idle agent,
// cold agent, near-limit poller) the storms it stopped, ms to quiet over those, and the agent's ratio to the
// near-limit poller. A storm the bench had to end (no breaker cut it inside the observation) has
// no time (NaN) and is counted, never averaged in; a shape whose poller stopped none of its storms
// has no reference, and says so instead of a ratio.
import { fmt, percentile, summary } from './stats.js';

/** What the report needs of one storm (a ShapeRun has it). */
export interface RunFigures {
  msFromInject: number;
  framesLeaked: number;
  down: string[];
  stoppedByBreaker: boolean;
  /** ms from the injection to when the breaker's first stop call began (the agent's link-down action, the poller's flags write); absent when unknown. */
  msStopStart?: number;
  /** The observer's poll before the quiet one: prod's last frame came after it (absent: unknown). */
  msQuietAfter?: number;
  /** Kernel observer: frames its ring lost during the storm (its times then miss them). */
  ringDrops?: number;
}

export interface ShapeFigures {
  shape: string;
  warm: RunFigures[];
  /** The same agent process as warm, each storm after its sampler went idle (>= activeHoldMs since the last one). */
  idle: RunFigures[];
  cold: RunFigures[];
  near: RunFigures[];
  /** Storm-control runs (a StormRun has it). A run that shut nothing has no storm-control figure: counted, not in the p50. */
  baseline: Array<{ stats: { framesLeaked: number | null }; shut?: readonly unknown[] }>;
}

export interface WhoSummary {
  runs: number;
  stopped: number;
  /** Over the stopped storms only; null when none was stopped. */
  msP50: number | null;
  msP99: number | null;
  msMax: number | null;
  framesLeakedP50: number | null;
  framesLeakedMax: number | null;
  /** msP50 / the near-limit poller's msP50; null when there is no reference. */
  xNearLimit: number | null;
  /**
   * Stopped storms whose quiet at prod came before the breaker's first stop call even began: the
   * storm stalled (no frame reached prod from then on; its softirq starved on this 2-vCPU VM, say)
   * and the stop ended it stalled. Their time is prod's, shorter than the breaker's.
   */
  quietBeforeStop: number;
  /**
   * Stopped storms whose quiet poll came > 1 ms after the poll before it: the observer (normal
   * priority, every 0.25 ms) was held off its core, so prod's last frame is known only to lie
   * between the two. msP50 counts the later one; msAfterP50 is the p50 of the earlier one.
   */
  observerLate: number;
  msAfterP50: number | null;
  /** Stopped storms during which the kernel observer's ring lost frames: their times may be early. */
  ringDropped: number;
}

export interface ShapeSummary {
  shape: string;
  /** 'none' when the near-limit poller ran but stopped none of its storms; 'not run' with --near 0. */
  reference: 'near-limit' | 'none' | 'not run';
  warm: WhoSummary;
  idle: WhoSummary;
  cold: WhoSummary;
  nearLimit: WhoSummary;
}

/** A quiet poll this long after the poll before it says the observer was held off its core. */
export const OBSERVER_LATE_MS = 1;
const num = (x: number): number | null => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);
const stoppedOnly = (runs: readonly RunFigures[]) => runs.filter((r) => r.stoppedByBreaker && Number.isFinite(r.msFromInject));

function reference(r: ShapeFigures): { kind: ShapeSummary['reference']; p50: number } {
  if (r.near.length === 0) return { kind: 'not run', p50: NaN };
  const p50 = percentile(stoppedOnly(r.near).map((x) => x.msFromInject), 50);
  return Number.isFinite(p50) ? { kind: 'near-limit', p50 } : { kind: 'none', p50: NaN };
}

function who(runs: readonly RunFigures[], ref: number): WhoSummary {
  const s = stoppedOnly(runs);
  const t = summary(s.map((x) => x.msFromInject));
  const f = summary(s.map((x) => x.framesLeaked));
  return {
    runs: runs.length,
    stopped: s.length,
    msP50: num(t.p50),
    msP99: num(t.p99),
    msMax: num(t.max),
    framesLeakedP50: num(f.p50),
    framesLeakedMax: num(f.max),
    xNearLimit: num(t.p50 / ref),
    quietBeforeStop: s.filter((x) => x.msStopStart !== undefined && x.msFromInject < x.msStopStart).length,
    observerLate: s.filter((x) => x.msQuietAfter !== undefined && x.msFromInject - x.msQuietAfter > OBSERVER_LATE_MS).length,
    msAfterP50: num(percentile(s.map((x) => x.msQuietAfter ?? x.msFromInject), 50)),
    ringDropped: s.filter((x) => (x.ringDrops ?? 0) > 0).length,
  };
}

export function shapeSummary(r: ShapeFigures): ShapeSummary {
  const ref = reference(r);
  return { shape: r.shape, reference: ref.kind, warm: who(r.warm, ref.p50), idle: who(r.idle, ref.p50), cold: who(r.cold, ref.p50), nearLimit: who(r.near, ref.p50) };
}

const HEADER =
  'shape          who          runs stopped   ms to quiet p50 / p99 / max     x near-limit (p50)   frames leaked p50 / max   ports down';

function ratioCell(kind: ShapeSummary['reference'], x: number | null): string {
  if (kind === 'none') return 'no reference'.padStart(12);
  return `${fmt(x ?? NaN, 2).padStart(8)}x   `;
}

/** The stdout table; figures are over the storms the breaker stopped (the 'stopped' column). `instrument` (a line saying what timed prod) heads it when given. */
export function reactionTable(results: readonly ShapeFigures[], observeMs: number, instrument?: string): string {
  const lines = instrument ? [instrument, HEADER] : [HEADER];
  for (const r of results) {
    const sum = shapeSummary(r);
    for (const [name, runs, w] of [['warm', r.warm, sum.warm], ['idle', r.idle, sum.idle], ['cold', r.cold, sum.cold], ['near-limit', r.near, sum.nearLimit]] as const) {
      if (runs.length === 0) continue;
      const down = [...new Set(runs.map((x) => x.down.join('+') || '-'))].join(' ');
      const ms = (v: number | null): string => fmt(v ?? NaN, 2).padStart(7);
      const frames = (v: number | null): string => fmt(v ?? NaN, 0).padStart(7);
      lines.push(
        `${r.shape.padEnd(14)} ${name.padEnd(11)} ${String(w.runs).padStart(4)} ${String(w.stopped).padStart(7)}   ${ms(w.msP50)} / ${ms(w.msP99)} / ${ms(w.msMax)}   ${ratioCell(sum.reference, w.xNearLimit)}         ${frames(w.framesLeakedP50)} / ${frames(w.framesLeakedMax)}   ${down}${w.quietBeforeStop > 0 ? `   (${w.quietBeforeStop} quiet at prod before the stop began: stalled)` : ''}${late(w)}${w.ringDropped > 0 ? `   (${w.ringDropped} with frames lost by the observer's ring: times may be early)` : ''}`,
      );
    }
    if (sum.reference === 'none') {
      lines.push(`${r.shape.padEnd(14)} near-limit stopped none of ${r.near.length} storms within ${observeMs} ms (the bench opened the loop): no reference for this shape`);
    }
    if (r.baseline.length > 0) lines.push(baselineLine(r));
  }
  return lines.join('\n');
}

function late(w: WhoSummary): string {
  if (w.observerLate === 0) return '';
  return `   (${w.observerLate} polled > ${OBSERVER_LATE_MS} ms late at the end: last frame after p50 ${fmt(w.msAfterP50 ?? NaN, 2)} ms)`;
}

function baselineLine(r: ShapeFigures): string {
  const shut = r.baseline.filter((x) => x.shut === undefined || x.shut.length > 0);
  const none = r.baseline.length - shut.length;
  const noneText = none > 0 ? ` (${none} of them shut nothing: the bench opened the loop, not counted)` : '';
  if (shut.length === 0) return `${r.shape.padEnd(14)} storm-control ${r.baseline.length}${noneText}: no figure`;
  const b = summary(shut.map((x) => x.stats.framesLeaked ?? NaN));
  const warmLeak = percentile(stoppedOnly(r.warm).map((x) => x.framesLeaked), 50);
  return `${r.shape.padEnd(14)} storm-control ${r.baseline.length}${noneText}: frames leaked p50 ${fmt(b.p50, 0)}; the agent (warm) leaks ${fmt((100 * warmLeak) / b.p50, 2)}% of that`;
}
