// The probe's safety net: one nft table, `netdev stormbreaker_probe`, installed before the first
// probe frame leaves and deleted in a finally. Script generation is pure; apply/remove are the
// I/O edge (nft -f - with a timeout, argv only).
//
// Why netdev ingress is the right place (checked on this kernel, 6.18, see probe.ts): in
// __netif_receive_skb_core the ptype_all taps (our AF_PACKET ETH_P_ALL socket) run first, then
// tc ingress and nft netdev ingress, and only then the bridge's rx_handler. A probe frame that
// comes back on another port is therefore seen by our tap and dropped before the bridge could
// flood it again: one probe frame can never become a storm through this host.
//
// For guard-up the table also isolates the port being brought up ("up but safe"):
//   guard_in   ingress on the port, policy drop: nothing it receives reaches the bridge (the tap
//              still sees everything, it runs before this hook);
//   guard_out  egress on the port, policy drop, probe ethertype accepted: the bridge cannot flood
//              anything out of it (ARP, DHCP, BPDUs, a storm from elsewhere), only our probes
//              leave. The netdev egress hook runs in __dev_queue_xmit, which bridged frames and
//              AF_PACKET sends (without PACKET_QDISC_BYPASS, which we never set) both pass.
import { execFileSync } from 'node:child_process';
import { assertIfName } from '../host/names.js';
import { PROBE_ETHERTYPE } from './frame.js';

export const PROBE_TABLE = 'stormbreaker_probe';
/** Before any other netdev ingress chain an operator may have (lower runs first). */
const PRIORITY = -500;
const NFT_TIMEOUT_MS = 5000;
export const DEVICES_PER_CHAIN = 128;

export interface ProbeTableSpec {
  /** Ports whose ingress drops probe frames (every interface that could carry one back). */
  dropProbeOn: readonly string[];
  /** Ports brought up under guard: all ingress dropped, egress only for probe frames. */
  isolate?: readonly string[];
  ethertype?: number;
}

function devices(names: readonly string[]): string {
  // Names were validated (^[A-Za-z0-9_.:@-]{1,15}$): no quote or brace can reach the script.
  return `{ ${names.map((n) => `"${assertIfName(n)}"`).join(', ')} }`;
}

/**
 * The nft script that creates the table and its chains in one transaction: either every chain is
 * in place or none is, and nft exits non-zero. `create` (not `add`) fails when the table exists:
 * then another preflight/guard-up runs in this namespace, or one was killed and may have left a
 * port isolated; replacing its table could let that port forward unchecked, so we refuse instead.
 */
export function probeTableScript(spec: ProbeTableSpec): string {
  const et = `0x${(spec.ethertype ?? PROBE_ETHERTYPE).toString(16).padStart(4, '0')}`;
  const isolate = [...new Set(spec.isolate ?? [])];
  const drop = [...new Set(spec.dropProbeOn)].filter((n) => !isolate.includes(n));
  const lines = [`create table netdev ${PROBE_TABLE}`, `table netdev ${PROBE_TABLE} {`];
  // The kernel takes at most 256 devices per netdev chain (NFT_NETDEVICE_MAX; measured: 513
  // devices in one chain fail with E2BIG "File too large"), so large hosts get several chains.
  for (let i = 0; i < drop.length; i += DEVICES_PER_CHAIN) {
    lines.push(
      `  chain probe_in${i === 0 ? '' : `_${i / DEVICES_PER_CHAIN}`} {`,
      `    type filter hook ingress devices = ${devices(drop.slice(i, i + DEVICES_PER_CHAIN))} priority ${PRIORITY}; policy accept;`,
      `    ether type ${et} counter drop`,
      '  }',
    );
  }
  if (isolate.length > 0) {
    lines.push(
      '  chain guard_in {',
      `    type filter hook ingress devices = ${devices(isolate)} priority ${PRIORITY}; policy drop;`,
      '    counter drop',
      '  }',
      '  chain guard_out {',
      `    type filter hook egress devices = ${devices(isolate)} priority ${PRIORITY}; policy drop;`,
      `    ether type ${et} counter accept`,
      '    counter drop',
      '  }',
    );
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

export function deleteTableScript(): string {
  // `table` first so that deleting a table that is already gone is not an error.
  return `table netdev ${PROBE_TABLE}\ndelete table netdev ${PROBE_TABLE}\n`;
}

export type NftRunner = (script: string | null, args: readonly string[]) => Promise<string>;

/**
 * `nft -f -` fed `script` on stdin (or `nft ARGS` when script is null). Rejects with stderr.
 * Deliberately synchronous underneath (~5-20 ms, blocks the event loop): a signal that arrives
 * while nft runs is handled only after nft has exited and the caller has recorded whether the
 * table now exists, so an interrupt cleanup never guesses (see interrupt.ts). With an async spawn,
 * SIGTERM during the install measurably left a table behind (the child committed after we exited).
 */
export const runNft: NftRunner = async (script, args) => {
  const argv = script === null ? [...args] : ['-f', '-'];
  try {
    return execFileSync('nft', argv, {
      input: script ?? '',
      timeout: NFT_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      maxBuffer: 8 << 20,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as Error & { stderr?: string | Buffer };
    const stderr = String(e.stderr ?? '').trim();
    throw Object.assign(new Error(`nft ${argv.join(' ')} failed: ${stderr.slice(-400) || e.message}`, { cause: err }), { code: 'E_NFT' });
  }
};

export class ProbeTableBusy extends Error {
  readonly code = 'E_PROBE_BUSY';
}

export async function installProbeTable(spec: ProbeTableSpec, nft: NftRunner = runNft): Promise<void> {
  try {
    await nft(probeTableScript(spec), []);
  } catch (err) {
    if (/File exists/.test((err as Error).message)) {
      throw new ProbeTableBusy(
        `table netdev ${PROBE_TABLE} already exists: another preflight or guard-up is running in this namespace, or one was killed ` +
          `(nft list table netdev ${PROBE_TABLE}: a port in guard_in/guard_out is still isolated; bring it down, then nft delete table netdev ${PROBE_TABLE})`,
        { cause: err },
      );
    }
    throw err;
  }
}

export async function removeProbeTable(nft: NftRunner = runNft): Promise<void> {
  await nft(deleteTableScript(), []);
}

/** The same, synchronously: for a signal handler, where no promise will ever settle. */
export function removeProbeTableSync(): void {
  execFileSync('nft', ['-f', '-'], { input: deleteTableScript(), timeout: NFT_TIMEOUT_MS, stdio: ['pipe', 'ignore', 'ignore'] });
}

/** Packet counts of the table's rules by chain name (summed), from `nft -j list table`. Pure. */
export function parseTableCounters(json: string): Record<string, number> {
  const out: Record<string, number> = {};
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  for (const item of doc.nftables ?? []) {
    const rule = item['rule'] as { chain?: string; expr?: Array<Record<string, unknown>> } | undefined;
    if (!rule?.chain || !Array.isArray(rule.expr)) continue;
    for (const e of rule.expr) {
      const c = e['counter'] as { packets?: number } | undefined;
      if (c && typeof c.packets === 'number') out[rule.chain] = (out[rule.chain] ?? 0) + c.packets;
    }
  }
  return out;
}

export async function readTableCounters(nft: NftRunner = runNft): Promise<Record<string, number>> {
  return parseTableCounters(await nft(null, ['-j', 'list', 'table', 'netdev', PROBE_TABLE]));
}
