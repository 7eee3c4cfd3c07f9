// Pure parts of the loop probe: the frame, the nft script, the meaning of arrivals, the
// lint/probe cross-check, and the shared finding format and its renderers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { analyzeProbe, tallyArrivals, type ProbePortInfo } from '../../agent/preflight/analyze.js';
import { fails, mergeReports, renderJson, renderText, sortFindings, type Finding } from '../../agent/preflight/findings.js';
import { buildProbeFrame, newNonce, parseProbeFrame, PROBE_ETHERTYPE, PROBE_FRAME_BYTES, randomProbeMac } from '../../agent/preflight/frame.js';
import { deleteTableScript, DEVICES_PER_CHAIN, parseTableCounters, probeTableScript, PROBE_TABLE } from '../../agent/preflight/nft.js';
import { crossCheck } from '../../agent/preflight/preflight.js';

describe('probe frame', () => {
  it('round-trips a nonce; broadcast, private ethertype, 60 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 6, maxLength: 6 }), (n, m) => {
        const f = buildProbeFrame(Buffer.from(m), Buffer.from(n));
        expect(f.length).toBe(PROBE_FRAME_BYTES);
        expect(f.subarray(0, 6).equals(Buffer.alloc(6, 0xff))).toBe(true);
        expect(f.readUInt16BE(12)).toBe(PROBE_ETHERTYPE);
        expect(parseProbeFrame(f)).toBe(Buffer.from(n).toString('hex'));
      }),
    );
  });

  it('rejects other frames: wrong ethertype, wrong magic, truncated', () => {
    const f = buildProbeFrame(randomProbeMac(), newNonce());
    const wrongType = Buffer.from(f);
    wrongType.writeUInt16BE(0x88b5, 12);
    const wrongMagic = Buffer.from(f);
    wrongMagic[14] = 0;
    expect(parseProbeFrame(wrongType)).toBeNull();
    expect(parseProbeFrame(wrongMagic)).toBeNull();
    expect(parseProbeFrame(f.subarray(0, 30))).toBeNull();
    expect(() => buildProbeFrame(Buffer.alloc(5), newNonce())).toThrow(RangeError);
  });

  it('source MAC is locally administered unicast; nonces differ', () => {
    for (let i = 0; i < 50; i++) {
      const m = randomProbeMac();
      expect((m[0]! & 0x03)).toBe(0x02);
    }
    expect(newNonce().equals(newNonce())).toBe(false);
  });
});

describe('nft table script', () => {
  it('drops the probe ethertype at ingress of every listed device; `create` refuses an existing table', () => {
    const s = probeTableScript({ dropProbeOn: ['up1', 'up2', 'br0'] });
    expect(s.split('\n').slice(0, 2)).toEqual([`create table netdev ${PROBE_TABLE}`, `table netdev ${PROBE_TABLE} {`]);
    expect(s).toContain('type filter hook ingress devices = { "up1", "up2", "br0" } priority -500; policy accept;');
    expect(s).toContain('ether type 0x88b6 counter drop');
    expect(s).not.toContain('egress');
  });

  it('isolates a guarded port: all ingress dropped, egress only for probes; not in the probe chain twice', () => {
    const s = probeTableScript({ dropProbeOn: ['up1', 'up2'], isolate: ['up2'] });
    expect(s).toContain('hook ingress devices = { "up1" }');
    expect(s).toMatch(/chain guard_in \{\n\s+type filter hook ingress devices = \{ "up2" \} priority -500; policy drop;/);
    expect(s).toMatch(/chain guard_out \{\n\s+type filter hook egress devices = \{ "up2" \} priority -500; policy drop;\n\s+ether type 0x88b6 counter accept/);
  });

  it('splits many devices over several chains (the kernel takes at most 256 per chain)', () => {
    const names = Array.from({ length: 2 * DEVICES_PER_CHAIN + 3 }, (_, i) => `p${i}`);
    const s = probeTableScript({ dropProbeOn: names });
    const chains = [...s.matchAll(/devices = \{ ([^}]*) \}/g)].map((m) => m[1]!.split(', ').length);
    expect(chains).toEqual([DEVICES_PER_CHAIN, DEVICES_PER_CHAIN, 3]);
    expect(s).toContain('chain probe_in {');
    expect(s).toContain('chain probe_in_2 {');
  });

  it('refuses names that could break out of the script', () => {
    expect(() => probeTableScript({ dropProbeOn: ['a"; flush ruleset; "'] })).toThrow(/invalid interface name/);
    expect(deleteTableScript()).toBe(`table netdev ${PROBE_TABLE}\ndelete table netdev ${PROBE_TABLE}\n`);
  });

  it('reads rule counters by chain from nft -j', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'netdev', name: PROBE_TABLE } },
        { rule: { chain: 'guard_in', expr: [{ counter: { packets: 7, bytes: 420 } }, { drop: null }] } },
        { rule: { chain: 'guard_out', expr: [{ match: {} }, { counter: { packets: 1, bytes: 60 } }, { accept: null }] } },
        { rule: { chain: 'guard_out', expr: [{ counter: { packets: 3, bytes: 180 } }, { drop: null }] } },
      ],
    });
    expect(parseTableCounters(json)).toEqual({ guard_in: 7, guard_out: 4 });
  });
});

