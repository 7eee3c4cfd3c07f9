import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { warmUpTrips, WARM_TRIPS } from '../../agent/daemon/warmup-trip.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';

// The trip path's warm-up: the real tick, executor and link action on synthetic loops, acting on
// a temp sysfs tree only. Every loop ends in a stop and an admin-down (the whole path ran), the
// journal lines went nowhere, and the temp tree is gone after.

describe('warmUpTrips', () => {
  it('runs every synthetic loop through the stop and the admin-down, on its own temp tree, and removes it', async () => {
    const policy = testPolicy();
    const first = testPorts({ up1: 'uplink' }, policy).get('up1')!;
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith('stormbreaker-warm-'));
    const r = await warmUpTrips(policy, first);
    expect(r.stops).toBe(WARM_TRIPS);
    expect(r.downs).toBe(WARM_TRIPS);
    // A trip-intent and a trip per loop at least.
    expect(r.journaled).toBeGreaterThanOrEqual(2 * WARM_TRIPS);
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith('stormbreaker-warm-'))).toEqual(before);
  });
});
