import type { JournalEvent, Policy, PortPolicy } from '../types.js';
import { portStates, type BreakerState, type OperatorCommand } from '../breaker/state.js';
import { selectTail } from '../journal/journal.js';
import { createPacer } from '../journal/pacer.js';
import { ControlError, type Handler, type RequestContext } from '../control/server.js';
import { requester, requesterText } from '../control/peer.js';
import { eventsArgs, operatorArgs, str } from '../control/args.js';
import type { StatusAnswer, StreamedArray } from '../control/protocol.js';
import type { PortKinds } from './port-kinds.js';
import type { ReloadOutcome } from './reload.js';
import type { Requester } from '../control/peer.js';

// The control socket's commands: arguments checked here (a bad one is refused with a reason),
// operator overrides handed to the breaker through the tick's inbox, answers built on request.
// (control/args.ts has the stricter edge checks and `wait` of issue 13, to be wired here.)

/** How long `trip` and friends wait for their outcome: every try of the action, and a margin. */
export const outcomeWithinMs = (p: Policy): number => p.actions.timeoutMs * (p.actions.retries + 1) + 5000;

export interface CommandDeps {
  status(): StatusAnswer;
  ports(): ReadonlyMap<string, PortPolicy>;
  breaker(): BreakerState;
  kinds: PortKinds;
  lastTrip: ReadonlyMap<string, JournalEvent>;
  journalPath: string;
  /** The breaker's inbox for operator commands. */
  operator: OperatorCommand[];
  /** Run the breaker now. */
  wake(): void;
  reload(trigger: string, by?: Requester): Promise<ReloadOutcome>;
  /** Events as they are recorded (a waiting command watches for its outcome). */
  onRecord(fn: (e: JournalEvent) => void): () => void;
  /** How long a waiting command waits for its outcome at most (ms). */
  outcomeWithinMs(): number;
}

export function controlHandler(d: CommandDeps): Handler {
  return async (cmd, args, ctx) => {
    switch (cmd) {
      case 'status':
        return d.status();
      case 'why':
        return why(d, str(args.port, 'port', 64));
      case 'events':
        return journalEvents(d.journalPath, args);
      case 'trip':
      case 'restore':
      case 'hold':
      case 'release':
        return operatorCommand(d, cmd, args, ctx);
      case 'reload':
        return d.reload('control', requester(ctx.peer, args));
      default:
        throw new ControlError('E_UNKNOWN_CMD', `unknown command ${JSON.stringify(cmd).slice(0, 80)}`);
    }
  };
}

function why(d: CommandDeps, port: string): JournalEvent | null {
  if (port) return d.lastTrip.get(port) ?? null;
  let latest: JournalEvent | null = null;
  for (const e of d.lastTrip.values()) if (!latest || e.ts > latest.ts) latest = e;
  return latest;
}