const port = (name: string, o: Partial<ProbePortInfo> = {}): ProbePortInfo => ({
  name, ifindex: 1, bridge: 'br0', portState: 'forwarding', watched: true, role: 'uplink', ...o,
});

describe('analyzeProbe', () => {
  const sent = [{ port: 'up1', nonce: 'n1' }, { port: 'up2', nonce: 'n2' }, { port: 'vm1', nonce: 'n3' }];

  it('X -> Y and Y -> X in one bridge: one error naming both ports', () => {
    const a = analyzeProbe([port('up1'), port('up2'), port('vm1', { role: 'vm' })], sent, [
      { nonce: 'n1', port: 'up2', count: 1 },
      { nonce: 'n2', port: 'up1', count: 1 },
    ]);
    expect(a.findings).toHaveLength(1);
    const f = a.findings[0]!;
    expect(f).toMatchObject({ rule: 'loop-probe', severity: 'error', ports: ['up1', 'up2'] });
    expect(f.what).toContain('sending on up1 arrives on up2');
    expect(f.what).toContain('ports up1 and up2 close a loop through bridge br0');
    expect(f.fix).toMatch(/bond up1 and up2/);
    expect(a.paths).toEqual([{ from: 'up1', to: 'up2', count: 1 }, { from: 'up2', to: 'up1', count: 1 }]);
  });

  it('a port STP holds (blocking/disabled) is not a loop: a note, no finding', () => {
    for (const st of ['blocking', 'disabled'] as const) {
      const a = analyzeProbe([port('up1'), port('up2', { portState: st })], sent, [{ nonce: 'n1', port: 'up2', count: 1 }]);
      expect(a.findings).toEqual([]);
      expect(a.notes.join()).toMatch(new RegExp(`STP holds up2 \\(${st}\\)`));
    }
  });

  it('STP still converging: a warning to re-run', () => {
    const a = analyzeProbe([port('up1'), port('up2', { portState: 'listening' })], sent, [{ nonce: 'n1', port: 'up2', count: 1 }]);
    expect(a.findings.map((f) => `${f.severity} ${f.rule}`)).toEqual(['warning loop-probe-stp-converging']);
  });

  it('reachable but not bridged together here: a warning, not a loop', () => {
    const a = analyzeProbe([port('up1'), port('up2', { bridge: 'br1' })], sent, [{ nonce: 'n1', port: 'up2', count: 1 }]);
    expect(a.findings.map((f) => `${f.severity} ${f.rule} ${f.ports}`)).toEqual(['warning probe-path-outside up1,up2']);
  });

  it('a probe back on its own port: reflected once (warning), circling (error)', () => {
    const once = analyzeProbe([port('up1')], sent, [{ nonce: 'n1', port: 'up1', count: 1 }]);
    const many = analyzeProbe([port('up1')], sent, [{ nonce: 'n1', port: 'up1', count: 5 }]);
    expect(once.findings.map((f) => `${f.severity} ${f.rule}`)).toEqual(['warning probe-reflected']);
    expect(many.findings.map((f) => `${f.severity} ${f.rule}`)).toEqual(['error loop-beyond-port']);
  });

  it('arrival on an unwatched bridge port is still a loop, and says so; foreign nonces are counted, not judged', () => {
    const a = analyzeProbe([port('up1'), port('eth9', { watched: false, role: null })], sent, [
      { nonce: 'n1', port: 'eth9', count: 2 },
      { nonce: 'other-run', port: 'up1', count: 3 },
    ]);
    expect(a.findings.map((f) => `${f.severity} ${f.rule} ${f.ports}`)).toEqual(['error loop-probe eth9,up1']);
    expect(a.findings[0]?.what).toContain('eth9 (not in the policy; observed, not named: the agent would shut a named port of br0 instead)');
    expect(a.findings[0]?.what).toContain('(2 copies)');
    expect(a.foreign).toBe(3);
  });

  it('nothing arrived: nothing found', () => {
    expect(analyzeProbe([port('up1'), port('up2')], sent, [])).toEqual({ findings: [], notes: [], paths: [], foreign: 0 });
  });

  it('tallyArrivals counts copies per (nonce, port)', () => {
    expect(tallyArrivals([{ nonce: 'a', port: 'x' }, { nonce: 'a', port: 'x' }, { nonce: 'a', port: 'y' }])).toEqual([
      { nonce: 'a', port: 'x', count: 2 },
      { nonce: 'a', port: 'y', count: 1 },
    ]);
  });
});

