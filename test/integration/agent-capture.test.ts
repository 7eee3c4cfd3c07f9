// Evidence Wireshark opens: the real agent (dist/, in the kvm lab's host namespace) breaks a real
// loop storm, and after the shut saves the tripwire's last frames as a pcapng in
// STATE_DIR/captures; the journal's `capture` event and `why` name the file, tcpdump -r opens it
// and shows the injected frame's source MAC, and the store's bounds hold (50 files, 16 MiB: the
// state dir starts with 50 old captures, the second oldest one large, so the new capture pushes
// out the oldest by count and the large one by size, and nothing else).
// The storm is bounded: stormWithAgent opens the loop by hand after 1.5 s if the agent did not,
// a guard downs both loop members 2.5 s after injection; the lab is torn down in afterAll.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run, ns } from '../../scripts/lab/exec.js';
import { startAgent, type AgentHandle } from '../../scripts/lab/agent.js';
import { armInject, type ArmedInject } from '../../scripts/lab/traffic.js';
import { stormWithAgent } from '../../scripts/lab/scenario.js';
import type { Lab } from '../../scripts/lab/topology.js';
import { eventsOf, newStateDir, readJournalStrict, REPO, runCli, sleep, stormGuard, useKvmLab } from '../helpers/agent-lab.js';

const PREFIX = 'sbt-cp-';
const POLICY = `${REPO}policies/lab.yaml`;
const MAX_FILES = 50;
const MAX_BYTES = 16 * 1024 * 1024;

let lab: Lab;
useKvmLab(PREFIX, (l) => (lab = l));

const oldName = (i: number): string => `trip-2020-01-01T00-00-${String(i).padStart(2, '0')}.000Z-up9.pcapng`;

/**
 * 50 old captures, exactly the byte budget: the oldest 1 byte, the second oldest sparse and large,
 * the rest 1000 bytes. The new capture (at least one frame, so more than 1 byte) pushes the oldest
 * out by count and then the large one by size, however few frames it holds. (The slack was once
 * 2000 bytes: under load a capture of a few frames fitted it and the large file stayed.)
 */
function prefill(stateDir: string): void {
  const dir = join(stateDir, 'captures');
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < MAX_FILES; i++) writeFileSync(join(dir, oldName(i)), Buffer.alloc(i === 0 ? 1 : 1000));
  truncateSync(join(dir, oldName(1)), MAX_BYTES - (MAX_FILES - 2) * 1000 - 1);
}

