// The agent's end of one fuse: spawn the SSH session that runs it (argv from the caller: the
// agent's own session on its ControlMaster, or a lab's ssh), send the program and the plan on its
// stdin, renew the lease, ack the cuts it has journaled, and hand every message up. It decides
// nothing: the caller journals cuts, shows status and falls back when the fuse cannot arm.
import type { ChildProcess } from 'node:child_process';
import { spawnGroup } from '../../host/child.js';
import type { FuseProgram } from './program.js';
import type { FusePlan } from './plan.js';
import { parseFuseLine, VALUES_PER_ITEM, type FuseCut, type FuseMessage } from './lines.js';

export type FuseState = 'starting' | 'armed' | 'not-armed' | 'exited';

export interface FuseHooks {
  /**
   * Values: VALUES_PER_ITEM per watched item in the armed plan's order (NaN = unreadable); the
   * same array between calls until a new plan is armed.
   */
  onSample(tUs: number, values: Float64Array, tRecvNs: number): void;
  /** A cut (or refusal, or dry-run) of this fuse or, replayed, of an earlier one: journal it, then ack(id). */
  onCut(cut: FuseCut, replayed: boolean): void;
  onState(state: FuseState, why: string): void;
  /** A plan sent by rearm() was armed (samples now follow it) or refused (the old one stays). */
  onRearm?(plan: FusePlan, ok: boolean, why: string): void;
}

export interface FuseClient {
  /** Tell the fuse these events are journaled (it forgets them; a later fuse will not replay them). */
  ack(ids: readonly string[]): void;
  /**
   * Arm a new plan on the running fuse (the watched ports changed): no new session, so a storm
   * that fills the links cannot keep the host unprotected between plans.
   */
  rearm(plan: FusePlan): void;
  /** Ask the fuse to exit now (disarm); the SSH session ends with it. */
  stop(): Promise<void>;
  state(): FuseState;
  samples(): number;
  pid(): number | undefined;
  /** The local ssh session that runs it (killed: the fuse protects on until its lease ends). */
  readonly child: ChildProcess;
  /** Settles when that session has ended. */
  readonly exited: Promise<void>;
}

export interface FuseOptions {
  /** argv of the ssh session whose remote command is fuseRemoteLine(). */
  argv: readonly string[];
  program: FuseProgram;
  plan: FusePlan;
  /** Lease renewal period (default leaseMs / 4). */
  renewMs?: number;
}

const hrNs = (): number => Number(process.hrtime.bigint());

export function startFuse(o: FuseOptions, hooks: FuseHooks): FuseClient {
  const [file, ...args] = o.argv;
  if (!file) throw new Error('startFuse: empty argv');
  // Tied to the agent's life (PR_SET_PDEATHSIG): the fuse's stdin EOF alone does not end the
  // session (the fuse protects on for its lease), so an agent killed by SIGKILL must not leave
  // this ssh, and the ControlMaster that waits for it, behind. The fuse itself protects on.
  const child: ChildProcess = spawnGroup(file, args, { stdio: ['pipe', 'pipe', 'pipe'], tied: true });
  let values = new Float64Array(VALUES_PER_ITEM * o.plan.watch.length);
  /** Plans sent and not yet answered (armed or refused), oldest first. */
  const sent: FusePlan[] = [];
  let state: FuseState = 'starting';
  let samples = 0;
  let rest = '';
  let stderr = '';
  const set = (s: FuseState, why: string): void => {
    if (state === s && s !== 'not-armed') return;
    state = s;
    hooks.onState(s, why);
  };
  const send = (obj: object): void => {
    if (child.stdin?.writable) child.stdin.write(`${JSON.stringify(obj)}\n`);
  };
  child.stdin?.on('error', () => undefined); // the connection went: the lease runs out on the host
  child.stdin?.write(o.program.text);
  sent.push(o.plan);
  send(o.plan);
  const renew = setInterval(() => send({ op: 'lease' }), o.renewMs ?? Math.max(200, o.plan.leaseMs / 4));
  renew.unref();

  const onMessage = (m: FuseMessage, tRecvNs: number): void => {
    switch (m.kind) {
      case 'sample':
        samples++;
        hooks.onSample(m.tUs, values, tRecvNs);
        break;
      case 'armed': {
        const plan = sent.shift();
        // Samples of the old plan still in flight have the old count: parseFuseLine drops them.
        if (plan) values = new Float64Array(VALUES_PER_ITEM * plan.watch.length);
        if (state === 'armed' && plan) return hooks.onRearm?.(plan, true, `fuse v${m.version} re-armed: ${m.watch} counters, ${m.cutList} cut candidates`);
        set('armed', `fuse v${m.version} armed: ${m.watch} counters, ${m.cutList} cut candidates, budget ${m.budget}${m.dryRun ? ', dry-run' : ''}`);
        break;
      }
      case 'not-armed': {
        const plan = sent.shift();
        // While armed, a refusal is of a re-arm (the old plan stays in force), never the fuse's end.
        if (state === 'armed') return plan ? hooks.onRearm?.(plan, false, m.why) : undefined;
        set('not-armed', m.why);
        break;
      }
      case 'cut':
        hooks.onCut(m.cut, m.replayed);
        break;
      case 'exit':
        set('exited', m.why);
        break;
      default:
        break;
    }
  };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const t = hrNs();
    rest += chunk;
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      if (line) onMessage(parseFuseLine(line, values), t);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise<void>((resolve) => {
    child.on('close', (code) => {
      clearInterval(renew);
      // Loader exits: 3 = program cut short, 4 = hash refused; 127 = no python on the host.
      const why = code === 127 ? 'no python on the host (exit 127)' : code === 4 ? 'the host refused the program hash' : `session ended (exit ${String(code)})${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`;
      if (state === 'starting') set('not-armed', why);
      else if (state !== 'exited' && state !== 'not-armed') set('exited', why);
      resolve();
    });
    child.on('error', (e) => {
      clearInterval(renew);
      if (state === 'starting') set('not-armed', e.message);
      resolve();
    });
  });
  return {
    ack: (ids) => send({ op: 'ack', ids }),
    rearm(plan) {
      sent.push(plan);
      send(plan);
    },
    stop: async () => {
      send({ op: 'stop' });
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
    state: () => state,
    samples: () => samples,
    pid: () => child.pid,
    child,
    exited,
  };
}
