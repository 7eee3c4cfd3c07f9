// The on-host fuse's pure parts: program identity (only known versions and hashes are armed),
// the remote loader line, the plan (cut list order, protected ports never listed), and the
// parser of the fuse's output lines.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkProgram, fusePath, fuseRemoteLine, KNOWN_FUSES, LOADER, loadProgram } from '../../agent/esxi/fuse/program.js';
import { buildFusePlan, type FusePlanInput } from '../../agent/esxi/fuse/plan.js';
import { parseFuseLine } from '../../agent/esxi/fuse/lines.js';
import { parseProbe, probeArgv } from '../../agent/esxi/fuse/probe.js';
import { FUSE_BATCH_MS, warmRates } from '../../agent/esxi/host-fuse.js';
import type { EsxPort } from '../../agent/esxi/ports.js';

const text = readFileSync(fusePath());

describe('fuse program', () => {
  it('the shipped fuse.py is a version this agent knows, with the hash it knows', () => {
    const p = loadProgram();
    expect(p.sha256).toBe(createHash('sha256').update(text).digest('hex'));
    expect(KNOWN_FUSES[p.version]).toBe(p.sha256);
  });

  it('refuses a changed text, an unknown version and a text without a version', () => {
    const changed = Buffer.concat([text, Buffer.from('\n# changed\n')]);
    expect(checkProgram(changed)).toMatchObject({ ok: false, error: expect.stringMatching(/has sha256 .* this agent knows/) });
    expect(checkProgram(Buffer.from(text.toString().replace(/^FUSE_VERSION = \d+$/m, 'FUSE_VERSION = 999')))).toMatchObject({ ok: false, error: 'fuse version 999 is not one this agent knows' });
    expect(checkProgram(Buffer.from('print(1)\n'))).toMatchObject({ ok: false, error: 'fuse program has no FUSE_VERSION line' });
  });

  it('remote line: host python, the fixed loader, byte count, hash, state dir; bad dirs refused', () => {
    const p = loadProgram();
    const line = fuseRemoteLine(p, '/tmp');
    expect(line.startsWith("python -c 'import os,sys,hashlib\n")).toBe(true);
    expect(line.endsWith(` ${p.text.length} ${p.sha256} /tmp`)).toBe(true);
    expect(LOADER).toContain('os.read(0,n-len(b))'); // never reads past the program: the plan follows
    expect(() => fuseRemoteLine(p, '/tmp/../etc')).toThrow(/bad fuse state dir/);
    expect(() => fuseRemoteLine(p, 'tmp; reboot')).toThrow(/bad fuse state dir/);
    expect(() => fuseRemoteLine(p, '/tmp', 'python; reboot')).toThrow(/bad python/);
  });
});

const vnic = (port: string, portId: string, portgroup: string, bridgingVm: boolean, vmid = 1, key = 4000) => ({ port, portId, portset: 'vSwitch0', portgroup, vmid, key, bridgingVm });
const input = (o: Partial<FusePlanInput> = {}): FusePlanInput => ({
  sampleMs: 10,
  leaseMs: 5000,
  pps: 2000,
  hold: 2,
  minHotPorts: 2,
  settleMs: 300,
  budget: 2,
  dryRun: false,
  batchMs: 100,
  burstMs: 5,
  warmPps: 5000,
  warmRxPps: 15000,
  vmnics: ['vmnic0', 'vmnic1'],
  vnics: [vnic('esx1/vnic-b', '12', 'VM Network', false, 2), vnic('esx1/vnic-a0', '10', 'VM Network', true), vnic('esx1/vnic-a1', '11', 'VM Network', true, 1, 4001), vnic('esx1/vnic-p', '13', 'Prod', true, 3)],
  vmkPortIds: ['9'],
  protectedPortgroups: ['Prod'],
  ...o,
});

