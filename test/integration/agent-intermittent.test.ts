// An intermittent loop (session 16): the switch end of up2 flaps, as a bad cable or a flapping
// switch port does (carrier up 150 ms / down 150 ms, for FLAP_MS), while vm1 sends ordinary
// broadcast chatter (50 frames/s), so each closing of the loop starts a storm at once. Uplinks
// have automatic recovery (cooldownMs 500, probeMs 500, backoff 2, maxTries 3). The agent must cut
// up2 (the port whose carrier-up closed the loop) as a loop, never up1; every probe that meets
// the loop closed again must be cut again at once; and it must give up after maxTries (a port is
// not re-enabled into the loop over and over). Bounded: the flapper stops after FLAP_MS, a guard
// downs both uplinks after 9 s, and the lab is torn down in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentHandle } from '../../scripts/lab/agent.js';
import { setSwitchEnd } from '../../scripts/lab/shapes.js';
import { openLoop } from '../../scripts/lab/scenario.js';
import type { Lab } from '../../scripts/lab/topology.js';
import { inject } from '../../scripts/lab/traffic.js';
import { startObserver } from '../../scripts/lab/observer.js';
import { eventsOf, newStateDir, readJournalStrict, kvmLabWithAgent, sleep, stopAgentAndLab, stormGuard } from '../helpers/agent-lab.js';

const PREFIX = 'sbsh16i-';
const FLAP_MS = 6000;
const POLICY = `version: 1
breaker:
  maxShuts: 1000
  windowMs: 1000
recovery: { mode: auto, cooldownMs: 500, probeMs: 500, backoff: 2, maxTries: 3 }
ports:
  - { match: "mgmt*", role: mgmt }
  - { match: "up*", role: uplink, recovery: { mode: auto } }
  - { match: "vm*", role: vm }
`;

let lab: Lab;
let agent: AgentHandle | null = null;

beforeAll(async () => {
  const dir = newStateDir('intermittent');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  ({ lab, agent } = await kvmLabWithAgent(PREFIX, { policy, stateDir: dir, prepare: (l) => setSwitchEnd(l, 'up2', false) }));
});

afterAll(() => stopAgentAndLab(agent, PREFIX));

describe('an intermittent loop: the switch end of up2 flapping 150/150 ms', () => {
  it('up2 is cut as a loop at the first closing and at every probe that meets the loop, then left down; up1 never', async () => {
    const a = agent!;
    const seen = readJournalStrict(a.stateDir).length;
    const obs = await startObserver(lab.ns.prod, ['eth0'], FLAP_MS + 4000);
    const cancel = stormGuard(lab, 9000);
    const closings: number[] = [];
    let chatter: Promise<unknown> = Promise.resolve();
    try {
      chatter = inject(lab, 'vm1', 'eth0', { kind: 'broadcast', pps: 50, duration: FLAP_MS / 1000 });
      const end = Date.now() + FLAP_MS;
      while (Date.now() < end) {
        await setSwitchEnd(lab, 'up2', true);
        closings.push(Date.now());
        await sleep(150);
        await setSwitchEnd(lab, 'up2', false);
        await sleep(150);
      }
      await chatter;
    } finally {
      cancel();
      await setSwitchEnd(lab, 'up2', false).catch(() => undefined);
      await chatter.catch(() => undefined);
    }
    const prod = (await obs.stop()).eth0!;
    await sleep(300);
    const events = readJournalStrict(a.stateDir).slice(seen);
    const trips = eventsOf(events, 'trip');
    const summary = events.filter((e) => e.event !== 'start').map((e) => `${String(e.event)}:${String(e.port)}${e.reason ? `(${String(e.reason).slice(0, 60)})` : ''}`);
    const frames = prod.c.length > 0 ? prod.c[prod.c.length - 1]! - prod.c[0]! : 0;
    console.log(`[intermittent] closings=${closings.length} prodFrames=${frames} events=${summary.join(' ; ')}`);
    await openLoop(lab);
    // The first cut as a loop (up2's carrier-up closed it), then one per probe that met the loop
    // closed again (the flapping outlives the three probes: 0.5 + 1 + 2 s of cooldown), then a human.
    expect(trips.map((t) => t.port)).toEqual(['up2', 'up2', 'up2', 'up2']);
    expect(String(trips[0]!.reason)).toMatch(/loop on br0: shut up2/);
    for (const [i, t] of trips.slice(1).entries()) expect(String(t.reason)).toMatch(new RegExp(`storm still present after recovery probe ${i + 1}`));
    expect(eventsOf(events, 'recovery-exhausted').map((e) => e.port)).toEqual(['up2']);
    expect(eventsOf(events, 'trip', 'up1')).toEqual([]);
    // Every closing that met a frame was cut within a few ms: a closing left to run its 150 ms
    // at a loop's ~150k frames/s would alone send prod ~20k frames.
    expect(frames).toBeLessThan(15_000);
  });
});