describe('crossCheck (static uplink rule vs probe)', () => {
  const lint: Finding[] = [
    { rule: 'bridge-uplinks-no-stp', severity: 'error', ports: ['up1', 'up2'], what: 'w', fix: 'f' },
    { rule: 'vm-port-no-bpdu-guard', severity: 'warning', ports: ['vm1'], what: 'w', fix: 'f' },
  ];

  it('both uplinks probed, no path between them: downgraded to a warning that says why', () => {
    const out = crossCheck(lint, { probed: ['up1', 'up2', 'vm1'], paths: [] });
    expect(out[0]).toMatchObject({ severity: 'warning', evidence: { confirmedByProbe: false } });
    expect(out[0]?.what).toMatch(/probe found no path between them now/);
    expect(out[1]).toEqual(lint[1]);
  });

  it('a path between them: stays an error, confirmed', () => {
    const out = crossCheck(lint, { probed: ['up1', 'up2'], paths: [{ from: 'up2', to: 'up1' }] });
    expect(out[0]).toMatchObject({ severity: 'error', evidence: { confirmedByProbe: true } });
  });

  it('an uplink not probed (down), or no probe at all: unchanged', () => {
    expect(crossCheck(lint, { probed: ['up1'], paths: [] })[0]).toEqual(lint[0]);
    expect(crossCheck(lint, null)).toEqual(lint);
  });
});

describe('findings renderers', () => {
  const fs: Finding[] = [
    { rule: 'vm-port-no-bpdu-guard', severity: 'warning', ports: ['vm1'], what: 'guard off', fix: 'guard on' },
    { rule: 'loop-probe', severity: 'error', ports: ['up1', 'up2'], what: 'sending on up1 arrives on up2', fix: 'bond', evidence: { n: 1 } },
  ];

  it('errors first; exit decision: errors fail, warnings only when strict', () => {
    expect(sortFindings(fs).map((f) => f.rule)).toEqual(['loop-probe', 'vm-port-no-bpdu-guard']);
    expect(fails(fs)).toBe(true);
    expect(fails([fs[0]!])).toBe(false);
    expect(fails([fs[0]!], true)).toBe(true);
    expect(fails([], true)).toBe(false);
  });

  it('text: one block per finding with its ports and fix, notes, and a summary line', () => {
    const t = renderText({ findings: fs, notes: ['up3 is down: not probed'] });
    expect(t).toBe(
      [
        'error   loop-probe  [up1, up2]',
        '        sending on up1 arrives on up2',
        '        fix: bond',
        'warning vm-port-no-bpdu-guard  [vm1]',
        '        guard off',
        '        fix: guard on',
        'note    up3 is down: not probed',
        '2 findings (1 error, 1 warning)',
        '',
      ].join('\n'),
    );
    expect(renderText({ findings: [], notes: [] })).toBe('no findings\n');
  });

  it('json: ok as the exit code says, counts, sorted findings with evidence, stats merged', () => {
    const j = JSON.parse(renderJson(mergeReports({ findings: [fs[0]!], notes: ['a'], stats: { x: 1 } }, { findings: [fs[1]!], notes: [], stats: { y: 2 } })));
    expect(j).toEqual({ ok: false, counts: { error: 1, warning: 1 }, findings: [fs[1], fs[0]], notes: ['a'], stats: { x: 1, y: 2 } });
    expect(JSON.parse(renderJson({ findings: [fs[0]!], notes: [] })).ok).toBe(true);
    expect(JSON.parse(renderJson({ findings: [fs[0]!], notes: [] }, true)).ok).toBe(false);
  });
});