describe('fuse plan', () => {
  it('cut list: bridging VM vNICs first, protected port groups and vmk ports never listed, but watched', () => {
    const r = buildFusePlan({ ...input(), vnics: [...input().vnics, vnic('esx1/vmk0', '9', 'Management Network', false)] });
    if (!r.ok) throw new Error(r.error);
    expect(r.plan.cutList.map((c) => c.port)).toEqual(['esx1/vnic-a0', 'esx1/vnic-a1', 'esx1/vnic-b']);
    expect(r.plan.cutList[0]!.argv).toEqual(['vim-cmd', 'vmsvc/device.connection', '1', '4000', '0']);
    expect(r.plan.watch).toEqual([
      { kind: 'pnic', id: 'vmnic0' },
      { kind: 'pnic', id: 'vmnic1' },
      ...['12', '10', '11', '13'].map((id) => ({ kind: 'port', portset: 'vSwitch0', id })),
    ]);
    expect(r.plan.protectedPorts).toEqual(['9']);
    expect(r.plan.protectedPortgroups).toEqual(['Prod']);
  });

  it('refuses bad names and out-of-range numbers, naming the field', () => {
    expect(buildFusePlan(input({ vmnics: ['eth0'] }))).toEqual({ ok: false, error: 'fuse plan: not a vmnic: "eth0"' });
    expect(buildFusePlan(input({ vnics: [vnic('x', '1; reboot', 'VM Network', true)] }))).toMatchObject({ ok: false, error: expect.stringMatching(/bad port id/) });
    expect(buildFusePlan(input({ sampleMs: 1 }))).toMatchObject({ ok: false, error: 'fuse plan: sampleMs 1: 5-100' });
    expect(buildFusePlan(input({ leaseMs: 10 }))).toMatchObject({ ok: false, error: expect.stringMatching(/leaseMs/) });
    expect(buildFusePlan(input({ budget: -1 }))).toMatchObject({ ok: false, error: expect.stringMatching(/budget/) });
    expect(buildFusePlan(input({ vmkPortIds: ['x'] }))).toMatchObject({ ok: false, error: expect.stringMatching(/vmk port id/) });
    expect(buildFusePlan(input({ batchMs: 251 }))).toMatchObject({ ok: false, error: 'fuse plan: batchMs 251: 0-250' });
    expect(buildFusePlan(input({ warmPps: 0 }))).toMatchObject({ ok: false, error: expect.stringMatching(/warmPps 0/) });
    expect(buildFusePlan(input({ burstMs: 3 }))).toMatchObject({ ok: false, error: 'fuse plan: burstMs 3: 0 or 5-sampleMs' });
    expect(buildFusePlan(input({ burstMs: 15 }))).toMatchObject({ ok: false, error: 'fuse plan: burstMs 15: 0 or 5-sampleMs' }); // sampleMs 10
    expect(buildFusePlan(input({ burstMs: 0 }))).toMatchObject({ ok: true, plan: { burstMs: 0 } });
  });

  it('warm rates: the lowest falling edges of the host and its watched ports; rx scaled as clearPps is', () => {
    const t = { floodPps: 20000, clearPps: 5000, rxPps: 60000, broadcastShare: 0.5, holdSamples: 2, floodHoldMs: 300, baselineFactor: 4 };
    const port = (clearPps: number, floodPps = 20000) => ({ policy: { thresholds: { ...t, clearPps, floodPps } } }) as unknown as EsxPort;
    expect(warmRates(t, [])).toEqual({ warmPps: 5000, warmRxPps: 15000 });
    expect(warmRates(t, [port(5000), port(800, 4000)])).toEqual({ warmPps: 800, warmRxPps: 12000 });
    expect(FUSE_BATCH_MS).toBeLessThanOrEqual(250);
  });
});

