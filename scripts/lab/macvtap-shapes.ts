// A hypervisor host with NO bridge (session 17): libvirt's `<interface type='direct'>` gives a
// VM a macvtap device on a host NIC ("macvtap0@up1"); QEMU reads and writes its frames through
// the macvtap's character device (/dev/tapN). Built from the kvm lab: br0, vm1's and mgmt0's
// veths are deleted, so the host keeps only its uplinks up1/up2 into the switch, and
//  - macvtap0@up1 and macvtap1@up2 (mode bridge, libvirt's usual choice, or vepa, its default):
//    two NICs of one guest, each on another uplink, and the guest (scripts/lab/tapvm.py, run on
//    the host as QEMU is) either bridges them, which closes a loop through the switch
//    (up1 -> macvtap0 -> guest -> macvtap1 -> up2 -> switch -> up1), or is an ordinary guest;
//  - vm1: an ordinary VM whose NIC is a macvlan on up1 moved into its own namespace (eth0 there;
//    the frame that starts a storm leaves from it, as in every other lab).
// The macvtaps stay in the host's namespace, as on a real host: the agent sees them there.
// Quiet-lab rules as in topology.ts; the loop closes only when the guest starts bridging, and the
// guest process is bounded in time and ended on teardown (it runs in the host namespace, whose
// processes teardownLab ends).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './exec.js';
import { labAsset } from './assets.js';
import { assertIfName, assertNetns } from './names.js';
import { assertQuiet, buildLab, teardownLab, type Lab } from './topology.js';

export type MacvtapMode = 'bridge' | 'vepa' | 'private';
export type GuestMode = 'bridge' | 'guest' | 'echo' | 'send';

export interface TapGuest {
  /** End the guest (SIGTERM, then SIGKILL after 2 s); resolves when it is gone. */
  stop(): Promise<void>;
  readonly child: ChildProcess;
  /** Mode send: resolves with the frames written once the guest is done sending (never otherwise). */
  readonly sent: Promise<number>;
}

/** Mode send: how many broadcasts (0: until the guest's end) and how fast (0: as fast as it writes); mode bridge: pps caps what it forwards. */
export interface SendOptions {
  count?: number;
  pps?: number;
}

export interface MacvtapLab extends Lab {
  /** The guest's macvtap NICs on the host, one per uplink: macvtap0@up1, macvtap1@up2. */
  taps: string[];
}

const ip = (netns: string, ...a: string[]) => run(['ip', '-n', assertNetns(netns), ...a]);
/** A guest process lives at most this long, whatever the test does. */
const GUEST_MAX_S = 600;

/**
 * kvm lab -> a bridgeless host with macvtap0@up1 and macvtap1@up2 (no guest yet: quiet) and vm1
 * on a macvlan of up1. loopPorts are the macvtaps (the guest's NICs), hostPorts every host port.
 */
export async function buildMacvtapLab(prefix: string, mode: MacvtapMode = 'bridge'): Promise<MacvtapLab> {
  const lab = await buildLab('kvm', prefix);
  try {
    return await toMacvtapLab(lab, mode);
  } catch (err) {
    await teardownLab(prefix).catch(() => undefined);
    throw err;
  }
}

