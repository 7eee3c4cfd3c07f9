// Link counters of a whole namespace from outside it, via `ip -s -j link show` (one spawn per
// namespace). Fine for lab checks at a few Hz; the hot paths (observer, storm-control) read
// sysfs through kept-open fds from inside the namespace instead.
import { run } from './exec.js';
import { assertNetns } from './names.js';

export interface LinkStats {
  ifname: string;
  up: boolean;
  rxPackets: number;
  txPackets: number;
}

/** Pure: parse the JSON printed by `ip -s -j link show`. Links without stats64 count as 0. */
export function parseIpLinkStats(json: string): Map<string, LinkStats> {
  const out = new Map<string, LinkStats>();
  const rows: unknown = JSON.parse(json);
  if (!Array.isArray(rows)) throw new Error('ip -j link: expected a JSON array');
  for (const row of rows as Array<Record<string, unknown>>) {
    const ifname = row['ifname'];
    if (typeof ifname !== 'string') continue;
    const flags = Array.isArray(row['flags']) ? (row['flags'] as unknown[]) : [];
    const s = row['stats64'] as { rx?: { packets?: number }; tx?: { packets?: number } } | undefined;
    out.set(ifname, {
      ifname,
      up: flags.includes('UP'),
      rxPackets: s?.rx?.packets ?? 0,
      txPackets: s?.tx?.packets ?? 0,
    });
  }
  return out;
}

export async function readLinkStats(netns: string): Promise<Map<string, LinkStats>> {
  const { stdout } = await run(['ip', '-n', assertNetns(netns), '-s', '-j', 'link', 'show']);
  return parseIpLinkStats(stdout);
}

/** Pure: per-interface change in rx and tx packets between two snapshots (missing = 0). */
export function statsDelta(
  before: Map<string, LinkStats>,
  after: Map<string, LinkStats>,
  ifaces: readonly string[],
): Record<string, { rx: number; tx: number }> {
  const d: Record<string, { rx: number; tx: number }> = {};
  for (const i of ifaces) {
    const a = before.get(i);
    const b = after.get(i);
    d[i] = { rx: (b?.rxPackets ?? 0) - (a?.rxPackets ?? 0), tx: (b?.txPackets ?? 0) - (a?.txPackets ?? 0) };
  }
  return d;
}