describe('fuse output lines', () => {
  it('sample lines fill the caller array in plan order; "-" is NaN; wrong counts and junk are bad', () => {
    const v = new Float64Array(8);
    expect(parseFuseLine('S 123456 1 2 3 4 - - - -', v)).toEqual({ kind: 'sample', tUs: 123456 });
    expect(Array.from(v)).toEqual([1, 2, 3, 4, NaN, NaN, NaN, NaN]);
    expect(parseFuseLine('S 1 2 3', v)).toEqual({ kind: 'bad', why: 'sample has 2 values, expected 8' });
    expect(parseFuseLine('S 1 2 3 4 5 6 7 8 x', v).kind).toBe('bad');
    expect(parseFuseLine('S 1 2 3 4 5 6 7  8', v).kind).toBe('bad');
    expect(parseFuseLine('', v).kind).toBe('bad');
  });

  it('hello, armed, not-armed, cut, replayed cut and exit', () => {
    const v = new Float64Array(0);
    expect(parseFuseLine('H 1 4242 4242-17', v)).toEqual({ kind: 'hello', version: 1, pid: 4242, instance: '4242-17' });
    expect(parseFuseLine('N {"why":"import vmware.vsi failed: x"}', v)).toEqual({ kind: 'not-armed', why: 'import vmware.vsi failed: x' });
    expect(parseFuseLine('A {"instance":"i","version":1,"watch":5,"cutList":3,"dryRun":false,"budget":2}', v)).toMatchObject({ kind: 'armed', watch: 5, cutList: 3, budget: 2 });
    const cut = '{"id":"i.1","instance":"i","version":1,"port":"esx1/vnic-a","portId":"10","hot":["10","11"],"tUs":5,"wallMs":6,"dryRun":false,"outcome":"cut","argv":["vim-cmd","x"],"rc":0,"ms":12.5}';
    expect(parseFuseLine(`C ${cut}`, v)).toMatchObject({ kind: 'cut', replayed: false, cut: { id: 'i.1', port: 'esx1/vnic-a', hot: ['10', '11'], outcome: 'cut', rc: 0, ms: 12.5 } });
    expect(parseFuseLine(`R ${cut}`, v)).toMatchObject({ kind: 'cut', replayed: true });
    expect(parseFuseLine('C {"id":"i.2","outcome":"exploded","portId":"1"}', v)).toEqual({ kind: 'bad', why: 'bad cut event' });
    expect(parseFuseLine('X {"why":"lease expired","cuts":1,"droppedSamples":7}', v)).toEqual({ kind: 'exit', why: 'lease expired', cuts: 1, droppedSamples: 7 });
    expect(parseFuseLine('Q {}', v)).toEqual({ kind: 'bad', why: 'unknown tag Q' });
  });
});

describe('fuse preflight probe', () => {
  const r = (o: { code?: number | null; stdout?: string; stderr?: string; error?: string }) => ({ code: 0, stdout: '', stderr: '', ...o });
  it('reads the answer, or says what is missing', () => {
    expect(probeArgv()[0]).toBe('python');
    expect(parseProbe(r({ stdout: '{"ok":true,"python":"3.8.17","pnics":["vmnic0"],"readUs":41.5}\n' }))).toEqual({ ok: true, python: '3.8.17', pnics: ['vmnic0'], readUs: 41.5 });
    expect(parseProbe(r({ stdout: '{"ok":false,"why":"import vmware.vsi failed: No module named vmware"}' }))).toEqual({ ok: false, why: 'import vmware.vsi failed: No module named vmware' });
    expect(parseProbe(r({ code: 127, stderr: 'sh: python: not found' }))).toEqual({ ok: false, why: 'no python on the host (exit 127)' });
    expect(parseProbe(r({ code: 126, stderr: 'Operation not permitted' }))).toEqual({ ok: false, why: 'python -c gave no answer (exit 126): Operation not permitted' });
    expect(parseProbe(r({ code: null, error: 'timed out after 5000 ms' }))).toEqual({ ok: false, why: 'timed out after 5000 ms' });
  });
});
