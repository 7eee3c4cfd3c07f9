import type { JournalEvent, PortPolicy } from '../types.js';
import { portStates, type BreakerState, type OperatorCommand } from '../breaker/state.js';
import { readJournalTail } from '../journal/journal.js';
import { ControlError, type Handler, type RequestContext } from '../control/server.js';
import { requester, requesterText } from '../control/peer.js';
import { parseDuration } from '../control/duration.js';
import { str } from '../control/args.js';
import type { StatusAnswer } from '../control/protocol.js';
import type { PortKinds } from './port-kinds.js';
import type { ReloadOutcome } from './reload.js';
import type { Requester } from '../control/peer.js';

// The control socket's commands: arguments checked here (a bad one is refused with a reason),
// operator overrides handed to the breaker through the tick's inbox, answers built on request.
// (control/args.ts has the stricter edge checks and `wait` of issue 13, to be wired here.)

/** `events` reads at most this many journal lines from the end of the file. */
const JOURNAL_TAIL_LINES = 10_000;

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
  const port = str(args.port, 'port', 64);
  const reason = str(args.reason, 'reason') || 'operator request';
  const who = requester(ctx.peer, args);
  const state = portStates(d.breaker()).find((p) => p.port === port)?.state;
  // A held port may be released even when a reload stopped watching it; a tripped ESXi vNIC may
  // be restored though the host no longer lists it among the watched ports (its VM has no vSwitch
  // port left while it is disconnected).
  const remoteKnown = state !== undefined && (cmd === 'restore' || cmd === 'release') && (d.kinds.of(port)?.id ?? 'local') !== 'local';
  if (!d.ports().has(port) && !(cmd === 'release' && state === 'held') && !remoteKnown) {
    throw new ControlError('E_UNKNOWN_PORT', `port ${JSON.stringify(port)} is not watched by the policy`);
  }
  const o: OperatorCommand = { kind: cmd, port, reason, by: requesterText(who), extra: { by: who } };
  if (cmd === 'hold') {
    const forMs = holdFor(args);
    if (forMs !== null) {
      o.untilMs = Date.now() + forMs;
      // Expire on time rather than at the next once-a-second check.
      setTimeout(d.wake, forMs + 5).unref();
    }
  }
  d.operator.push(o);
  d.wake();
  return { accepted: true, port, cmd, by: who, ...(o.untilMs !== undefined ? { until: new Date(o.untilMs).toISOString() } : {}) };
}

/** A hold's length from `forMs` (a number) or `for` (30s, 5m, 2h); null: until released. */
function holdFor(args: Record<string, unknown>): number | null {
  if (args.forMs !== undefined && args.forMs !== null) {
    if (typeof args.forMs !== 'number' || !Number.isFinite(args.forMs) || args.forMs <= 0) throw new ControlError('E_BAD_ARGS', 'forMs must be a positive number');
    return args.forMs;
  }
  if (args.for !== undefined && args.for !== null) {
    const ms = parseDuration(str(args.for, 'for', 32));
    if (ms === null) throw new ControlError('E_BAD_ARGS', 'for must be a duration like 30s, 5m, 2h');
    return ms;
  }
  return null;
}

async function journalEvents(path: string, args: Record<string, unknown>): Promise<JournalEvent[]> {
  const port = str(args.port, 'port', 64);
  let sinceMs: number | null = null;
  if (args.sinceMs !== undefined && args.sinceMs !== null) {
    if (typeof args.sinceMs !== 'number' || !Number.isFinite(args.sinceMs) || args.sinceMs < 0) throw new ControlError('E_BAD_ARGS', 'sinceMs must be a non-negative number');
    sinceMs = args.sinceMs;
  }
  let limit = JOURNAL_TAIL_LINES;
  if (args.limit !== undefined && args.limit !== null) {
    if (typeof args.limit !== 'number' || !Number.isInteger(args.limit) || args.limit < 1) throw new ControlError('E_BAD_ARGS', 'limit must be a positive integer');
    limit = Math.min(args.limit, JOURNAL_TAIL_LINES);
  }
  // From the file, not the in-memory tail: the journal is the record (bounded read from the end).
  const tail = await readJournalTail(path, JOURNAL_TAIL_LINES);
  const from = sinceMs === null ? '' : new Date(Date.now() - sinceMs).toISOString();
  const out = tail.events.filter((e) => (!port || e.port === port) && (!from || (typeof e.ts === 'string' && e.ts >= from)));
  return out.slice(-limit);
}
