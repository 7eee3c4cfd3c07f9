import type { ActionRequest, ActionResult, FdbMove, JournalEvent, Policy, TickFrame, Verdict } from '../types.js';
import { emptyTick, initialDetectorState, step as detectStep } from '../detect/signature.js';
import { breakerBusy, breakerStep, nextNoticeEndNs, nextRecoveryNs, portStates, recoveryProbing, type BreakerState, type OperatorCommand } from '../breaker/state.js';
import type { WatchedPorts } from './ports.js';

// One tick of the pipeline, the way README draws it:
//   sources -> rates -> detect -> breaker -> commands
// No timers and no I/O: the sources are read through their one interface (watched.collect),
// and what the breaker decides leaves through `out` (the executor, the recorder, reachability).
// Every object here is made once and reused: a tick allocates nothing unless the breaker runs.

export interface TickOutput {
  /** Carry out a command; issuedNs is the tick of the verdict (the reaction time starts there). */
  execute(cmd: ActionRequest, issuedNs: number): void;
  record(e: JournalEvent): void;
  /** Written before a trip's link-down, synchronously: a kill right after cannot lose the trip. */
  intent(e: JournalEvent): void;
  /** After an automatic link-down: is the management path still there? */
  verify(port: string): void;
  /** The next automatic recovery probe is due at dueNs (monotonic; Infinity: none). */
  recoveryDue(dueNs: number): void;
}

/** What arrived between ticks, for the breaker. Producers push; the tick empties it after use. */
export interface Inbox {
  results: ActionResult[];
  operator: OperatorCommand[];
  /** Automatic link-downs after which the management gateway did not answer. */
  unreachable: Array<{ port: string; target: string }>;
}

/** What the scheduler needs from a tick (the same object every time). */
export interface TickOutcome {
  /** A port is warm or a verdict came: sample at the active rate for activeHoldMs. */
  warm: boolean;
  /** A recovery probe is running: sample at the active rate. */
  probing: boolean;
  /** How many verdicts the detector gave (tests and status). */
  verdicts: number;
}

export interface PipelineTick {
  readonly inbox: Inbox;
  run(tNs: number): TickOutcome;
  /** Run the breaker on every tick until tNs + settle (an action in flight or settling). */
  busy(tNs: number): void;
  breaker(): BreakerState;
}

export interface TickDeps {
  watched: WatchedPorts;
  policy(): Policy;
  /** Wall clock, ms since the epoch: only for the `ts` of events. */
  wallMs(): number;
  out: TickOutput;
  /** The breaker as the journal left it (tripped and held ports survive a restart). */
  breaker: BreakerState;
  /**
   * The scheduler's monotonic clock (ns). With it, a tick in which a link-down stopped its port
   * samples again at once (see run); without it (tests of one tick), it does not.
   */
  now?(): number;
  /**
   * Called for each loop verdict on a bridge, after the detector and before the breaker picks
   * whom to cut: the last chance to learn that a member just joined (its carrier came up, and
   * the listing that would say so is late; see daemon/ports.ts JoinWatch.carrierAtVerdict).
   * It may change watched.all(); it must be cheap (a few sysfs reads) and never throw.
   */
  atLoopVerdict?(bridge: string, tNs: number, members: readonly string[]): void;
}

const NO_MOVES: readonly FdbMove[] = Object.freeze([]);
const NO_PORTS: ReadonlySet<string> = new Set();