/** A built kvm lab -> the macvtap lab (see buildMacvtapLab); the caller tears down on failure. */
export async function toMacvtapLab(lab: Lab, mode: MacvtapMode = 'bridge'): Promise<MacvtapLab> {
  {
    const h = lab.ns.host;
    // No bridge on this host: vm1 and mgmt0 were its ports; the uplinks stay up, unenslaved.
    for (const dev of ['vm1', 'mgmt0', 'br0']) await ip(h, 'link', 'del', 'dev', dev);
    // vm1's NIC: a macvlan on up1, moved into vm1's namespace (its veth end went with vm1's host end).
    await ip(h, 'link', 'add', 'link', 'up1', 'name', 'mvvm1', 'type', 'macvlan', 'mode', mode);
    await ip(h, 'link', 'set', 'dev', 'mvvm1', 'netns', lab.ns.vm1);
    await ip(lab.ns.vm1, 'link', 'set', 'dev', 'mvvm1', 'name', 'eth0');
    await ip(lab.ns.vm1, 'link', 'set', 'dev', 'eth0', 'up');
    const taps = ['macvtap0', 'macvtap1'];
    for (const [i, t] of taps.entries()) {
      await ip(h, 'link', 'add', 'link', `up${i + 1}`, 'name', assertIfName(t), 'type', 'macvtap', 'mode', mode);
      await ip(h, 'link', 'set', 'dev', t, 'up');
    }
    const out: MacvtapLab = { ...lab, loopPorts: [...taps], hostPorts: ['up1', 'up2', ...taps], taps };
    await assertQuiet(out);
    return out;
  }
}

/**
 * Two LANs instead of one (on) or back to one (off): up1's switch port sw1 leaves the switch's
 * bridge sw0, so up1 leads to a LAN of its own (here nothing beyond sw1) and up2 stays on the
 * switch with prod. A guest bridging macvtap0@up1 and macvtap1@up2 then joins two separate LANs,
 * as a firewall or router VM does: it forwards broadcast, and none of it comes back.
 */
export async function separateLans(lab: MacvtapLab, on: boolean): Promise<void> {
  await ip(lab.ns.sw, 'link', 'set', 'dev', 'sw1', ...(on ? ['nomaster'] : ['master', 'sw0']));
}

/**
 * Start the guest on the lab's macvtaps: `bridge` forwards every frame between them (the loop),
 * `echo` answers each broadcast with one of its own on the same NIC,
 * `guest` reads and drops, `send` sends broadcasts from its first tap's MAC by that tap (`send`
 * options) and reads and drops. Resolves once its taps are open. Bounded to `seconds` (<= 600).
 */
export async function startTapGuest(lab: MacvtapLab, mode: GuestMode, seconds = 60, taps: readonly string[] = lab.taps, send: SendOptions = {}): Promise<TapGuest> {
  if (!(seconds > 0 && seconds <= GUEST_MAX_S)) throw new Error(`guest seconds must be in (0, ${GUEST_MAX_S}], got ${seconds}`);
  const count = Math.trunc(send.count ?? 0);
  const pps = send.pps ?? 0;
  if (!(count >= 0 && pps >= 0 && Number.isFinite(pps))) throw new Error(`guest send count and pps must be >= 0, got ${count}, ${pps}`);
  const dir = mkdtempSync(join(tmpdir(), `${lab.prefix}tap-`));
  const args = ['--dir', dir, '--mode', mode, '--duration', String(seconds), '--count', String(count), '--pps', String(pps), ...taps.flatMap((t) => ['--tap', assertIfName(t)])];
  const child = spawn('ip', ['netns', 'exec', assertNetns(lab.ns.host), 'python3', labAsset('tapvm.py'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const gone = new Promise<void>((r) => child.once('close', () => r()));
  void gone.then(() => rmSync(dir, { recursive: true, force: true }));
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 5) * 1000);
  void gone.then(() => clearTimeout(killer));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  let sentDone: (n: number) => void = () => undefined;
  const sent = new Promise<number>((r) => (sentDone = r));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('"ready"')) resolve();
      const m = /"sent": (\d+)/.exec(out);
      if (m) sentDone(Number(m[1]));
    });
    void gone.then(() => reject(new Error(`tapvm.py ended before it was ready: ${err.trim() || 'no output'}`)));
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      child.kill('SIGTERM');
      const hard = setTimeout(() => child.kill('SIGKILL'), 2000);
      await gone;
      clearTimeout(hard);
    }
  };
  try {
    await Promise.race([ready, new Promise((_, rej) => setTimeout(() => rej(new Error('tapvm.py not ready in 10 s')), 10_000))]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { stop, child, sent };
}
