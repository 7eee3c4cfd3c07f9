// Which of the detector's functions the start-up warm-up runs, counted by V8's own coverage
// (the inspector's precise coverage: call counts per function, reset when it starts). A rule the
// warm-up never takes runs interpreted, for the first time, in the first real storm of its kind
// (issue 11: a cold agent reacts like a warm one). Session 19's rules (the macvtap ring judged by
// frames that come back; the ESXi exchange) were not taken by the warm-up before this test.
import { Session } from 'node:inspector/promises';
import { describe, expect, it } from 'vitest';
import { warmUpDetector } from '../../agent/detect/warmup.js';
import { testPolicy, testPorts } from '../../agent/testing/policy.js';

interface FunctionCoverage {
  functionName: string;
  ranges: Array<{ count: number }>;
}

/** Calls per function of agent/detect/signature.ts while `run` runs. */
async function callsIn(run: () => void): Promise<Map<string, number>> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
    run();
    const { result } = (await session.post('Profiler.takePreciseCoverage')) as { result: Array<{ url: string; functions: FunctionCoverage[] }> };
    await session.post('Profiler.stopPreciseCoverage');
    const script = result.find((s) => s.url.includes('agent/detect/signature.ts'));
    expect(script, 'signature.ts in the coverage').toBeDefined();
    const calls = new Map<string, number>();
    for (const f of script!.functions) calls.set(f.functionName, (calls.get(f.functionName) ?? 0) + (f.ranges[0]?.count ?? 0));
    return calls;
  } finally {
    session.disconnect();
  }
}

describe('detector warm-up, by coverage', () => {
  it("takes the macvtap ring rules (returned frames, rates), a guest's flood and the ESXi exchange rule, as it takes the bridge's", async () => {
    const policy = testPolicy();
    const pp = testPorts({ x: 'vm' }, policy).get('x')!;
    let n: ReturnType<typeof warmUpDetector> | undefined;
    const calls = await callsIn(() => (n = warmUpDetector(policy, pp)));
    const ran = (fn: string): number => calls.get(fn) ?? 0;
    // The bridge's rules (warmed before session 19): the coverage sees what the warm-up runs.
    for (const fn of ['step', 'loopVerdicts', 'judgeLoop', 'loopVerdict', 'floodVerdict']) expect(ran(fn), fn).toBeGreaterThan(0);
    // A ring of macvtaps: judged by frames coming back under floodPps (returned, returnsTo), by
    // rates over it with returns counted (echoed, returnsMissing); a guest flooding by its device.
    for (const fn of ['ringVerdicts', 'returned', 'returnsTo', 'echoed', 'returnsMissing', 'ringVerdict', 'guestFloodDue', 'guestFloodVerdict']) expect(ran(fn), fn).toBeGreaterThan(0);
    // An ESXi vSwitch: VM ports among the members (tallyKind's VM count), a VM's own stream
    // returned by the switch (esxiVmSends).
    expect(ran('esxiVmSends'), 'esxiVmSends').toBeGreaterThan(0);
    expect(n!.domains.ring).toBeGreaterThan(0);
    expect(n!.domains.guestFlood).toBeGreaterThan(0);
    // The exchange (one VM port with the vmnics) held its verdict back, then past ESXI_EXCHANGE_MS
    // the guest's loop was judged; the bridging guest's two vNICs are a loop at once.
    expect(n!.domains.esxiQuietTicks).toBeGreaterThan(0);
    expect(n!.domains.esxiAfterExchange).toBeGreaterThan(0);
    expect(n!.domains.esxiLoop).toBeGreaterThan(n!.domains.esxiAfterExchange);
  });
});