export function createTick(d: TickDeps): PipelineTick {
  let det = initialDetectorState();
  let brk = d.breaker;
  let busyUntil = 0;
  let recoveryDueNs = Infinity;
  let noticeEndNs = Infinity;
  const inbox: Inbox = { results: [], operator: [], unreachable: [] };
  const frame: TickFrame = { tNs: 0, fdbMoves: NO_MOVES, fdbPorts: NO_PORTS, fdbBridges: NO_PORTS, warm: false };
  const tick = emptyTick();
  const input = { tNs: 0, wallMs: 0, verdicts: [] as readonly Verdict[], results: inbox.results, operator: inbox.operator, unreachable: inbox.unreachable };
  const outcome: TickOutcome = { warm: false, probing: false, verdicts: 0 };

  /**
   * One breaker step. A step that throws must not stay in the inbox and throw on every tick after
   * (a bad operator command once stopped protection until restart): the operator commands are
   * dropped with an error line and the step runs again on the rest; whatever still throws is
   * dropped too. The next tick always starts from an empty inbox.
   */
  function step(policy: Policy): ReturnType<typeof breakerStep> | null {
    try {
      return breakerStep(brk, input, d.watched.all(), policy);
    } catch (err) {
      for (const o of inbox.operator.splice(0)) {
        d.out.record({ ts: new Date(input.wallMs).toISOString(), event: 'action-failed', port: o.port, reason: `${o.kind} of ${o.port} dropped: it failed inside the breaker (${(err as Error).message})`, by: o.by });
      }
      try {
        return breakerStep(brk, input, d.watched.all(), policy);
      } catch {
        throw err;
      }
    } finally {
      inbox.results.length = 0;
      inbox.operator.length = 0;
      inbox.unreachable.length = 0;
    }
  }

  function runBreaker(t: number, policy: Policy): void {
    input.tNs = t;
    input.wallMs = d.wallMs();
    const out = step(policy);
    if (!out) return;
    brk = out.state;
    // Act first, journal after: each journal line is fsync'd, and an escalation's event must not
    // delay its link-down. A trip's intent goes first, without waiting for the disk (~tens of us):
    // once write() returns, a kill -9 cannot lose it (the kernel has it), and the replay counts
    // an intent without its outcome as tripped.
    if (out.commands.length > 0) intents(out.commands);
    for (const c of out.commands) d.out.execute(c, t);
    for (const e of out.events) d.out.record(e);
    for (const port of out.verify) d.out.verify(port);
    recoveryDueNs = nextRecoveryNs(brk);
    // No wake for it: a tick comes at least every idleMs, and the end of a condition is not urgent.
    noticeEndNs = nextNoticeEndNs(brk);
    d.out.recoveryDue(recoveryDueNs);
  }

  function intents(commands: ReturnType<typeof breakerStep>['commands']): void {
    let tripping: Set<string> | null = null;
    for (const c of commands) {
      if (c.kind !== 'link-down') continue;
      tripping ??= new Set(portStates(brk).filter((p) => p.state === 'tripping').map((p) => p.port));
      if (!tripping.has(c.port)) continue; // a hold's or a reassert's link-down: journaled as such
      d.out.intent({ ts: new Date(input.wallMs).toISOString(), event: 'trip-intent', port: c.port, reason: c.reason, policyHash: d.policy().hash });
    }
  }

  return {
    inbox,
    breaker: () => brk,
    busy(tNs) {
      busyUntil = tNs + (d.policy().breaker.settleMs + 50) * 1e6;
    },
    run(t) {
      once(t);
      // A bridge port's link-down stops it during the breaker's step (stage 'stopped', pushed into
      // the inbox at once), after this tick's sample was read: the next sample's interval would
      // straddle the stop, and escalation (persistsAfter) counts only intervals wholly after it.
      // Under a three-uplink storm the next tick comes 2-8 ms later (the storm starves the
      // sampler's thread; lab probe, session 12), and that lost interval cost the second shut a
      // whole tick. So the counters are read again now, right after the stop: the interval from
      // here to the next tick lies wholly after it. Once per tick.
      if (d.now !== undefined && stopReported(inbox.results)) {
        const warm = outcome.warm;
        const verdicts = outcome.verdicts;
        once(d.now());
        outcome.warm ||= warm;
        outcome.verdicts += verdicts;
      }
      return outcome;
    },
  };

  /** One sample through the pipeline: sources, detector, and the breaker when it has something to do. */
  function once(t: number): void {
    const policy = d.policy();
    frame.tNs = t;
    frame.warm = false;
    frame.fdbMoves = NO_MOVES;
    frame.fdbPorts = NO_PORTS;
    frame.fdbBridges = NO_PORTS;
    d.watched.collect(frame);
    tick.tNs = t;
    tick.ports = d.watched.rates();
    tick.fdbMoves = frame.fdbMoves;
    tick.fdbPorts = frame.fdbPorts ?? NO_PORTS;
    tick.fdbBridges = frame.fdbBridges ?? NO_PORTS;
    const v = detectStep(det, tick, d.watched.judged(), policy);
    det = v.state;
    d.watched.consume();
    if (d.atLoopVerdict !== undefined) loopVerdicts(v.verdicts, t, d.atLoopVerdict);
    input.verdicts = v.verdicts;
    const pending = inbox.results.length > 0 || inbox.operator.length > 0 || inbox.unreachable.length > 0;
    // The breaker runs when there is something for it; otherwise a quiet tick ends here.
    if (v.verdicts.length > 0 || pending || t < busyUntil || t >= recoveryDueNs || t >= noticeEndNs || breakerBusy(brk, t)) runBreaker(t, policy);
    outcome.warm = frame.warm || v.verdicts.length > 0;
    outcome.probing = recoveryProbing(brk);
    outcome.verdicts = v.verdicts.length;
  }
}

/** Did a link-down report its stop during this tick (in the inbox, the breaker not yet told)? */
function stopReported(results: readonly ActionResult[]): boolean {
  for (let i = 0; i < results.length; i++) if (results[i]!.stage === 'stopped') return true;
  return false;
}

/** Each loop verdict's bridge to atLoopVerdict (a tick without verdicts loops over nothing). */
function loopVerdicts(verdicts: readonly Verdict[], t: number, at: (bridge: string, tNs: number, members: readonly string[]) => void): void {
  for (let i = 0; i < verdicts.length; i++) {
    const v = verdicts[i]!;
    if (v.kind === 'loop' && v.bridge !== null) at(v.bridge, t, v.members);
  }
}
