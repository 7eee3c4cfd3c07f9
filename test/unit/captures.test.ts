// The daemon's storm captures (agent/daemon/captures.ts) with frames standing in for the
// tripwire's ring and a real state directory: which trips are captured, what the capture event
// says, that the recorder hands it to `why`, and that a failure is said once and costs nothing else.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JournalEvent } from '../../agent/types.js';
import type { TripwireFrame } from '../../agent/sources/packet.js';
import { CAPTURE_POLL_MS, CAPTURE_WAIT_MAX_MS, createCaptures, wantsCapture } from '../../agent/daemon/captures.js';
import { createRecorder } from '../../agent/daemon/recorder.js';
import { renderWhy } from '../../agent/cli/render.js';
import { silentLogger } from '../../agent/log.js';
import type { Journal } from '../../agent/journal/journal.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'sbt-cap-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ok = { kind: 'link-down' as const, port: 'up1', ok: true, via: 'sysfs-flags', durationMs: 0.2, attempts: 1, verified: true };
const trip = (over: Partial<JournalEvent> = {}): JournalEvent => ({ ts: '2026-12-05T01:00:00.000Z', event: 'trip', port: 'up1', reason: 'loop on br0', policyHash: 'abc', action: ok, ...over });
const frame = (ifindex: number): TripwireFrame => ({ sec: 1764896400, nsec: 1000, ifindex, len: 60, pktType: 1, data: Buffer.from('ffffffffffff02aabbccdd010806', 'hex') });

function harness(frames: TripwireFrame[] | null, stateDir = tmp(), busy?: () => boolean, onRead?: () => void) {
  const recorded: JournalEvent[] = [];
  const logs: Array<[string, string]> = [];
  const log = silentLogger();
  log.error = ((_o: object, m: string) => void logs.push(['error', m])) as typeof log.error;
  log.info = ((_o: object, m: string) => void logs.push(['info', m])) as typeof log.info;
  const read = (): TripwireFrame[] | null => (onRead?.(), frames);
  const c = createCaptures({ stateDir, ...(busy ? { busy } : {}), frames: read, isLocal: (p) => !p.includes('/'), record: (e) => recorded.push(e), log, stopped: () => false, names: () => new Map([[4, 'up1'], [5, 'up2']]) });
  return { c, recorded, logs, stateDir };
}

