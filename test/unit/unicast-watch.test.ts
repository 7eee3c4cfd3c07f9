import { describe, expect, it } from 'vitest';
import { noLearnIfindexes } from '../../agent/daemon/local.js';
import type { PortInfo } from '../../agent/types.js';

// The tripwire's unknown-unicast watch covers exactly the bridge ports the bridge learns nothing
// on (learning off, or ageing_time 0), by ifindex, in a stable order (the daemon re-arms the
// native filter only when this list changes).

const port = (name: string, ifindex: number, bridge: string | null, noLearn?: boolean): PortInfo => ({ name, ifindex, bridge, ...(noLearn === undefined ? {} : { noLearn }) });

describe('noLearnIfindexes', () => {
  it('lists bridge ports that learn nothing, ascending; never an unbridged port or one that learns', () => {
    const infos = [port('up2', 7, 'br0', true), port('vm1', 3, 'br0', false), port('up1', 5, 'br0', true), port('eth9', 2, null, true), port('mgmt0', 4, 'br0')];
    expect(noLearnIfindexes(infos)).toEqual([5, 7]);
  });

  it('is empty when every port learns (the watch then opens no socket)', () => {
    expect(noLearnIfindexes([port('up1', 5, 'br0', false), port('up2', 6, 'br0')])).toEqual([]);
  });
});
