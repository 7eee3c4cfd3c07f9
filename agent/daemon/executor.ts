import type { ActionRequest, ActionResult, EsxiActionRecord, JournalEvent, Policy } from '../types.js';
import { loopSettling, portStates, type BreakerState } from '../breaker/state.js';
import type { DownStages, PortKind, PortKinds } from './port-kinds.js';
import type { Clock } from './clock.js';

// Carries out the breaker's commands through the port-kind table, off the tick: each result
// comes back into the tick's inbox and wakes the scheduler, so the breaker sees it at once.
// Also puts tripped and held ports down again when someone brought one back up (reassert).
// A bridge port's link-down comes back in two parts: stage 'stopped' as soon as it forwards no
// more (the breaker may judge and shut the loop's next member from then), and the final result
// after its admin-down, which waits until no loop shut is in flight or settling (ADMIN_DOWN_*).

export interface ExecutorDeps {
  kinds: PortKinds;
  clock: Clock;
  /** Where results go (the tick's inbox) and who is woken for them. */
  results: ActionResult[];
  wake(): void;
  /** What the port's last trip did on an ESXi host (its undo needs it). */
  previous(port: string): EsxiActionRecord | undefined;
  breaker(): BreakerState;
  record(e: JournalEvent): void;
  policy(): Policy;
  stopped(): boolean;
}

export interface Executor {
  execute(cmd: ActionRequest, issuedNs: number): void;
  /** Settles when every link-up now in flight has (a reachability check waits on them). */
  upsSettled(): Promise<void>;
  /** Check the tripped and held ports of these kinds, and cut again what was undone. */
  reassert(kinds: readonly PortKind[]): void;
  /**
   * Every action's outcome, with the time from its verdict (ms); returns the unsubscribe. A staged
   * link-down reports its stop (stage 'stopped'), and its final result only if that failed.
   */
  onOutcome(fn: (r: ActionResult, sinceVerdictMs: number) => void): () => void;
}

/** How often a deferred admin-down looks whether the loops have settled, and its longest wait (ms). */
const ADMIN_DOWN_POLL_MS = 2;
const ADMIN_DOWN_MAX_WAIT_MS = 1000;

export function createExecutor(d: ExecutorDeps): Executor {
  // Link-ups in flight: a reachability check waits for them (an undo's link-up may be what
  // restores the path the next shut relies on).
  const pendingUps = new Set<Promise<unknown>>();
  const reasserting = new Set<string>();
  const listeners = new Set<(r: ActionResult, ms: number) => void>();
  /** Settles when the last stopped port's admin-down has ended (see execute). */
  let adminDownTail: Promise<void> = Promise.resolve();

  function execute(cmd: ActionRequest, issuedNs: number): void {
    const kind = d.kinds.of(cmd.port);
    const previous = d.previous(cmd.port);
    // The outcome listeners (reaction time) hear of the stop when there is one, not of the
    // deferred admin-down after it.
    let stopped = false;
    // Deferred admin-downs run one after another, in the order their ports stopped: they contend
    // for rtnl anyway, and the journal's trips then come in the order the breaker shut the ports.
    let turn: Promise<void> = Promise.resolve();
    let done = (): void => {};
    const stages: DownStages = {
      onStopped(r) {
        stopped = true;
        turn = adminDownTail;
        adminDownTail = new Promise((res) => (done = res));
        const ms = (d.clock.now() - issuedNs) / 1e6;
        for (const fn of listeners) fn(r, ms);
        d.results.push(r);
        d.wake();
      },
      adminDownGate: () => adminDownGate().then(() => turn),
    };
    const p = !kind
      ? Promise.reject(new Error(`no port kind knows ${JSON.stringify(cmd.port)}`))
      : cmd.kind === 'link-down'
        ? kind.down(cmd, previous, stages)
        : kind.up(cmd, previous);
    if (cmd.kind === 'link-up') {
      pendingUps.add(p);
      const drop = (): void => void pendingUps.delete(p);
      p.then(drop, drop);
    }
    p.then(
      (r) => {
        const ms = (d.clock.now() - issuedNs) / 1e6;
        done();
        if (!stopped || !r.ok) for (const fn of listeners) fn(r, ms);
        d.results.push(r);
        d.wake();
      },
      (err: unknown) => {
        done();
        d.results.push({ kind: cmd.kind, port: cmd.port, ok: false, via: 'none', durationMs: 0, attempts: 0, error: (err as Error).message, verified: false });
        d.wake();
      },
    );
  }

  /**
   * Resolves once no loop shut is in flight or settling (at once if none is), when the agent
   * stops, or after ADMIN_DOWN_MAX_WAIT_MS: the port forwards nothing meanwhile (its bridge state
   * is disabled), and a trip still ends in a verified admin-down.
   */
  function adminDownGate(): Promise<void> {
    const t0 = d.clock.now();
    const open = (): boolean => d.stopped() || !loopSettling(d.breaker(), d.clock.now()) || d.clock.now() - t0 >= ADMIN_DOWN_MAX_WAIT_MS * 1e6;
    if (open()) return Promise.resolve();
    return new Promise((resolve) => {
      const poll = (): void => void (open() ? resolve() : setTimeout(poll, ADMIN_DOWN_POLL_MS));
      setTimeout(poll, ADMIN_DOWN_POLL_MS);
    });
  }

  function reassert(kinds: readonly PortKind[]): void {
    for (const p of portStates(d.breaker())) {
      if ((p.state !== 'tripped' && p.state !== 'held') || reasserting.has(p.port)) continue;
      const kind = d.kinds.of(p.port);
      if (!kind || !kinds.includes(kind)) continue;
      const previous = d.previous(p.port);
      if (kind.verify(p.port, previous) !== false) continue;
      const what = p.state;
      reasserting.add(p.port);
      void kind
        .down({ kind: 'link-down', port: p.port, reason: 'reassert' }, previous)
        .then((r) => {
          if (d.stopped()) return;
          d.record({ ts: new Date().toISOString(), event: r.ok ? 'reassert' : 'action-failed', port: p.port, reason: kind.reassertReason(what, r), policyHash: d.policy().hash, action: r });
        })
        .finally(() => reasserting.delete(p.port));
    }
  }

  return {
    execute,
    reassert,
    upsSettled: async () => {
      await Promise.allSettled([...pendingUps]);
    },
    onOutcome(fn) {
      listeners.add(fn);
      return () => void listeners.delete(fn);
    },
  };
}