describe('storm captures in the daemon', () => {
  it('captures automatic trips of local ports only (a recovery re-trip too): not an operator trip, a failed link-down, an ESXi port, a would-trip', () => {
    const local = (p: string): boolean => !p.includes('/');
    expect(wantsCapture(trip(), local)).toBe(true);
    expect(wantsCapture(trip({ by: 'auto-recovery' }), local)).toBe(true);
    expect(wantsCapture(trip({ by: { uid: 0, source: 'kernel' } }), local)).toBe(false);
    expect(wantsCapture(trip({ action: { ...ok, ok: false } }), local)).toBe(false);
    expect(wantsCapture(trip({ port: 'esx1/vmnic1' }), local)).toBe(false);
    expect(wantsCapture(trip({ event: 'would-trip' }), local)).toBe(false);
  });

  it('writes the pcapng after the trip event, not during it, and records a capture event naming the file', async () => {
    const h = harness([frame(4), frame(5), frame(4)]);
    h.c.onRecord(trip());
    expect(readdirSync(h.stateDir)).toEqual([]); // nothing done inside the recording tick
    await h.c.idle();
    const files = readdirSync(join(h.stateDir, 'captures'));
    expect(files).toEqual(['trip-2026-12-05T01-00-00.000Z-up1.pcapng']);
    expect(h.recorded).toHaveLength(1);
    const e = h.recorded[0]!;
    expect(e).toMatchObject({ event: 'capture', port: 'up1', tripTs: trip().ts, capture: join(h.stateDir, 'captures', files[0]!), frames: 3 });
    expect(e.reason).toMatch(/3 broadcast\/multicast frames .* on 2 interface/);
    expect(readFileSync(e.capture as string).readUInt32LE(0)).toBe(0x0a0d0d0a);
  });

  it('waits while the breaker is busy with the storm (an escalation may be judged on the next samples), and at most CAPTURE_WAIT_MAX_MS', async () => {
    let busy = true;
    let readAt = -1;
    const t0 = performance.now();
    const h = harness([frame(4)], tmp(), () => busy, () => void (readAt = performance.now() - t0));
    h.c.onRecord(trip());
    await new Promise((r) => setTimeout(r, 3 * CAPTURE_POLL_MS));
    expect(readAt).toBe(-1); // the ring is not read while the breaker is busy
    busy = false;
    await h.c.idle();
    expect(readAt).toBeGreaterThanOrEqual(3 * CAPTURE_POLL_MS - 1);
    expect(h.recorded).toHaveLength(1);

    // Busy for ever (a storm the breaker cannot end): captured anyway, after the longest wait.
    let readAt2 = -1;
    const t1 = performance.now();
    const h2 = harness([frame(4)], tmp(), () => true, () => void (readAt2 = performance.now() - t1));
    h2.c.onRecord(trip());
    await h2.c.idle();
    expect(readAt2).toBeGreaterThanOrEqual(CAPTURE_WAIT_MAX_MS - 1);
    expect(readAt2).toBeLessThan(CAPTURE_WAIT_MAX_MS + 2000); // a timer late under load, not never
    expect(h2.recorded).toHaveLength(1);
  });

  it('holds the tripwire\'s head at the trip itself, before the (later) copy; not for a trip it does not capture', async () => {
    const order: string[] = [];
    const log = silentLogger();
    const c = createCaptures({
      stateDir: tmp(),
      frames: () => (order.push('frames'), [frame(4)]),
      hold: () => void order.push('hold'),
      isLocal: (p) => !p.includes('/'),
      record: () => undefined,
      log,
      stopped: () => false,
      names: () => new Map([[4, 'up1']]),
    });
    c.onRecord(trip({ by: { uid: 0, source: 'kernel' } })); // an operator's trip: no capture, no hold
    c.onRecord(trip({ event: 'would-trip' }));
    expect(order).toEqual([]);
    c.onRecord(trip());
    expect(order).toEqual(['hold']); // synchronously, in the recording tick
    await c.idle();
    expect(order).toEqual(['hold', 'frames']);
  });

  it('a failure to write is said once (not per trip) and again when captures work; nothing is recorded for it', async () => {
    const d = tmp();
    writeFileSync(join(d, 'captures'), 'not a directory'); // root ignores modes: a file where the directory goes
    const h = harness([frame(4)], d);
    for (let i = 0; i < 3; i++) h.c.onRecord(trip({ ts: `2026-12-05T01:00:0${i}.000Z` }));
    await h.c.idle();
    expect(h.recorded).toEqual([]);
    expect(h.logs.filter(([l]) => l === 'error')).toHaveLength(1);
    rmSync(join(d, 'captures'));
    h.c.onRecord(trip({ ts: '2026-12-05T01:00:09.000Z' }));
    await h.c.idle();
    expect(h.recorded).toHaveLength(1);
    expect(h.logs.map(([, m]) => m).at(-1)).toMatch(/written again/);
  });

  it('without a tripwire: said once, no file', async () => {
    const h = harness(null);
    h.c.onRecord(trip());
    h.c.onRecord(trip({ ts: '2026-12-05T01:00:01.000Z' }));
    await h.c.idle();
    expect(h.logs).toEqual([['error', expect.stringMatching(/storm capture FAILED/)]]);
    expect(readdirSync(h.stateDir)).toEqual([]);
  });

  it('the recorder gives `why` the trip with its capture, live and from the journal read at start', () => {
    const journal = { append: () => undefined, intent: () => undefined, health: () => ({}), close: () => undefined, path: '/x/journal.jsonl' } as unknown as Journal;
    const cap: JournalEvent = { ts: '2026-12-05T01:00:00.050Z', event: 'capture', port: 'up1', reason: 'saved', tripTs: trip().ts, capture: '/state/captures/trip-x-up1.pcapng', frames: 256 };
    const live = createRecorder({ journal, replayed: [], log: silentLogger(), sd: { status: () => undefined }, hooks: null });
    live.record(trip());
    live.record(cap);
    expect(renderWhy(live.lastTrip.get('up1') as unknown as Record<string, unknown>)).toContain('capture: /state/captures/trip-x-up1.pcapng (256 frames, pcapng)');
    const replayed = createRecorder({ journal, replayed: [trip(), cap], log: silentLogger(), sd: { status: () => undefined }, hooks: null });
    expect(replayed.lastTrip.get('up1')).toMatchObject({ event: 'trip', capture: cap.capture });
    // A capture of an older trip never names itself on a newer one.
    live.record(trip({ ts: '2026-12-05T02:00:00.000Z' }));
    live.record(cap);
    expect(live.lastTrip.get('up1')!.capture).toBeUndefined();
  });
});