function operatorCommand(d: CommandDeps, cmd: 'trip' | 'restore' | 'hold' | 'release', args: Record<string, unknown>, ctx: RequestContext) {
  // Validated at the edge: what passes is finite and in range (forMs 1e300 once broke every tick).
  const a = operatorArgs(cmd, args);
  const { port } = a;
  const who = requester(ctx.peer, args);
  const state = portStates(d.breaker()).find((p) => p.port === port)?.state;
  // A held port may be released even when a reload stopped watching it; a tripped ESXi vNIC may
  // be restored though the host no longer lists it among the watched ports (its VM has no vSwitch
  // port left while it is disconnected).
  const remoteKnown = state !== undefined && (cmd === 'restore' || cmd === 'release') && (d.kinds.of(port)?.id ?? 'local') !== 'local';
  if (!d.ports().has(port) && !(cmd === 'release' && state === 'held') && !remoteKnown) {
    throw new ControlError('E_UNKNOWN_PORT', `port ${JSON.stringify(port)} is not watched by the policy`);
  }
  // Read for loop evidence only (policy/observed.ts): no rule names it, so nothing is done to it.
  if (d.ports().get(port)?.observed) throw new ControlError('E_UNKNOWN_PORT', `port ${JSON.stringify(port)} is not named by the policy (observed only, for loop evidence): name it in a policy rule first`);
  // Refused now, not in the journal a tick later: the CLI says so and exits 1.
  if (cmd === 'trip' && d.ports().get(port)?.protected) throw new ControlError('E_PROTECTED', `trip of ${port} refused: the port is protected (hold it to shut it by decision)`);
  const o: OperatorCommand = { kind: cmd, port, reason: a.reason, by: requesterText(who), extra: { by: who } };
  if (a.forMs !== null) {
    o.untilMs = Date.now() + a.forMs;
    // Expire on time rather than at the next once-a-second check (a timer holds at most 2^31-1 ms).
    setTimeout(d.wake, Math.min(a.forMs + 5, 2 ** 31 - 1)).unref();
  }
  const accepted = { accepted: true, port, cmd, by: who, ...(o.untilMs !== undefined ? { until: new Date(o.untilMs).toISOString() } : {}) };
  const outcome = a.wait ? waitOutcome(d, cmd, port, accepted) : null;
  d.operator.push(o);
  d.wake();
  return outcome ?? accepted;
}

/**
 * The command's outcome, from the first event for its port that settles it: done (with the
 * action's verification) or refused (with the breaker's reason). No outcome within the deadline:
 * the acceptance, as without wait.
 */
function waitOutcome(d: CommandDeps, cmd: string, port: string, accepted: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const finish = (extra: Record<string, unknown>): void => {
      clearTimeout(timer);
      off();
      resolve({ ...accepted, ...extra });
    };
    const timer = setTimeout(() => finish({ note: `no outcome within ${d.outcomeWithinMs()} ms` }), d.outcomeWithinMs());
    timer.unref();
    const off = d.onRecord((e) => {
      if (e.port !== port) return;
      const action = e.action as { ok?: boolean; verified?: boolean; via?: string } | undefined;
      const done = (): void => finish({ outcome: 'done', verified: action ? action.verified === true : true, ...(action?.via ? { via: action.via } : {}), ...(e.note ? { why: String(e.note) } : {}) });
      if (e.event === 'action-failed') return finish({ outcome: 'refused', why: e.reason });
      if (cmd === 'trip' && e.event === 'trip') return done();
      if (cmd === 'restore' && e.event === 'restore') return done();
      if (cmd === 'release' && e.event === 'release') return done();
      // A hold is done when its link-down landed (applied), or at once when the port was down already.
      if (cmd === 'hold' && e.event === 'hold' && (e.applied === true || (e.previous !== 'forwarding' && e.previous !== 'probing'))) return done();
    });
  });
}

/**
 * Reading the journal back for clients, all of them together: 8 MB/s after a 4 MB burst. A 9 MB
 * journal costs ~70 ms of CPU per `events` answer on this VM; paced, four clients looping on it
 * cost ~10% of a core (measured: README "What it survives") instead of one core at real-time
 * priority. One operator's `events` on a normal journal (a few MB) is answered at once.
 */
const READ_BACK = createPacer(8 * 1024 * 1024, 4 * 1024 * 1024);

/**
 * The newest `limit` journal lines that match, from the file (the journal is the record), within
 * its last 16 MB; streamed to the client as they are on disk (journal/tail.ts says why).
 */
async function journalEvents(path: string, args: Record<string, unknown>): Promise<StreamedArray> {
  const { port, sinceMs, limit } = eventsArgs(args);
  const from = sinceMs === null ? '' : new Date(Date.now() - sinceMs).toISOString();
  const keep = (e: JournalEvent): boolean => (!port || e.port === port) && (!from || (typeof e.ts === 'string' && e.ts >= from));
  const sel = await selectTail(path, { maxLines: limit, keep, pace: READ_BACK });
  if ('error' in sel) throw new ControlError('E_JOURNAL', sel.error);
  return { streamed: sel.lines(), close: () => sel.close() };
}
