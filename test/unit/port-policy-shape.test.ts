// Every port policy (and its thresholds) has one hidden class, however it was made: by the first
// listing, by a rescan after the warm-up, by the warm-up itself, for an observed port, for a
// port stamped as joined (agent/policy/port-policy.ts). The warm-up compiles the detector and
// breaker for the classes it meets; a cold agent's first storm deoptimised observe, loopVerdict
// and the evidence builder where its ports had another (lab, session 16). V8 is asked directly
// (%HaveSameMap in a child node with --allow-natives-syntax, on the built dist/).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = (f: string): string => pathToFileURL(resolve('dist/agent', f)).href;

const POLICY = [
  'version: 1',
  'ports:',
  '  - match: "up*"',
  '    role: uplink',
  '  - match: "vm*"',
  '    role: vm',
  '    thresholds:',
  '      floodPps: 30000',
  '      broadcastShare: 0.75',
  '  - match: "mgmt*"',
  '    role: mgmt',
  '    protected: true',
  '',
].join('\n');

function classes(): { policies: boolean; thresholds: boolean; n: number } {
  const script = `
    const { parsePolicy } = await import(${JSON.stringify(dist('policy/load.js'))});
    const { resolvePorts } = await import(${JSON.stringify(dist('policy/match.js'))});
    const { observedPort } = await import(${JSON.stringify(dist('policy/observed.js'))});
    const { portPolicyOf, withOverlay } = await import(${JSON.stringify(dist('policy/port-policy.js'))});
    const { warmPorts } = await import(${JSON.stringify(dist('detect/warmup.js'))});
    const res = parsePolicy(${JSON.stringify(POLICY)}, 'shape.yaml');
    if (!res.policy) throw new Error(JSON.stringify(res.errors));
    const names = ['mgmt0', 'up1', 'up2', 'vm1'];
    const first = resolvePorts(res.policy, names);                 // the daemon's first listing
    const warm = [...warmPorts(first.get('mgmt0')).values()];      // the warm-up's ports
    let later = first;
    for (let i = 0; i < 20; i++) later = resolvePorts(res.policy, names); // rescans after it
    const joined = portPolicyOf(later.get('up2'), { joinedNs: 1.5e12 + 0.5, joinedBy: 'carrier', joinedAfterNs: 1.5e12 }); // a port that joined its bridge
    const tunnel = withOverlay(later.get('up1'), { kind: 'vxlan', underlay: 'ul0' }); // a VXLAN bridge port (session 18)
    const joinedTunnel = portPolicyOf(tunnel, { joinedNs: 1.5e12, joinedBy: 'bridge', joinedAfterNs: undefined });
    const all = [...warm, ...first.values(), ...later.values(), observedPort(res.policy, 'tap9'), joined, tunnel, joinedTunnel];
    const same = (a, b) => %HaveSameMap(a, b);
    console.log(JSON.stringify({ policies: all.every((p) => same(p, all[0])), thresholds: all.every((p) => same(p.thresholds, all[0].thresholds)), n: all.length }));
  `;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { policies: boolean; thresholds: boolean; n: number };
}

describe('port policy shape', () => {
  it('one hidden class for every port policy and every thresholds object, however made', () => {
    expect(existsSync(resolve('dist/agent/policy/port-policy.js')), 'build first (npx tsc -p tsconfig.json)').toBe(true);
    expect(classes()).toEqual({ policies: true, thresholds: true, n: 16 });
  });
});
