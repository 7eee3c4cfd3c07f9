import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ACTION_RESERVE, connectionCap, FDS_PER_CONNECTION, FDS_PER_PORT, keptFilesCap, MAX_CONNECTIONS, MIN_CONNECTIONS, parseNofile, readNofile } from '../../agent/host/fd-limit.js';

// The control socket's connection cap from the real RLIMIT_NOFILE (host/fd-limit.ts).

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('descriptor limit', () => {
  it('reads the soft limit of Max open files; unlimited or garbage is null', () => {
    expect(parseNofile(LIMITS)).toBe(1024);
    expect(parseNofile(LIMITS.replace('1024  ', 'unlimited'))).toBeNull();
    expect(parseNofile('Max open files  x  y  files')).toBeNull();
    expect(parseNofile('')).toBeNull();
    // This process: the same number /proc says, as Node raised it.
    expect(readNofile()).toBe(parseNofile(readFileSync('/proc/self/limits', 'utf8')));
  });

  it('caps connections at what is left after the ports and the action reserve, within 4..64', () => {
    expect(connectionCap(null, 10)).toBe(MAX_CONNECTIONS);
    expect(connectionCap(1_048_576, 512)).toBe(MAX_CONNECTIONS);
    // 512 ports under the common 4096: 4096 - 128 - 2560 = 1408 left, 64 connections.
    expect(connectionCap(4096, 512)).toBe(64);
    // 1024 with 150 ports: 1024 - 128 - 750 = 146 left: 73 -> 64; with 170 ports: 46 left: 23.
    expect(connectionCap(1024, 150)).toBe(64);
    expect(connectionCap(1024, 170)).toBe(23);
    // A limit below what the ports need: the operator still gets in, the log says why.
    expect(connectionCap(200, 40)).toBe(MIN_CONNECTIONS);
    expect(ACTION_RESERVE + FDS_PER_PORT * 170 + 2 * 23).toBeLessThanOrEqual(1024);
  });

  it('kept port files get only what ports, actions and the most connections leave', () => {
    expect(keptFilesCap(null, 256)).toBe(Infinity);
    // 20000 with 256 ports: 20000 - 128 - 1280 - 128 = 18464, room for three files of every port.
    expect(keptFilesCap(20000, 256)).toBe(20000 - ACTION_RESERVE - FDS_PER_PORT * 256 - FDS_PER_CONNECTION * MAX_CONNECTIONS);
    expect(keptFilesCap(20000, 256)).toBeGreaterThan(3 * 256);
    // 1024 with 150 ports: 1024 - 128 - 750 - 128 = 18 kept; the connection cap is unchanged.
    expect(keptFilesCap(1024, 150)).toBe(18);
    expect(connectionCap(1024, 150)).toBe(MAX_CONNECTIONS);
    expect(keptFilesCap(1024, 170)).toBe(0);
    expect(keptFilesCap(200, 40)).toBe(0);
  });
});