describe('storm capture (kvm)', () => {
  it("saves the storm's frames after the trip: named in the journal and why, opened by tcpdump with the injected source MAC, bounded", async () => {
    const stateDir = newStateDir('cp');
    prefill(stateDir);
    const mac = (JSON.parse((await run(ns(lab.ns.vm1, ['ip', '-j', 'link', 'show', 'eth0']))).stdout) as Array<{ address: string }>)[0]!.address;
    let agent: AgentHandle | null = null;
    let cancel = (): void => undefined;
    try {
      agent = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
      await sleep(300);
      // Armed just before the frame: armed before a slow agent start, it once opened the loop
      // before anything was injected (no storm at all).
      cancel = stormGuard(lab);
      // Not a reaction test (agent-loops is): the loop is opened by hand only after 1.5 s, so a
      // machine that is busy elsewhere delays the trip but does not skip the capture under test.
      const r = await stormWithAgent(lab, agent, 1500);
      cancel();
      const trip = r.trips.find((l) => l.msg === 'trip' && l.port === 'up1');
      expect(trip, `no trip: storm ${JSON.stringify(r.stats)}; agent said ${JSON.stringify(agent.logs.slice(-12).map((l) => [l.msg, l.port, l.reason]))}`).toBeDefined();
      const cap = await agent.waitFor((l) => l.msg === 'capture' && l.port === 'up1', 5000);
      expect(cap.tripTs).toBe(trip!.ts);
      const path = String(cap.capture);
      expect(path).toBe(join(stateDir, 'captures', `trip-${String(trip!.ts).replace(/:/g, '-')}-up1.pcapng`));
      const frames = Number(cap.frames);
      // Bounded by the rings: at most 256 onset and 256 latest frames of at most 128 bytes.
      expect(frames).toBeGreaterThan(0);
      expect(frames).toBeLessThanOrEqual(512);
      expect(statSync(path).size).toBe(cap.bytes);
      expect(statSync(path).size).toBeLessThan(512 * (128 + 64) + 4096);

      // The journal has it, after the trip it names.
      const journal = readJournalStrict(stateDir);
      const jCap = eventsOf(journal, 'capture', 'up1');
      expect(jCap).toHaveLength(1);
      expect(jCap[0]).toMatchObject({ capture: path, tripTs: trip!.ts, frames });
      expect(journal.indexOf(jCap[0]!)).toBeGreaterThan(journal.indexOf(eventsOf(journal, 'trip', 'up1')[0]!));

      // why names the file (the live view; the journal replay is unit-tested).
      const why = await runCli(['why', 'up1', '--socket', agent.socket]);
      expect(why.code, why.stderr).toBe(0);
      expect(why.stdout).toContain(`capture: ${path} (${frames} frames, pcapng)`);

      // tcpdump (libpcap, the reader Wireshark shares the format with) opens it; one summary line
      // per frame (it adds hex lines for the lab's unknown ethertype); the injected frame's source.
      const td = spawnSync('tcpdump', ['-r', path, '-n', '-e'], { encoding: 'utf8', timeout: 10_000 });
      expect(td.status, td.stderr).toBe(0);
      const lines = td.stdout.trim().split('\n').filter((l) => /^\d\d:\d\d:\d\d\./.test(l));
      expect(lines).toHaveLength(frames);
      expect(lines.filter((l) => l.includes(`${mac} > ff:ff:ff:ff:ff:ff`)).length, td.stdout.slice(0, 500)).toBeGreaterThan(0);

      // Bounds: the oldest went for the count, the large second oldest for the bytes, nothing else.
      const files = readdirSync(join(stateDir, 'captures')).sort();
      expect(files).toEqual([...Array.from({ length: MAX_FILES - 2 }, (_, i) => oldName(i + 2)), path.split('/').pop()]);
      expect(files.reduce((a, f) => a + statSync(join(stateDir, 'captures', f)).size, 0)).toBeLessThanOrEqual(MAX_BYTES);
      console.log(`[agent-capture] ${frames} frames in ${cap.bytes} bytes, written ${(Date.parse(String(cap.ts)) - Date.parse(String(trip!.ts)))} ms after the trip event; first: ${lines[0]}`);
    } finally {
      cancel();
      await agent?.stop('SIGTERM');
    }
  }, 30_000);

  // The storm's first frame names who started it, but a loop storm soon gathers other frames
  // (every host's ARP and retries) and a ring of the last frames before the read no longer holds
  // it. Here one frame from a marked source (ONSET_MAC, from vm1) starts the loop and a burst of
  // LATER frames from prod (another source) follows at once, circling too and still arriving after
  // the shut: the capture must keep the first frame in its onset part. (With the earlier
  // last-256 ring this failed: see the commit.)
  it("keeps the storm's first frames (the onset), not only the last ones before the shut", async () => {
    const ONSET_MAC = '02:5b:0e:00:00:01';
    const LATER_MAC = '02:5b:0e:00:00:02';
    const stateDir = newStateDir('cp2');
    let agent: AgentHandle | null = null;
    let first: ArmedInject | null = null;
    let later: ArmedInject | null = null;
    let cancel = (): void => undefined;
    try {
      // Both loop members up again (the first case's trip shut up1).
      await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', 'up1', 'up']));
      await run(ns(lab.ns.host, ['ip', 'link', 'set', 'dev', 'up2', 'up']));
      agent = await startAgent(lab.ns.host, { policy: POLICY, stateDir });
      first = await armInject(lab, 'vm1', 'eth0', { count: 1, kind: 'broadcast', srcMac: ONSET_MAC });
      later = await armInject(lab, 'prod', 'eth0', { count: 20_000, duration: 2, kind: 'broadcast', srcMac: LATER_MAC });
      await sleep(300);
      cancel = stormGuard(lab);
      // A fresh agent: its first trip line is this storm's.
      const tripped = agent.waitFor((l) => l.msg === 'trip' && l.port === 'up1', 8000);
      // The marked frame first, for sure: fired together, the two armed senders raced, and with one
      // core busy prod's burst won (the marked frame then sat in the tail, or the storm was cut
      // before it was sent at all: three clean-clone runs). The burst follows once it is out.
      await first.fire();
      await later.fire();
      const trip = await tripped;
      const cap = await agent.waitFor((l) => l.msg === 'capture' && l.tripTs === trip.ts, 5000);
      cancel();
      const onset = Number(/the storm's first (\d+) /.exec(String(cap.reason))?.[1] ?? 0);
      const td = spawnSync('tcpdump', ['-r', String(cap.capture), '-n', '-e'], { encoding: 'utf8', timeout: 10_000 });
      expect(td.status, td.stderr).toBe(0);
      const lines = td.stdout.trim().split('\n').filter((l) => /^\d\d:\d\d:\d\d\./.test(l));
      const from = (mac: string) => lines.map((l, i) => (l.includes(`${mac} > ff:ff:ff:ff:ff:ff`) ? i : -1)).filter((i) => i >= 0);
      const seen = `${lines.length} frames, onset ${onset}; ${ONSET_MAC} at ${JSON.stringify(from(ONSET_MAC).slice(0, 8))}, ${LATER_MAC} ${from(LATER_MAC).length}; reason: ${String(cap.reason)}`;
      console.log(`[agent-capture] onset case: ${seen}`);
      // The file has an onset part (the old ring had none: onset 0) and it holds the EARLIEST
      // frames the agent saw: none of the tail is older. So the marked frame, first when its
      // sender woke first, is in it. Which sender's frame reached the host first is not fixed:
      // with one core busy the burst from prod once arrived before the marked frame (it was then
      // at 262 of 319, after 256 onset frames from prod), so that order is checked, not assumed.
      // Whether the later frames reached the file before it was read: logged above, not asserted.
      expect(onset, seen).toBeGreaterThan(0);
      expect(from(ONSET_MAC).length, seen).toBeGreaterThan(0);
      const t = lines.map((l) => {
        const [h, m, sec] = l.slice(0, 15).split(':').map(Number);
        return h! * 3600 + m! * 60 + sec!;
      });
      const onsetLast = Math.max(...t.slice(0, onset));
      if (t.length > onset) expect(Math.min(...t.slice(onset)), seen).toBeGreaterThanOrEqual(onsetLast);
      if (t[from(ONSET_MAC)[0]!]! <= onsetLast) expect(from(ONSET_MAC)[0], seen).toBeLessThan(onset);
    } finally {
      cancel();
      first?.disarm();
      later?.disarm();
      await agent?.stop('SIGTERM');
    }
  }, 30_000);
});
